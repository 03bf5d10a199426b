"""Deterministic test images that make a pose model's outputs vary.

Gaussian noise gives nearly constant heatmaps, and constants make a numerical check
vacuous: these inputs are smooth random blobs, gradients and edges, normalised like a
real image after ImageNet mean/std.
"""

from __future__ import annotations

import numpy as np


def structured_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A float32 NCHW array of the given shape with image-like structure."""
    n, c, h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    out = np.empty(shape, dtype=np.float32)
    for i in range(n):
        for ch in range(c):
            img = rng.uniform(-0.5, 0.5) * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))
            for _ in range(6):  # soft blobs of random size, place and sign
                cy, cx = rng.uniform(0, 1, 2)
                r = rng.uniform(0.05, 0.3)
                img += rng.uniform(-1.5, 1.5) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            # a few hard edges (limb-like bars)
            for _ in range(3):
                a, b, cst = rng.normal(size=3)
                img += 0.8 * ((a * (xx - 0.5) + b * (yy - 0.5) + 0.2 * cst) > 0)
            img += 0.05 * rng.normal(size=(h, w))
            out[i, ch] = (img - img.mean()) / (img.std() + 1e-6)
    return out
