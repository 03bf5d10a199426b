"""``x86-avx2``: x86-64 CPUs with AVX2 and FMA (Haswell, Zen 1 and newer; most laptops,
Zen 2/3 machines and cloud VMs with AVX-512 masked).

``mcpu`` is ``haswell``: the AVX2 + FMA + BMI2 baseline every such CPU runs, so one tuning
database serves them all. int8 uses ``vpmaddubsw`` + ``vpmaddwd``
(:mod:`pose_tuner.compile.kernels.avx2`), whose 16-bit pair sums saturate with full 8-bit
weights; weights are quantized to 7 bits (|w| <= 64), which makes them exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from pose_tuner.hardware.x86 import X86Target


@dataclass(frozen=True)
class X86AVX2(X86Target):
    name: str = "x86-avx2"
    description: str = ("x86-64 CPU with AVX2 + FMA (Haswell, Zen 1 and newer); int8 with "
                        "vpmaddubsw/vpmaddwd, 7-bit weights")
    isa: str = "avx2"
    mcpu: str = "haswell"
    int8_kernel: str = "avx2"
    int8_weight_bits: int = 7
