"""``x86-avx512``: x86-64 CPUs with AVX-512 F/BW/DQ/VL but no VNNI (Skylake-SP, Cascade
Lake's predecessors).

``mcpu`` is ``skylake-avx512``. int8 uses the 512-bit ``vpmaddubsw`` + ``vpmaddwd``
(:mod:`pose_tuner.compile.kernels.avx512`); as on AVX2, weights are quantized to 7 bits so that
the 16-bit pair sums cannot saturate.
"""

from __future__ import annotations

from dataclasses import dataclass

from pose_tuner.hardware.x86 import X86Target


@dataclass(frozen=True)
class X86AVX512(X86Target):
    name: str = "x86-avx512"
    description: str = ("x86-64 CPU with AVX-512 but no VNNI (Skylake-SP); int8 with 512-bit "
                        "vpmaddubsw/vpmaddwd, 7-bit weights")
    isa: str = "avx512"
    mcpu: str = "skylake-avx512"
    int8_kernel: str = "avx512"
    int8_weight_bits: int = 7
