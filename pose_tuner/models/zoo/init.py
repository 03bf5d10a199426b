"""Deterministic, *informative* weight initialisation for zoo models.

A freshly initialised network whose BatchNorm layers still hold the default
running statistics (mean 0, var 1) produces activations that drift in scale
layer after layer; for MobileNet-style models the heatmaps come out almost
constant, which makes numerical comparisons (TVM vs. torch, ONNX vs. torch)
vacuous.  ``init_weights`` therefore:

1. draws every conv / deconv / linear weight from a kaiming-normal
   distribution using a seeded ``torch.Generator`` (biases -> 0);
2. sets BatchNorm affine parameters to seeded random values around the
   identity (weight ~ U(0.5, 1.5), bias ~ N(0, 0.1));
3. recalibrates BatchNorm running statistics: train mode, BN momentum=None
   (cumulative average), a few no-grad forward passes on seeded, smooth,
   image-like random inputs, then ``eval()``.

Everything is driven by ``seed``; the global torch RNG is not touched.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["init_weights", "structured_inputs", "recalibrate_bn"]

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


def structured_inputs(n: int, input_size: Sequence[int], seed: int = 0,
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``n`` smooth, image-like random tensors of shape (n, 3, H, W), ~zero mean / unit std.

    Each image is a mix of multi-scale low-resolution noise (bilinearly
    upsampled), a linear colour gradient with random direction and a few
    Gaussian blobs, then standardised per image (like ImageNet-normalised
    input).  Deterministic given ``seed`` (or ``generator``).
    """
    h, w = int(input_size[0]), int(input_size[1])
    g = generator if generator is not None else _gen(seed)
    ys = torch.linspace(-1.0, 1.0, h).view(1, h, 1)
    xs = torch.linspace(-1.0, 1.0, w).view(1, 1, w)
    imgs = []
    for _ in range(n):
        img = torch.zeros(3, h, w)
        # multi-scale smooth noise
        for cells in (2, 4, 8, 16):
            lh = max(2, min(h, cells))
            lw = max(2, min(w, max(2, round(cells * w / max(h, 1)))))
            low = torch.randn(1, 3, lh, lw, generator=g)
            up = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0]
            img += up * (1.5 / math.sqrt(cells))
        # linear gradient with random direction / per-channel amplitude
        theta = float(torch.rand(1, generator=g)) * 2 * math.pi
        grad = math.cos(theta) * xs + math.sin(theta) * ys  # (1, h, w)
        amp = torch.randn(3, 1, 1, generator=g)
        img += amp * grad
        # a few Gaussian blobs ("limbs / joints")
        for _ in range(int(torch.randint(2, 6, (1,), generator=g))):
            cy, cx = (torch.rand(2, generator=g) * 2 - 1).tolist()
            sigma = 0.05 + 0.25 * float(torch.rand(1, generator=g))
            blob = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma ** 2))
            img += torch.randn(3, 1, 1, generator=g) * 2.0 * blob
        img = (img - img.mean()) / (img.std() + 1e-6)
        imgs.append(img)
    return torch.stack(imgs, 0)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, input_size: Sequence[int], seed: int = 0,
                   num_batches: int = 4, batch_size: int = 2) -> nn.Module:
    """Re-estimate BN running stats on seeded structured inputs; leaves the model in eval()."""
    bns = [m for m in model.modules() if isinstance(m, _BN_TYPES)]
    if not bns:
        return model.eval()
    saved_momentum = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over all passes
    g = _gen(seed + 7919)
    was_training = model.training
    model.train()
    try:
        for _ in range(num_batches):
            model(structured_inputs(batch_size, input_size, generator=g))
    finally:
        for m, mom in zip(bns, saved_momentum):
            m.momentum = mom
        model.train(was_training)
    return model.eval()


@torch.no_grad()
def init_weights(model: nn.Module, seed: int = 0, input_size: Sequence[int] = (256, 192),
                 num_batches: int = 4, batch_size: int = 2) -> nn.Module:
    """Seeded kaiming init + random BN affine + BN recalibration; returns ``model`` in eval()."""
    g = _gen(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d,
                          nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=g)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, _BN_TYPES):
            if m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return recalibrate_bn(model, input_size, seed=seed, num_batches=num_batches,
                          batch_size=batch_size)
