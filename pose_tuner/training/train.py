"""Train zoo pose models on the procedural synthetic COCO-keypoint data (CPU).

The zoo's seeded weights make numerical comparisons meaningful but predict
nothing; this module trains them so accuracy (OKS AP / PCK) numbers mean
something.  Standard top-down recipe (HRNet / mmpose SimpleBaseline):
ground-truth boxes padded 1.25 to the input aspect, random scale / rotation
/ horizontal flip (COCO flip pairs), optional half-body crops, Gaussian
heatmap targets at stride 4 weighted by visibility, target-weighted MSE,
Adam with a short linear warm-up and cosine decay.

>>> from pose_tuner.training.train import TrainConfig, train, load_trained
>>> res = train(TrainConfig(model="shufflenetv2_fpn", max_minutes=5))   # doctest: +SKIP
>>> model = load_trained("shufflenetv2_fpn", (256, 192))                # doctest: +SKIP

Command line::

    python -m pose_tuner.training.train --model shufflenetv2_fpn --max-minutes 140 --lr 2e-3

The synthetic train / val splits are generated on first use under
``data_dir`` (deterministic from the seeds) and reused afterwards.  The
checkpoint (``pose_tuner/models/zoo/weights/<model>.pt`` by default) holds an fp16
``state_dict`` plus metadata; :func:`load_trained` turns it back into an fp32
eval-mode module.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from pose_tuner.accuracy.dataset import (COCO_FLIP_PAIRS, PersonInstance, affine_points, box_to_center_scale, crop,
                      load_coco_keypoints, load_image, preprocess)
from pose_tuner.accuracy.decode import render_gaussian_heatmaps

__all__ = [
    "TrainConfig",
    "TrainResult",
    "KeypointDataset",
    "InfiniteSampler",
    "WEIGHTS_DIR",
    "CHECKPOINT_FORMAT",
    "default_checkpoint_path",
    "ensure_synthetic_split",
    "weighted_mse",
    "lr_factor",
    "train",
    "finetune",
    "default_threads",
    "evaluate_model",
    "save_checkpoint",
    "load_checkpoint",
    "model_from_checkpoint",
    "load_trained",
    "main",
]

PathLike = Union[str, os.PathLike]

#: where the zoo looks for trained weights (``<name>.pt``)
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "zoo" / "weights"
CHECKPOINT_FORMAT = "pose-tuner-checkpoint/1"

#: the upper-body keypoints (COCO, 0-based) for half-body crops
_UPPER_BODY = tuple(range(11))
_LOWER_BODY = tuple(range(11, 17))


def default_checkpoint_path(model: str) -> Path:
    return WEIGHTS_DIR / f"{model}.pt"


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (stored in the checkpoint)."""

    model: str = "shufflenetv2_fpn"
    input_size: tuple[int, int] = (256, 192)        # (H, W), multiples of 32
    width_mult: Optional[float] = None              # zoo factory width (None: its default)
    model_kwargs: tuple[tuple[str, Any], ...] = ()  # extra factory kwargs, e.g. (("fpn_channels", 64),)
    # data
    data_dir: str = "logs/data/synthetic"
    train_images: int = 4000
    val_images: int = 200
    train_seed: int = 1
    val_seed: int = 2
    image_size: tuple[int, int] = (256, 256)        # (H, W) of the generated images
    # budget: stops at whichever comes first (at least one must be set)
    max_steps: Optional[int] = None
    max_minutes: Optional[float] = 30.0
    # optimisation
    batch_size: int = 16
    lr: float = 1e-3
    min_lr_ratio: float = 0.01                      # cosine decays to lr * this
    warmup_steps: int = 100
    weight_decay: float = 0.0
    head_init_std: Optional[float] = 0.001          # re-init the final 1x1 conv N(0, std), bias 0
                                                    # (SimpleBaseline); None: keep the zoo init
    # targets / augmentation
    sigma: float = 2.0
    scale_range: tuple[float, float] = (0.75, 1.25)
    rotation: float = 30.0                          # degrees, uniform in [-rot, rot]
    rotation_prob: float = 0.6
    flip_prob: float = 0.5
    half_body_prob: float = 0.0
    padding: float = 1.25
    # runtime
    num_workers: int = 0
    threads: Optional[int] = None                   # torch intra-op threads; None: cores - 1
                                                    # (see default_threads), restored afterwards
    seed: int = 0
    log_every_s: float = 30.0
    eval_every_minutes: Optional[float] = None      # periodic val AP (None: only at the end)
    eval_max_people: Optional[int] = None           # cap val people (whole images) per eval
    flip_test: bool = False
    evaluate: bool = True
    checkpoint: Optional[str] = None                # None: pose_tuner/models/zoo/weights/<model>.pt

    def __post_init__(self) -> None:
        h, w = (int(v) for v in self.input_size)
        if h <= 0 or w <= 0 or h % 32 or w % 32:
            raise ValueError(f"input_size {self.input_size} must be positive multiples of 32")
        if self.max_steps is None and self.max_minutes is None:
            raise ValueError("set max_steps or max_minutes (or both)")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")
        if self.batch_size < 1 or self.train_images < 1 or self.val_images < 1:
            raise ValueError("batch_size, train_images and val_images must be >= 1")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be 0 < lo <= hi, got {self.scale_range}")
        if self.train_seed == self.val_seed:
            warnings.warn("train_seed == val_seed: the val split is a copy of the first "
                          "train images", RuntimeWarning, stacklevel=3)

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.checkpoint) if self.checkpoint else default_checkpoint_path(self.model)

    def split_dir(self, split: str) -> Path:
        n, seed = (self.train_images, self.train_seed) if split == "train" else \
            (self.val_images, self.val_seed)
        return Path(self.data_dir) / (f"{split}-seed{seed}-n{n}-"
                                      f"{self.image_size[0]}x{self.image_size[1]}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["image_size"] = list(self.image_size)
        d["scale_range"] = list(self.scale_range)
        d["model_kwargs"] = {k: v for k, v in self.model_kwargs}
        return d


@dataclass(frozen=True)
class TrainResult:
    steps: int
    minutes: float
    final_loss: float           # mean loss over the last ~20 steps
    val_ap: Optional[float]     # OKS AP on the val split (None if not evaluated)
    val_pck: Optional[float]
    checkpoint: Optional[str]
    images_per_s: float = 0.0
    history: tuple[tuple[int, float], ...] = field(default=(), repr=False)   # (step, loss)
    val_history: tuple[tuple[int, float, float], ...] = field(default=(), repr=False)  # (step, AP, PCK)
    model: Optional[nn.Module] = field(default=None, repr=False, compare=False)  # fp32, eval mode


# --------------------------------------------------------------------------- data


def ensure_synthetic_split(out_dir: PathLike, n_images: int, seed: int,
                           image_size: Sequence[int] = (256, 256),
                           progress: Optional[Callable[[str], None]] = None) -> tuple[str, str]:
    """``(annotation json, images dir)`` of a synthetic split, generated if missing.

    The JSON is written last by :func:`generate`, and the split is built in a
    temporary sibling directory then renamed, so an existing JSON means a
    complete split.
    """
    from pose_tuner.accuracy.synthetic import generate

    out = Path(out_dir)
    ann = out / "person_keypoints.json"
    if ann.is_file():
        try:
            info = json.loads(ann.read_text(encoding="utf-8")).get("info", {})
        except (OSError, json.JSONDecodeError):
            info = None
        if info and (info.get("seed") == int(seed) and info.get("n_images") == int(n_images)
                     and list(info.get("image_size", [])) == [int(v) for v in image_size]):
            return str(ann), str(out / "images")
        raise ValueError(f"{ann} exists but was not generated with seed={seed}, "
                         f"n_images={n_images}, image_size={tuple(image_size)} (info: {info}); "
                         "remove it or choose another data_dir")
    if progress:
        progress(f"generating {n_images} synthetic images (seed {seed}) into {out} ...")
    t0 = time.time()
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    generate(tmp, n_images, seed=seed, image_size=tuple(image_size))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_dir() and not ann.is_file():      # left over from an older, interrupted layout
        shutil.rmtree(out)
    try:
        os.replace(tmp, out)
    except OSError:
        if not ann.is_file():       # not a concurrent writer finishing first
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        progress(f"  done in {time.time() - t0:.0f} s")
    return str(ann), str(out / "images")


def _flip_perm(k: int, flip_pairs: Sequence[Sequence[int]] = COCO_FLIP_PAIRS) -> np.ndarray:
    perm = np.arange(k)
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    return perm


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2x3 affine ``a o b`` (apply b, then a)."""
    full = lambda m: np.vstack([m, [0.0, 0.0, 1.0]])  # noqa: E731
    return (full(a) @ full(b))[:2]


class KeypointDataset(torch.utils.data.Dataset):
    """Top-down training samples from person instances.

    ``dataset[i]`` is instance ``i`` with augmentation drawn from
    ``np.random.default_rng([seed, i])``; ``dataset[(i, n)]`` uses
    ``default_rng([seed, n])`` (what :class:`InfiniteSampler` yields, so
    every draw of an epoch-less stream gets its own augmentation, the same
    for any ``num_workers``).  Items are ``(input float32 (3, H, W),
    target float32 (K, H/4, W/4), target_weight float32 (K,))``;
    :meth:`sample` also returns the crop metadata.
    """

    def __init__(self, instances: Sequence[PersonInstance], input_size: Sequence[int] = (256, 192),
                 sigma: float = 2.0, scale_range: Sequence[float] = (0.75, 1.25),
                 rotation: float = 30.0, rotation_prob: float = 0.6, flip_prob: float = 0.5,
                 half_body_prob: float = 0.0, padding: float = 1.25, augment: bool = True,
                 seed: int = 0, output_stride: int = 4,
                 flip_pairs: Sequence[Sequence[int]] = COCO_FLIP_PAIRS):
        self.instances = list(instances)
        if not self.instances:
            raise ValueError("KeypointDataset: no instances")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (self.input_size[0] // output_stride, self.input_size[1] // output_stride)
        self.sigma = float(sigma)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.rotation = float(rotation)
        self.rotation_prob = float(rotation_prob)
        self.flip_prob = float(flip_prob)
        self.half_body_prob = float(half_body_prob)
        self.padding = float(padding)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.num_keypoints = int(self.instances[0].keypoints.shape[0])
        self.perm = _flip_perm(self.num_keypoints, flip_pairs)

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, key: Union[int, tuple[int, int]]):
        if isinstance(key, tuple):
            idx, draw = int(key[0]), int(key[1])
        else:
            idx = draw = int(key)
        rng = np.random.default_rng([self.seed, draw])
        x, target, weight, _ = self.sample(idx, **self.draw_params(idx, rng))
        return torch.from_numpy(x), torch.from_numpy(target), torch.from_numpy(weight)

    def draw_params(self, idx: int, rng: np.random.Generator) -> dict:
        """Random augmentation parameters (all neutral when ``augment`` is False)."""
        if not self.augment:
            return dict(scale_factor=1.0, rot=0.0, flip=False, half_body=None)
        s = float(rng.uniform(*self.scale_range))
        rot = float(rng.uniform(-self.rotation, self.rotation)) \
            if rng.random() < self.rotation_prob else 0.0
        flip = bool(rng.random() < self.flip_prob)
        half = None
        if self.half_body_prob > 0 and rng.random() < self.half_body_prob:
            half = "upper" if rng.random() < 0.5 else "lower"
        return dict(scale_factor=s, rot=rot, flip=flip, half_body=half)

    def _box(self, inst: PersonInstance, half_body: Optional[str]) -> tuple[np.ndarray, np.ndarray]:
        aspect = self.input_size[1] / self.input_size[0]
        if half_body is not None:
            kp = inst.keypoints
            sel = np.array(_UPPER_BODY if half_body == "upper" else _LOWER_BODY)
            sel = sel[kp[sel, 2] > 0]
            if len(sel) >= 3:   # mmpose half_body_transform: box of the chosen points x 1.5
                pts = kp[sel, :2]
                lo, hi = pts.min(0), pts.max(0)
                w, h = max(hi[0] - lo[0], 1.0), max(hi[1] - lo[1], 1.0)
                center, scale = box_to_center_scale((lo[0], lo[1], w, h), aspect, padding=1.0)
                return center, scale * 1.5
        return box_to_center_scale(inst.bbox, aspect, padding=self.padding)

    def sample(self, idx: int, scale_factor: float = 1.0, rot: float = 0.0, flip: bool = False,
               half_body: Optional[str] = None, image: Optional[np.ndarray] = None):
        """One sample with explicit augmentation: ``(x, target, weight, meta)``.

        ``meta``: ``center``, ``scale`` (after ``scale_factor``), ``rot``,
        ``flip``, ``affine`` (2x3 image -> input pixels, flip included) and
        ``keypoints`` ((K, 2) input pixels, channel order of the target).
        """
        inst = self.instances[int(idx)]
        H, W = self.input_size
        if image is None:
            image = load_image(inst.image_path)
        center, scale = self._box(inst, half_body)
        scale = scale * float(scale_factor)
        patch, m = crop(image, center, scale, (H, W), rot=rot)
        kp = inst.keypoints
        pts = affine_points(m, kp[:, :2])
        vis = kp[:, 2] > 0
        if flip:
            patch = patch[:, ::-1]
            m = _compose(np.array([[-1.0, 0.0, W - 1.0], [0.0, 1.0, 0.0]]), m)
            pts = pts[self.perm].copy()
            pts[:, 0] = W - 1.0 - pts[:, 0]
            vis = vis[self.perm]
        inside = (pts[:, 0] >= 0) & (pts[:, 0] <= W - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= H - 1)
        weight = (vis & inside).astype(np.float32)
        target = render_gaussian_heatmaps(pts, (H, W), self.heatmap_size, weight > 0,
                                          self.sigma)[0]
        x = preprocess(patch)
        meta = dict(center=center, scale=scale, rot=float(rot), flip=bool(flip), affine=m,
                    keypoints=pts, half_body=half_body, index=int(idx))
        return x, target, weight, meta


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless ``(index, draw number)`` stream: a fresh seeded permutation per epoch."""

    def __init__(self, n: int, seed: int = 0, start: int = 0):
        self.n = int(n)
        self.seed = int(seed)
        self.start = int(start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        draw = self.start
        epoch = draw // self.n
        while True:
            perm = np.random.default_rng([self.seed, 7, epoch]).permutation(self.n)
            for i in perm[draw - epoch * self.n:]:
                yield int(i), draw
                draw += 1
            epoch += 1


# --------------------------------------------------------------------------- loss / schedule


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Target-weighted heatmap MSE (mmpose ``KeypointMSELoss(use_target_weight=True)``):
    mean over batch, keypoints and pixels of ``w_k * (pred - target)^2``."""
    return ((pred - target) ** 2 * weight[:, :, None, None]).mean()


def lr_factor(progress: float, step: int, warmup_steps: int, min_ratio: float = 0.01) -> float:
    """Linear warm-up over ``warmup_steps`` then cosine from 1 to ``min_ratio`` over
    ``progress`` in [0, 1] (the run's fraction done, by steps or by time)."""
    p = min(max(progress, 0.0), 1.0)
    cos = min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))
    if warmup_steps > 0 and step < warmup_steps:
        cos *= (step + 1) / warmup_steps
    return cos


# --------------------------------------------------------------------------- checkpoints


def _build_untrained(name: str, width_mult: Optional[float], model_kwargs: dict,
                     num_keypoints: Optional[int] = None) -> nn.Module:
    from pose_tuner.models.zoo import get_spec

    spec = get_spec(name)
    kw = dict(model_kwargs)
    kw.setdefault("num_keypoints", num_keypoints or spec.num_keypoints)
    with torch.random.fork_rng(devices=[]):
        return spec.factory(width_mult=width_mult, **kw)


def _half_state_dict(model: nn.Module) -> dict:
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if v.is_floating_point():
            h = v.to(torch.float16)
            # keep fp32 where fp16 would overflow (never seen, but cheap to guard)
            v = h if torch.isfinite(h).all() or not torch.isfinite(v).all() else v.clone()
        out[k] = v.clone()
    return out


def save_checkpoint(model: nn.Module, path: PathLike, *, model_name: str,
                    input_size: Sequence[int], width_mult: Optional[float] = None,
                    model_kwargs: Optional[dict] = None, **meta: Any) -> Path:
    """``torch.save`` an fp16 state_dict plus metadata (atomic: temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "model": model_name,
        "input_size": [int(input_size[0]), int(input_size[1])],
        "width_mult": width_mult,
        "model_kwargs": dict(model_kwargs or {}),
        "num_keypoints": int(getattr(model, "num_keypoints", 17)),
        "torch_version": str(torch.__version__),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **meta,
        "state_dict": _half_state_dict(model),
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: PathLike) -> dict:
    """The checkpoint dict (``weights_only`` load); raises ``ValueError`` if not ours."""
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a pose-tuner checkpoint (format "
                         f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r})")
    return ckpt


def model_from_checkpoint(ckpt: Union[dict, PathLike]) -> nn.Module:
    """An fp32, eval-mode zoo model with the checkpoint's weights."""
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    model = _build_untrained(ckpt["model"], ckpt.get("width_mult"), ckpt.get("model_kwargs") or {},
                             ckpt.get("num_keypoints"))
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    model.load_state_dict(sd, strict=True)
    model.float().eval()
    model.trained_meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return model


def load_trained(name: str, input_size: Optional[Sequence[int]] = None, *,
                 width_mult: Optional[float] = None, weights_dir: Optional[PathLike] = None,
                 strict_input_size: bool = False, **model_kwargs: Any) -> Optional[nn.Module]:
    """The trained zoo model ``name`` from ``<weights_dir>/<name>.pt``, or ``None``.

    ``None`` when there is no checkpoint, or when it was trained for another
    architecture (``width_mult`` / factory kwargs that differ from the
    requested ones; ``None`` requested = the factory default).  The networks
    are fully convolutional, so a checkpoint trained at another
    ``input_size`` still loads (accuracy then suffers from the changed
    person scale); ``strict_input_size=True`` returns ``None`` instead.
    The module is fp32, in eval mode, with the checkpoint metadata in
    ``model.trained_meta``.
    """
    path = Path(weights_dir) / f"{name}.pt" if weights_dir is not None else \
        default_checkpoint_path(name)
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path)
    if ckpt.get("model") != name:
        warnings.warn(f"{path} holds model {ckpt.get('model')!r}, not {name!r}; ignored",
                      RuntimeWarning, stacklevel=2)
        return None
    norm = lambda w: 1.0 if w is None else float(w)  # noqa: E731  (factories default to 1.0)
    if norm(ckpt.get("width_mult")) != norm(width_mult):
        return None
    saved_kw = dict(ckpt.get("model_kwargs") or {})
    if model_kwargs:
        from pose_tuner.models.zoo import get_spec

        default_k = get_spec(name).num_keypoints
        want = {k: v for k, v in model_kwargs.items()
                if not (k == "num_keypoints" and v == default_k)}
        if want != {k: v for k, v in saved_kw.items() if k != "num_keypoints"}:
            return None
    elif saved_kw:
        return None
    if input_size is not None and strict_input_size and \
            [int(v) for v in input_size] != list(ckpt.get("input_size") or []):
        return None
    return model_from_checkpoint(ckpt)


