"""AVX-512 without VNNI: ``vpmaddubsw`` + ``vpmaddwd`` on 512-bit registers.

TVM 0.27 ships ``dot_16x4_avx512`` for this; it is overridden by the same construction
as :mod:`pose_tuner.compile.kernels.avx2` at 512 bits (its ``T.int16x32(1)`` constant and named
temporaries are not needed). The int16 pair sums saturate as on AVX2, so the x86-avx512
target quantizes its weights to 7 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

from pose_tuner.compile.kernels.avx2 import pmadd_impl
from pose_tuner.compile.kernels.base import Int8Kernel


@dataclass(frozen=True)
class AVX512Kernel(Int8Kernel):
    name: str = "avx512"
    intrin: str = "dot_16x4_avx512"
    mnemonics: tuple[str, ...] = ("vpmaddubsw", "vpmaddwd")
    weight_bits: int = 7

    def impl(self):
        return pmadd_impl(512)
