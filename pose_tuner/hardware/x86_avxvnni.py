"""``x86-avxvnni``: x86-64 CPUs with the VEX-encoded AVX-VNNI and no AVX-512 (Alder Lake,
Raptor Lake, Meteor Lake and newer client CPUs).

``mcpu`` is ``alderlake`` (AVX2 + FMA + AVX-VNNI). int8 uses the 256-bit ``{vex}
vpdpbusd`` (:mod:`pose_tuner.compile.kernels.avxvnni`): exact int32 accumulation, full 8-bit
weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from pose_tuner.hardware.x86 import X86Target


@dataclass(frozen=True)
class X86AVXVNNI(X86Target):
    name: str = "x86-avxvnni"
    description: str = ("x86-64 CPU with AVX-VNNI and no AVX-512 (Alder Lake and newer "
                        "client CPUs); int8 with 256-bit vpdpbusd")
    isa: str = "avxvnni"
    mcpu: str = "alderlake"
    int8_kernel: str = "avxvnni"
