"""Model zoo: small top-down pose-estimation networks (17 COCO keypoints).

Every model takes an NCHW float tensor (1, 3, H, W) -- H and W multiples of
32 -- and returns heatmaps (1, num_keypoints, H/4, W/4).  The registry is
:mod:`~pose_tuner.models.zoo.registry`; trained weights and their checkpoint
format are :mod:`~pose_tuner.models.zoo.weights`.

>>> from pose_tuner.models.zoo import build_model, list_models
>>> model = build_model("mobilenetv2_deconv", input_size=(256, 192))
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from pose_tuner.models.zoo.init import init_weights, structured_inputs
from pose_tuner.models.zoo.registry import (DEFAULT_MODEL, INPUT_DIVISOR, ZOO, ModelSpec,
                                            check_input_size, get_spec, list_models)
from pose_tuner.models.zoo.weights import load_trained

__all__ = [
    "DEFAULT_MODEL",
    "INPUT_DIVISOR",
    "ModelSpec",
    "ZOO",
    "list_models",
    "get_spec",
    "build_model",
    "init_weights",
    "structured_inputs",
]


def build_model(name: str, input_size: Sequence[int] = (256, 192),
                width_mult: Optional[float] = None, seed: int = 0, trained: bool = True,
                **kw: Any) -> nn.Module:
    """Build a zoo model in eval mode: trained weights from ``pose_tuner/models/zoo/weights/<name>.pt``
    when that checkpoint exists and fits (and ``trained``), else deterministic (seeded)
    weights.

    ``input_size`` (H, W) is used for the BatchNorm recalibration pass (the
    networks themselves are fully convolutional).  Extra keyword arguments
    go to the model factory (e.g. ``deconv_channels``, ``num_deconv``,
    ``fpn_channels``, ``num_keypoints``).  The global torch RNG state is
    left untouched.
    """
    spec = get_spec(name)
    size = check_input_size(input_size)
    if trained:
        model = load_trained(name, size, width_mult=width_mult, **kw)
        if model is not None:
            return model
    kw.setdefault("num_keypoints", spec.num_keypoints)
    with torch.random.fork_rng(devices=[]):
        model = spec.factory(width_mult=width_mult, **kw)
    init_weights(model, seed=seed, input_size=size)
    return model.eval()
