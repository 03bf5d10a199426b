"""The zoo's model registry: names, descriptions and factories (no weights, no training).

:mod:`pose_tuner.models.zoo.weights` reads checkpoints against it and
:func:`pose_tuner.models.zoo.build_model` builds from it; both import this module, so
neither needs the other's package ``__init__``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from torch import nn

from pose_tuner.models.zoo.mobilenetv2 import mobilenetv2_deconv
from pose_tuner.models.zoo.shufflenetv2 import shufflenetv2_fpn


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


def check_input_size(input_size: Sequence[int]) -> tuple[int, int]:
    """``(H, W)`` as ints; ``ValueError`` unless both are positive multiples of 32."""
    if len(input_size) != 2:
        raise ValueError(f"input_size must be (H, W), got {input_size!r}")
    h, w = int(input_size[0]), int(input_size[1])
    if h <= 0 or w <= 0 or h % INPUT_DIVISOR or w % INPUT_DIVISOR:
        raise ValueError(f"input_size {(h, w)} must be positive multiples of {INPUT_DIVISOR}")
    return h, w
