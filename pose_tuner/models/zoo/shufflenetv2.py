"""ShuffleNetV2 backbone + light FPN heatmap head.

Plain ``torch.nn`` re-implementation (no torchvision).  The channel shuffle
is a reshape/transpose/reshape and the channel split is plain slicing, so
the graph exports to standard ONNX ops (Reshape/Transpose/Slice/Concat).
The FPN fuses the stride-8/16/32 stage outputs top-down with nearest
upsampling, smooths with a depthwise+pointwise 3x3, upsamples once more to
stride 4 and predicts 17 heatmaps with a 1x1 conv.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "channel_shuffle",
    "ShuffleUnit",
    "ShuffleNetV2Backbone",
    "ShuffleNetV2FPN",
    "shufflenetv2_fpn",
    "STAGE_CHANNELS",
]

# width multiplier -> channels of (stage2, stage3, stage4) as in the ShuffleNetV2 paper
STAGE_CHANNELS: dict[float, tuple[int, int, int]] = {
    0.5: (48, 96, 192),
    1.0: (116, 232, 464),
    1.5: (176, 352, 704),
    2.0: (244, 488, 976),
}
STAGE_REPEATS: tuple[int, int, int] = (4, 8, 4)
STEM_CHANNELS = 24


def _round4(v: float) -> int:
    return max(8, int(v + 2) // 4 * 4)


def stage_channels_for(width_mult: float) -> tuple[int, int, int]:
    """Paper channels for the standard widths, otherwise 1.0x scaled and rounded to /4."""
    for w, chs in STAGE_CHANNELS.items():
        if abs(w - width_mult) < 1e-9:
            return chs
    base = STAGE_CHANNELS[1.0]
    return tuple(_round4(c * width_mult) for c in base)  # type: ignore[return-value]


def channel_shuffle(x: torch.Tensor, groups: int, channels: int) -> torch.Tensor:
    """Channel shuffle via reshape -> transpose -> reshape.

    ``channels`` is passed as a Python int so that the traced graph only
    depends on the (static) spatial dims of ``x``.
    """
    n, _, h, w = x.shape
    x = x.reshape(n, groups, channels // groups, h, w)
    x = x.transpose(1, 2)
    return x.reshape(n, channels, h, w)


def _dw_bn(ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(ch, ch, 3, stride, 1, groups=ch, bias=False),
        nn.BatchNorm2d(ch),
    )


def _pw_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 1, 1, 0, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class ShuffleUnit(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError("stride must be 1 or 2")
        if out_ch % 2:
            raise ValueError("out_ch must be even")
        self.stride = stride
        self.out_channels = out_ch
        branch = out_ch // 2
        if stride == 1 and in_ch != out_ch:
            raise ValueError("stride-1 unit needs in_ch == out_ch")
        self.split = in_ch // 2 if stride == 1 else 0
        if stride == 2:
            self.branch1 = nn.Sequential(_dw_bn(in_ch, 2), _pw_bn_relu(in_ch, branch))
        else:
            self.branch1 = nn.Identity()
        b2_in = in_ch if stride == 2 else branch
        self.branch2 = nn.Sequential(
            _pw_bn_relu(b2_in, branch),
            _dw_bn(branch, stride),
            _pw_bn_relu(branch, branch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1 = x[:, : self.split]
            x2 = x[:, self.split:]
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2, self.out_channels)


class ShuffleNetV2Backbone(nn.Module):
    """Returns the (stride 8, stride 16, stride 32) stage outputs."""

    def __init__(self, width_mult: float = 1.0,
                 repeats: Sequence[int] = STAGE_REPEATS,
                 stage_channels: Optional[Sequence[int]] = None):
        super().__init__()
        chs = tuple(stage_channels) if stage_channels is not None else stage_channels_for(width_mult)
        if len(chs) != 3 or len(repeats) != 3:
            raise ValueError("need exactly 3 stages")
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1, bias=False),
            nn.BatchNorm2d(STEM_CHANNELS),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = STEM_CHANNELS
        stages = []
        for out_ch, n in zip(chs, repeats):
            units = [ShuffleUnit(in_ch, out_ch, 2)]
            units += [ShuffleUnit(out_ch, out_ch, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*units))
            in_ch = out_ch
        self.stage2, self.stage3, self.stage4 = stages
        self.out_channels = chs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.conv1(x))
        c3 = self.stage2(x)   # stride 8
        c4 = self.stage3(c3)  # stride 16
        c5 = self.stage4(c4)  # stride 32
        return c3, c4, c5


class ShuffleNetV2FPN(nn.Module):
    """ShuffleNetV2 + light FPN -> (N, num_keypoints, H/4, W/4)."""

    def __init__(self, width_mult: float = 1.0, num_keypoints: int = 17, fpn_channels: int = 96):
        super().__init__()
        self.backbone = ShuffleNetV2Backbone(width_mult=width_mult)
        c3, c4, c5 = self.backbone.out_channels
        self.lateral3 = nn.Conv2d(c3, fpn_channels, 1, bias=False)
        self.lateral4 = nn.Conv2d(c4, fpn_channels, 1, bias=False)
        self.lateral5 = nn.Conv2d(c5, fpn_channels, 1, bias=False)
        self.smooth = nn.Sequential(
            nn.Conv2d(fpn_channels, fpn_channels, 3, 1, 1, groups=fpn_channels, bias=False),
            nn.BatchNorm2d(fpn_channels),
            nn.Conv2d(fpn_channels, fpn_channels, 1, bias=False),
            nn.BatchNorm2d(fpn_channels),
            nn.ReLU(inplace=True),
        )
        self.final_layer = nn.Conv2d(fpn_channels, num_keypoints, 1)
        self.num_keypoints = num_keypoints
        self.output_stride = 4

    def pruning_units(self) -> list[nn.Module]:
        """What structured pruning may thin (see ``pose_tuner.models.pruning``): the internal
        channels of each unit's main branch.  The channel shuffle couples every unit's
        output channels, so those stay."""
        return [m.branch2 for m in self.modules() if isinstance(m, ShuffleUnit)]

    @staticmethod
    def _up(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c3, c4, c5 = self.backbone(x)
        p5 = self.lateral5(c5)
        p4 = self.lateral4(c4) + self._up(p5)
        p3 = self.lateral3(c3) + self._up(p4)
        p3 = self.smooth(p3)
        p2 = self._up(p3)
        return self.final_layer(p2)


def shufflenetv2_fpn(width_mult: Optional[float] = None, num_keypoints: int = 17,
                     fpn_channels: int = 96, **kw) -> ShuffleNetV2FPN:
    """Factory used by the zoo registry (weights are *not* initialised here)."""
    return ShuffleNetV2FPN(width_mult=1.0 if width_mult is None else float(width_mult),
                           num_keypoints=num_keypoints, fpn_channels=fpn_channels, **kw)
