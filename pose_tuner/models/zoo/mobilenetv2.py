"""MobileNetV2 backbone + SimpleBaseline deconvolution head.

Plain ``torch.nn`` re-implementation (no torchvision).  With the default
settings (width 1.0, 3 x 256-channel deconvs) the model costs about
1.56 GMACs (~3.1 GFLOPs) at 256x192 and produces 17 heatmaps at stride 4.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

__all__ = [
    "_make_divisible",
    "ConvBNReLU",
    "InvertedResidual",
    "MobileNetV2Backbone",
    "MobileNetV2Deconv",
    "mobilenetv2_deconv",
    "INVERTED_RESIDUAL_SETTING",
]

# t (expansion), c (output channels), n (repeats), s (first stride)
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (never going down by more than 10%)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, act: bool = True):
        padding = (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, expand_ratio: int):
        super().__init__()
        assert stride in (1, 2)
        hidden = int(round(in_ch * expand_ratio))
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(in_ch, hidden, kernel_size=1))
        layers += [
            ConvBNReLU(hidden, hidden, kernel_size=3, stride=stride, groups=hidden),
            ConvBNReLU(hidden, out_ch, kernel_size=1, act=False),  # linear bottleneck
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 feature extractor (output stride 32, no classifier)."""

    def __init__(self, width_mult: float = 1.0, round_nearest: int = 8,
                 setting: Sequence[Sequence[int]] = INVERTED_RESIDUAL_SETTING):
        super().__init__()
        input_channel = _make_divisible(32 * width_mult, round_nearest)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [ConvBNReLU(3, input_channel, stride=2)]
        for t, c, n, s in setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel,
                                                 s if i == 0 else 1, t))
                input_channel = output_channel
        features.append(ConvBNReLU(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.out_channels = self.last_channel
        self.output_stride = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class MobileNetV2Deconv(nn.Module):
    """MobileNetV2 + SimpleBaseline head -> (N, num_keypoints, H/4, W/4)."""

    def __init__(self, width_mult: float = 1.0, num_keypoints: int = 17,
                 deconv_channels: int = 256, num_deconv: int = 3, deconv_kernel: int = 4):
        super().__init__()
        if deconv_kernel != 4:
            raise ValueError("only deconv_kernel=4 (padding=1, output_padding=0) is supported")
        self.backbone = MobileNetV2Backbone(width_mult=width_mult)
        layers: list[nn.Module] = []
        in_ch = self.backbone.out_channels
        for _ in range(num_deconv):
            layers += [
                nn.ConvTranspose2d(in_ch, deconv_channels, kernel_size=4, stride=2,
                                   padding=1, output_padding=0, bias=False),
                nn.BatchNorm2d(deconv_channels),
                nn.ReLU(inplace=True),
            ]
            in_ch = deconv_channels
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(in_ch, num_keypoints, kernel_size=1, stride=1, padding=0)
        self.num_keypoints = num_keypoints
        self.output_stride = 32 // (2 ** num_deconv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x)
        x = self.deconv_layers(x)
        return self.final_layer(x)


def mobilenetv2_deconv(width_mult: Optional[float] = None, num_keypoints: int = 17,
                       deconv_channels: int = 256, num_deconv: int = 3, **kw) -> MobileNetV2Deconv:
    """Factory used by the zoo registry (weights are *not* initialised here)."""
    return MobileNetV2Deconv(width_mult=1.0 if width_mult is None else float(width_mult),
                             num_keypoints=num_keypoints, deconv_channels=deconv_channels,
                             num_deconv=num_deconv, **kw)
