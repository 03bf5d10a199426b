"""AVX-512 VNNI: ``vpdpbusd`` on 512-bit registers (16 int32 lanes, 4 u8 x s8 each).

TVM 0.27's own implementation of ``dot_16x4_vnni`` passes ``<16 x i32>`` operands to
``llvm.x86.avx512.vpdpbusd.512``, which LLVM 22 declares with ``<64 x i8>`` ones, so every
tensorized candidate failed to build ("Call parameter type does not match function
signature"). Here A (4 u8, broadcast to all 16 lanes) is reinterpreted as ``uint8x64``
and B loaded as ``int8x64``. Exact with full 8-bit weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from pose_tuner.compile.kernels.avxvnni import vpdpbusd_impl
from pose_tuner.compile.kernels.base import Int8Kernel


@dataclass(frozen=True)
class VNNIKernel(Int8Kernel):
    name: str = "vnni"
    intrin: str = "dot_16x4_vnni"
    mnemonics: tuple[str, ...] = ("vpdpbusd",)
    weight_bits: int = 8

    def impl(self):
        return vpdpbusd_impl(512)
