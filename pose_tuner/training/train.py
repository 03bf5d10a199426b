"""Train zoo pose models on the procedural synthetic COCO-keypoint data (CPU).

The zoo's seeded weights make numerical comparisons meaningful but predict
nothing; this module trains them so accuracy (OKS AP / PCK) numbers mean
something.  Standard top-down recipe (HRNet / mmpose SimpleBaseline):
ground-truth boxes padded 1.25 to the input aspect, random scale / rotation
/ horizontal flip (COCO flip pairs), optional half-body crops, Gaussian
heatmap targets at stride 4 weighted by visibility, target-weighted MSE,
Adam with a short linear warm-up and cosine decay.

>>> from pose_tuner.training.train import TrainConfig, train
>>> from pose_tuner.models.zoo.weights import load_trained
>>> res = train(TrainConfig(model="shufflenetv2_fpn", max_minutes=5))   # doctest: +SKIP
>>> model = load_trained("shufflenetv2_fpn", (256, 192))                # doctest: +SKIP

Command line (:mod:`pose_tuner.training.cli`)::

    python -m pose_tuner.training --model shufflenetv2_fpn --max-minutes 140 --lr 2e-3

The synthetic train / val splits are generated on first use under
``data_dir`` (deterministic from the seeds) and reused afterwards
(:mod:`pose_tuner.training.data`).  The checkpoint
(``pose_tuner/models/zoo/weights/<model>.pt`` by default) is the zoo's format
(:mod:`pose_tuner.models.zoo.weights`): an fp16 ``state_dict`` plus metadata;
:func:`~pose_tuner.models.zoo.weights.load_trained` turns it back into an fp32
eval-mode module.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from pose_tuner.accuracy.dataset import PersonInstance, load_coco_keypoints
from pose_tuner.models.zoo import build_model
from pose_tuner.models.zoo.weights import default_checkpoint_path, save_checkpoint
from pose_tuner.training.data import InfiniteSampler, KeypointDataset, ensure_synthetic_split

__all__ = [
    "TrainConfig",
    "TrainResult",
    "weighted_mse",
    "lr_factor",
    "train",
    "finetune",
    "default_threads",
    "evaluate_model",
    "val_subset",
]


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


def val_subset(instances: list, max_people: Optional[int]) -> list:
    """At most ``max_people`` of ``instances``, whole images at a time in image-id order
    (all of them when ``max_people`` is None; the first ``max_people`` if no whole image fits)."""
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
                r = evaluate_model(model, val_subset(val_people, cfg.eval_max_people), (H, W))
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
