"""Model zoo: small top-down pose-estimation networks (17 COCO keypoints).

Every model takes an NCHW float tensor (1, 3, H, W) -- H and W multiples of
32 -- and returns heatmaps (1, num_keypoints, H/4, W/4).

>>> from pose_tuner.models.zoo import build_model, list_models
>>> model = build_model("mobilenetv2_deconv", input_size=(256, 192))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from pose_tuner.models.zoo.init import init_weights, structured_inputs
from pose_tuner.models.zoo.mobilenetv2 import mobilenetv2_deconv
from pose_tuner.models.zoo.shufflenetv2 import shufflenetv2_fpn

__all__ = [
    "DEFAULT_MODEL",
    "ModelSpec",
    "ZOO",
    "list_models",
    "get_spec",
    "build_model",
    "init_weights",
    "structured_inputs",
]

DEFAULT_MODEL = "shufflenetv2_fpn"

#: all backbones here have a stride-32 feature map, so inputs must divide by this
INPUT_DIVISOR = 32


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    factory: Callable[..., nn.Module] = field(repr=False, compare=False)
    default_input_size: tuple[int, int] = (256, 192)  # (H, W)
    num_keypoints: int = 17
    output_stride: int = 4

    def output_size(self, input_size: Sequence[int]) -> tuple[int, int]:
        return (int(input_size[0]) // self.output_stride, int(input_size[1]) // self.output_stride)


ZOO: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="mobilenetv2_deconv",
            description="MobileNetV2 backbone + SimpleBaseline head (3x ConvTranspose 4x4/s2, "
                        "256 ch) -> 17 heatmaps at stride 4 (~3.1 GFLOPs @256x192)",
            factory=mobilenetv2_deconv,
        ),
        ModelSpec(
            name="shufflenetv2_fpn",
            description="ShuffleNetV2 1.0x backbone + light FPN (96 ch, nearest upsampling) "
                        "-> 17 heatmaps at stride 4",
            factory=shufflenetv2_fpn,
        ),
    )
}


def list_models() -> list[str]:
    """Registered model names (sorted)."""
    return sorted(ZOO)


def get_spec(name: str) -> ModelSpec:
    try:
        return ZOO[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def _check_input_size(input_size: Sequence[int]) -> tuple[int, int]:
    if len(input_size) != 2:
        raise ValueError(f"input_size must be (H, W), got {input_size!r}")
    h, w = int(input_size[0]), int(input_size[1])
    if h <= 0 or w <= 0 or h % INPUT_DIVISOR or w % INPUT_DIVISOR:
        raise ValueError(f"input_size {(h, w)} must be positive multiples of {INPUT_DIVISOR}")
    return h, w


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
    size = _check_input_size(input_size)
    if trained:
        from pose_tuner.training.train import load_trained

        model = load_trained(name, size, width_mult=width_mult, **kw)
        if model is not None:
            return model
    kw.setdefault("num_keypoints", spec.num_keypoints)
    with torch.random.fork_rng(devices=[]):
        model = spec.factory(width_mult=width_mult, **kw)
    init_weights(model, seed=seed, input_size=size)
    return model.eval()
