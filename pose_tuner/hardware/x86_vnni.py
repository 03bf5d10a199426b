"""``x86-vnni``: x86-64 CPUs with AVX-512 VNNI (Cascade Lake, Ice Lake, Sapphire Rapids,
Zen 4 and newer).

``mcpu`` is ``cascadelake``, not the host's own name: with TVM 0.27's LLVM 22, ``znver4`` /
``znver5`` code for some tuned int8 requantize loops is wrong (every other output position
of an int32->float32 conversion), about one tuned build in three; the same schedules built
for ``cascadelake`` are exact. Zen 4/5, Ice Lake and Sapphire Rapids run Cascade Lake code
(AVX-512F/BW/DQ/VL + VNNI), so one target serves every VNNI machine and shares one tuning
database. int8 uses ``vpdpbusd`` (:mod:`pose_tuner.compile.kernels.vnni`), full 8-bit weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from pose_tuner.hardware.x86 import X86Target

#: The CPU name LLVM compiles for: AVX-512 VNNI, and correct code for int8 epilogues.
VNNI_MCPU = "cascadelake"


@dataclass(frozen=True)
class X86VNNI(X86Target):
    name: str = "x86-vnni"
    description: str = ("x86-64 CPU with AVX-512 VNNI (Cascade Lake, Ice Lake, Zen 4 and "
                        "newer); int8 with vpdpbusd")
    isa: str = "vnni"
    mcpu: str = VNNI_MCPU
    int8_kernel: str = "vnni"
