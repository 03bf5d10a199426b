"""AVX-VNNI (VEX): ``{vex} vpdpbusd`` on 256-bit registers, two per 16-lane step.

The same LLVM intrinsic as AVX-512 VL's 256-bit form (``llvm.x86.avx512.vpdpbusd.256``);
LLVM selects the VEX encoding on a CPU with AVX-VNNI and no AVX-512. Exact with full 8-bit
weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Int8Kernel, broadcast_a, dot_impl


@dataclass(frozen=True)
class AVXVNNIKernel(Int8Kernel):
    name: str = "avxvnni"
    intrin: str = "dot_16x4_avxvnni"
    mnemonics: tuple[str, ...] = ("vpdpbusd",)
    weight_bits: int = 8

    def impl(self):
        from tvm.script import tirx as T

        a = broadcast_a(8)

        def step(A, B, C, lo):
            return T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.256"),
                C.vload([lo], dtype="int32x8"), a(A), B.vload([lo, 0], dtype="int8x32"),
                dtype="int32x8")

        return dot_impl(8, step)
