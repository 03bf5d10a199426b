"""AVX-VNNI (VEX): ``{vex} vpdpbusd`` on 256-bit registers, two per 16-lane step.

The same LLVM intrinsic as AVX-512 VL's 256-bit form (``llvm.x86.avx512.vpdpbusd.256``);
LLVM selects the VEX encoding on a CPU with AVX-VNNI and no AVX-512. Exact with full 8-bit
weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from pose_tuner.compile.kernels.base import Int8Kernel, broadcast_a, dot_impl


def vpdpbusd_impl(bits: int):
    """The 16-lane step as 512 / ``bits`` ``vpdpbusd`` (``bits`` 256: AVX-VNNI or
    AVX512-VL; 512: AVX512-VNNI)."""
    from tvm.script import tirx as T

    lanes = bits // 32
    a = broadcast_a(lanes)
    i32, i8 = f"int32x{lanes}", f"int8x{4 * lanes}"
    dot = f"llvm.x86.avx512.vpdpbusd.{bits}"

    def step(A, B, C, lo):
        return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(dot), C.vload([lo], dtype=i32),
                                       a(A), B.vload([lo, 0], dtype=i8), dtype=i32)

    return dot_impl(lanes, step)


@dataclass(frozen=True)
class AVXVNNIKernel(Int8Kernel):
    name: str = "avxvnni"
    intrin: str = "dot_16x4_avxvnni"
    mnemonics: tuple[str, ...] = ("vpdpbusd",)
    weight_bits: int = 8

    def impl(self):
        return vpdpbusd_impl(256)
