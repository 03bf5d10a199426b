"""Training data: the synthetic splits, top-down augmented samples and an endless sampler.

:func:`ensure_synthetic_split` generates a split of the procedural COCO-keypoint data
(:mod:`pose_tuner.accuracy.synthetic`) once and reuses it; :class:`KeypointDataset` turns
person instances into augmented ``(input, heatmap target, target weight)`` samples
(random scale / rotation / horizontal flip with COCO flip pairs, optional half-body
crops); :class:`InfiniteSampler` feeds it an epoch-less, seeded stream.  Used by the
trainer (:mod:`pose_tuner.training.train`) and distillation
(:mod:`pose_tuner.training.distill`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from pose_tuner.accuracy.dataset import (COCO_FLIP_PAIRS, PersonInstance, affine_points,
                                         box_to_center_scale, crop, load_image, preprocess)
from pose_tuner.accuracy.decode import render_gaussian_heatmaps

__all__ = [
    "KeypointDataset",
    "InfiniteSampler",
    "ensure_synthetic_split",
]

PathLike = Union[str, os.PathLike]

#: the upper-body keypoints (COCO, 0-based) for half-body crops
_UPPER_BODY = tuple(range(11))
_LOWER_BODY = tuple(range(11, 17))


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