# --------------------------------------------------------------------------- training


def _fmt_s(s: float) -> str:
    s = max(0.0, s)
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.0f}s"


@torch.no_grad()
def _reinit_head(model: nn.Module, std: float, seed: int = 0) -> None:
    """Small-normal init of the heatmap-producing conv (``final_layer``, else the last
    Conv2d): the zoo's kaiming init makes the first heatmaps O(1) everywhere."""
    head = getattr(model, "final_layer", None)
    if not isinstance(head, nn.Conv2d):
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            return
        head = convs[-1]
    g = torch.Generator().manual_seed(int(seed) + 104729)
    head.weight.copy_(torch.randn(head.weight.shape, generator=g) * float(std))
    if head.bias is not None:
        head.bias.zero_()


@torch.no_grad()
def evaluate_model(model: nn.Module, instances: Sequence[PersonInstance],
                   input_size: Sequence[int], flip_test: bool = False):
    """``evaluate`` of a torch module (eval mode, no grad); restores its train/eval mode."""
    from pose_tuner.accuracy.evaluate import evaluate

    was = model.training
    model.eval()
    try:
        return evaluate(lambda x: model(torch.from_numpy(x)), instances, input_size,
                        flip_test=flip_test)
    finally:
        model.train(was)


def _val_subset(instances: list, max_people: Optional[int]) -> list:
    if max_people is None or len(instances) <= max_people:
        return instances
    out, by_img = [], {}
    for inst in instances:
        by_img.setdefault(inst.image_id, []).append(inst)
    for img in sorted(by_img):
        if len(out) + len(by_img[img]) > max_people:
            break
        out.extend(by_img[img])
    return out or instances[:max_people]


