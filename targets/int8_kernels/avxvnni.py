"""AVX-VNNI (VEX): ``{vex} vpdpbusd`` on 256-bit registers, two per 16-lane step.

The same LLVM intrinsic as AVX-512 VL's 256-bit form (``llvm.x86.avx512.vpdpbusd.256``);
LLVM selects the VEX encoding on a CPU with AVX-VNNI and no AVX-512. Exact with full 8-bit
weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Int8Kernel, broadcast_a


@dataclass(frozen=True)
class AVXVNNIKernel(Int8Kernel):
    name: str = "avxvnni"
    intrin: str = "dot_16x4_avxvnni"
    mnemonics: tuple[str, ...] = ("vpdpbusd",)
    weight_bits: int = 8

    def impl(self):
        from tvm.script import tirx as T

        a = broadcast_a(8)
        dot = "llvm.x86.avx512.vpdpbusd.256"

        @T.prim_func(s_tir=True)
        def avxvnni_impl(
            A: T.Buffer((4,), "uint8", offset_factor=1),
            B: T.Buffer((16, 4), "int8", offset_factor=1),
            C: T.Buffer((16,), "int32", offset_factor=1),
        ) -> None:
            with T.sblock("root"):
                T.reads(C[0:16], A[0:4], B[0:16, 0:4])
                T.writes(C[0:16])
                C[T.ramp(T.int32(0), 1, 8)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(dot), C.vload([0], dtype="int32x8"), a(A),
                    B.vload([0, 0], dtype="int8x32"), dtype="int32x8")
                C[T.ramp(T.int32(8), 1, 8)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(dot), C.vload([8], dtype="int32x8"), a(A),
                    B.vload([8, 0], dtype="int8x32"), dtype="int32x8")

        return avxvnni_impl