def default_threads() -> int:
    """Torch threads for training when ``TrainConfig.threads`` is None: all cores but one.

    On a 2-core machine that is 1 thread.  Two threads are ~1.6-1.9x faster on
    an otherwise idle 2-core box, but collapse 10-30x (OpenMP barriers waiting
    on a descheduled thread) as soon as anything else, e.g. a TVM tuning
    worker, runs; one thread loses almost nothing then.
    """
    return max(1, (os.cpu_count() or 2) - 1)


def train(cfg: TrainConfig, progress: Optional[Callable[[str], None]] = print) -> TrainResult:
    """Train ``cfg.model`` on the synthetic train split, evaluate on the val split, save.

    Stops at ``max_steps`` or ``max_minutes`` (the cosine schedule follows
    whichever is further along) or on Ctrl-C (then still evaluates and saves).
    The torch thread count is set to ``cfg.threads`` (None:
    :func:`default_threads`) for the run and restored afterwards.
    """
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(int(cfg.threads) if cfg.threads else default_threads())
    try:
        return _train(cfg, progress)
    finally:
        torch.set_num_threads(saved_threads)


def finetune(model: nn.Module, steps: int, input_size: Sequence[int], *,
             data_dir: str = TrainConfig.data_dir, lr: float = 5e-4,
             threads: Optional[int] = None,
             progress: Optional[Callable[[str], None]] = None) -> nn.Module:
    """Fine-tune ``model`` in place for ``steps`` steps on the synthetic train split (the
    training recipe, without re-initialising the head or saving); returns it in eval mode.
    Used after structured pruning to recover accuracy."""
    if steps <= 0:
        raise ValueError(f"fine-tuning needs steps > 0, got {steps}")
    cfg = TrainConfig(model=type(model).__name__, input_size=tuple(int(v) for v in input_size),
                      data_dir=data_dir, max_steps=int(steps), max_minutes=None, lr=lr,
                      warmup_steps=min(50, max(1, steps // 10)), head_init_std=None,
                      evaluate=False, threads=threads)
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(int(cfg.threads) if cfg.threads else default_threads())
    try:
        _train(cfg, progress, model=model, save=False)
    finally:
        torch.set_num_threads(saved_threads)
    return model.eval()


def _train(cfg: TrainConfig, progress: Optional[Callable[[str], None]],
           model: Optional[nn.Module] = None, save: bool = True) -> TrainResult:
    from pose_tuner.models.zoo import build_model

    log = progress or (lambda s: None)
    H, W = (int(v) for v in cfg.input_size)

    train_ann, train_imgs = ensure_synthetic_split(cfg.split_dir("train"), cfg.train_images,
                                                   cfg.train_seed, cfg.image_size, log)
    val_people = None
    if cfg.evaluate:
        val_ann, val_imgs = ensure_synthetic_split(cfg.split_dir("val"), cfg.val_images,
                                                   cfg.val_seed, cfg.image_size, log)
        val_people = load_coco_keypoints(val_ann, val_imgs)
    people = load_coco_keypoints(train_ann, train_imgs)
    ds = KeypointDataset(people, (H, W), sigma=cfg.sigma, scale_range=cfg.scale_range,
                         rotation=cfg.rotation, rotation_prob=cfg.rotation_prob,
                         flip_prob=cfg.flip_prob, half_body_prob=cfg.half_body_prob,
                         padding=cfg.padding, seed=cfg.seed)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=cfg.batch_size, sampler=InfiniteSampler(len(ds), seed=cfg.seed),
        num_workers=cfg.num_workers, drop_last=True, pin_memory=False,
        persistent_workers=False, prefetch_factor=4 if cfg.num_workers > 0 else None)

    if model is None:
        model = build_model(cfg.model, (H, W), width_mult=cfg.width_mult, seed=cfg.seed,
                            **dict(cfg.model_kwargs))
        if cfg.head_init_std is not None:
            _reinit_head(model, cfg.head_init_std, cfg.seed)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    budget_s = cfg.max_minutes * 60.0 if cfg.max_minutes is not None else None
    n_params = sum(p.numel() for p in model.parameters())
    log(f"training {cfg.model} @ {H}x{W}: {n_params / 1e6:.2f} M params, {len(ds)} people in "
        f"{cfg.train_images} images, batch {cfg.batch_size}, workers {cfg.num_workers}, "
        f"threads {torch.get_num_threads()}, budget "
        f"{cfg.max_steps if cfg.max_steps is not None else '-'} steps / "
        f"{cfg.max_minutes if cfg.max_minutes is not None else '-'} min")

    torch.manual_seed(cfg.seed)
    history: list[tuple[int, float]] = []
    val_history: list[tuple[int, float, float]] = []
    step, t0 = 0, time.perf_counter()
    last_log, last_log_step, last_eval = t0, 0, t0
    interrupted = False

    def frac_done(now: float) -> float:
        f = 0.0
        if cfg.max_steps is not None:
            f = max(f, step / cfg.max_steps)
        if budget_s is not None:
            f = max(f, (now - t0) / budget_s)
        return f

    it = iter(loader)
    try:
        while True:
            now = time.perf_counter()
            if (cfg.max_steps is not None and step >= cfg.max_steps) or \
                    (budget_s is not None and now - t0 >= budget_s):
                break
            x, target, weight = next(it)
            f = lr_factor(frac_done(now), step, cfg.warmup_steps, cfg.min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = cfg.lr * f
            out = model(x)
            loss = weighted_mse(out, target, weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            lv = float(loss.detach())
            if not math.isfinite(lv):
                raise FloatingPointError(f"loss became {lv} at step {step}")
            history.append((step, lv))
            now = time.perf_counter()
            if now - last_log >= cfg.log_every_s:
                ips = (step - last_log_step) * cfg.batch_size / (now - last_log)
                el = now - t0
                fd = frac_done(now)
                eta = el * (1 - fd) / fd if fd > 0 else float("nan")
                recent = np.mean([v for _, v in history[-20:]])
                log(f"step {step:6d}  loss {recent:.3e}  lr {cfg.lr * f:.2e}  {ips:5.1f} img/s  "
                    f"elapsed {_fmt_s(el)}  eta {_fmt_s(eta)}")
                last_log, last_log_step = now, step
            if (save and cfg.eval_every_minutes and val_people is not None
                    and now - last_eval >= cfg.eval_every_minutes * 60.0):
                te = time.perf_counter()
                r = evaluate_model(model, _val_subset(val_people, cfg.eval_max_people), (H, W))
                val_history.append((step, r.ap, r.pck))
                log(f"step {step:6d}  val AP {r.ap:.3f}  PCK {r.pck:.3f}  "
                    f"({time.perf_counter() - te:.0f} s, not counted in the budget)")
                # a checkpoint per evaluation: a long run that is killed still leaves weights
                save_checkpoint(
                    model, cfg.checkpoint_path, model_name=cfg.model, input_size=(H, W),
                    width_mult=cfg.width_mult, model_kwargs=dict(cfg.model_kwargs),
                    steps=step, minutes=(time.perf_counter() - t0) / 60.0,
                    final_loss=float(np.mean([v for _, v in history[-20:]])), val_ap=r.ap,
                    val_pck=r.pck, val_flip_test=False, interrupted=True,
                    train_config=cfg.to_dict())
                # keep the evaluation out of the training-time budget
                pause = time.perf_counter() - te
                t0 += pause
                last_log += pause
                last_eval = time.perf_counter()
    except KeyboardInterrupt:
        interrupted = True
        log(f"interrupted at step {step}; evaluating and saving what we have")
    finally:
        del it
    train_s = time.perf_counter() - t0
    if step == 0:
        raise RuntimeError("training stopped before the first step")
    ips = step * cfg.batch_size / max(train_s, 1e-9)
    final_loss = float(np.mean([v for _, v in history[-20:]]))
    log(f"trained {step} steps in {_fmt_s(train_s)} ({ips:.1f} img/s), final loss "
        f"{final_loss:.3e}")

    model.eval()
    ap = pck = None
    if val_people is not None:
        te = time.perf_counter()
        r = evaluate_model(model, val_people, (H, W), flip_test=cfg.flip_test)
        ap, pck = r.ap, r.pck
        val_history.append((step, ap, pck))
        log(f"val ({r.n_people} people{', flip test' if cfg.flip_test else ''}): AP {r.ap:.3f}  "
            f"AP50 {r.ap50:.3f}  AP75 {r.ap75:.3f}  AR {r.ar:.3f}  PCK {r.pck:.3f}  "
            f"({time.perf_counter() - te:.0f} s)")

    if not save:
        return TrainResult(steps=step, minutes=train_s / 60.0, final_loss=final_loss, val_ap=ap,
                           val_pck=pck, checkpoint=None, images_per_s=ips,
                           history=tuple(history), val_history=tuple(val_history), model=model)
    path = save_checkpoint(
        model, cfg.checkpoint_path, model_name=cfg.model, input_size=(H, W),
        width_mult=cfg.width_mult, model_kwargs=dict(cfg.model_kwargs),
        steps=step, minutes=train_s / 60.0, final_loss=final_loss, val_ap=ap, val_pck=pck,
        val_flip_test=bool(cfg.flip_test), interrupted=interrupted,
        train_config=cfg.to_dict())
    log(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return TrainResult(steps=step, minutes=train_s / 60.0, final_loss=final_loss, val_ap=ap,
                       val_pck=pck, checkpoint=str(path), images_per_s=ips,
                       history=tuple(history), val_history=tuple(val_history), model=model)


# --------------------------------------------------------------------------- CLI


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: write HxW, e.g. 256x192") from None
    return h, w


def _pair(text: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad range {text!r}: write LO,HI, e.g. 0.75,1.25") from None
    return a, b


def _kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"bad --model-arg {text!r}: write KEY=VALUE")
    k, v = text.split("=", 1)
    try:
        val = ast.literal_eval(v)
    except (ValueError, SyntaxError):
        val = v
    return k.strip(), val


def _opt_int(text: str) -> Optional[int]:
    return None if text.lower() in ("none", "") else int(text)


def _opt_float(text: str) -> Optional[float]:
    return None if text.lower() in ("none", "") else float(text)


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    ap = argparse.ArgumentParser(
        prog="python -m pose_tuner.training.train",
        description="Train a zoo pose model on synthetic COCO-keypoint data (CPU) and save "
                    "fp16 weights for the zoo.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = ap.add_argument
    a("--model", default=d.model)
    a("--input-size", type=_size, default=d.input_size, help="HxW, multiples of 32")
    a("--width-mult", type=_opt_float, default=d.width_mult)
    a("--model-arg", dest="model_kwargs", type=_kv, action="append", default=[],
      help="extra factory kwarg KEY=VALUE (repeatable), e.g. fpn_channels=64")
    a("--data-dir", default=d.data_dir)
    a("--train-images", type=int, default=d.train_images)
    a("--val-images", type=int, default=d.val_images)
    a("--train-seed", type=int, default=d.train_seed)
    a("--val-seed", type=int, default=d.val_seed)
    a("--image-size", type=_size, default=d.image_size, help="generated image HxW")
    a("--max-steps", type=_opt_int, default=d.max_steps)
    a("--max-minutes", type=_opt_float, default=d.max_minutes, help="'none' for steps only")
    a("--batch-size", type=int, default=d.batch_size)
    a("--lr", type=float, default=d.lr)
    a("--min-lr-ratio", type=float, default=d.min_lr_ratio)
    a("--warmup-steps", type=int, default=d.warmup_steps)
    a("--weight-decay", type=float, default=d.weight_decay)
    a("--head-init-std", type=_opt_float, default=d.head_init_std, help="'none': zoo init")
    a("--sigma", type=float, default=d.sigma)
    a("--scale-range", type=_pair, default=d.scale_range, help="LO,HI")
    a("--rotation", type=float, default=d.rotation)
    a("--rotation-prob", type=float, default=d.rotation_prob)
    a("--flip-prob", type=float, default=d.flip_prob)
    a("--half-body-prob", type=float, default=d.half_body_prob)
    a("--padding", type=float, default=d.padding)
    a("--num-workers", type=int, default=d.num_workers,
      help="DataLoader workers (0 is fastest on 2 cores: data is ~2 ms/sample)")
    a("--threads", type=_opt_int, default=d.threads,
      help="torch threads (default: cores - 1; 2 on an idle 2-core box is faster, but "
           "collapses when anything else runs)")
    a("--seed", type=int, default=d.seed)
    a("--log-every-s", type=float, default=d.log_every_s)
    a("--eval-every-minutes", type=_opt_float, default=d.eval_every_minutes)
    a("--eval-max-people", type=_opt_int, default=d.eval_max_people)
    a("--flip-test", action=argparse.BooleanOptionalAction, default=d.flip_test)
    a("--evaluate", action=argparse.BooleanOptionalAction, default=d.evaluate)
    a("--checkpoint", default=d.checkpoint, help="default: pose_tuner/models/zoo/weights/<model>.pt")
    return ap


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    kw = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    kw["model_kwargs"] = tuple(args.model_kwargs)
    return TrainConfig(**kw)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = train(cfg, progress=lambda s: print(s, flush=True))
    print(json.dumps({"steps": res.steps, "minutes": round(res.minutes, 2),
                      "final_loss": res.final_loss, "val_ap": res.val_ap, "val_pck": res.val_pck,
                      "images_per_s": round(res.images_per_s, 2), "checkpoint": res.checkpoint}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
