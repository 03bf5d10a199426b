"""AVX2: ``vpmaddubsw`` + ``vpmaddwd`` on 256-bit registers, two per 16-lane step.

``vpmaddubsw`` multiplies u8 activations by s8 weights and adds adjacent pairs into
int16 **with saturation**; ``vpmaddwd`` by ones then adds the pairs of int16 into int32.
Two products of 255 x 128 overflow int16, so the kernel is exact only for weights in
[-64, 64] (7 bits): the x86-avx2 target quantizes its weights that way, as ONNX Runtime
recommends for its own U8S8 kernels on such CPUs (``reduce_range``). The alternative,
widening both operands to int16 and using ``vpmaddwd`` alone, is exact for 8-bit weights
but does half the multiply-adds per instruction, no more than fp32's FMA.
"""

from __future__ import annotations

from dataclasses import dataclass

from pose_tuner.compile.kernels.base import Int8Kernel, broadcast_a, dot_impl


def pmadd_impl(bits: int):
    """The 16-lane step as 512 / ``bits`` register steps of ``vpmaddubsw`` + ``vpmaddwd``."""
    from tvm.script import tirx as T

    lanes = bits // 32  # int32 lanes per register
    ubsw = "llvm.x86.avx2.pmadd.ub.sw" if bits == 256 else "llvm.x86.avx512.pmaddubs.w.512"
    wd = "llvm.x86.avx2.pmadd.wd" if bits == 256 else "llvm.x86.avx512.pmaddw.d.512"
    a = broadcast_a(lanes)
    i16, i32, i8 = f"int16x{2 * lanes}", f"int32x{lanes}", f"int8x{4 * lanes}"

    def step(A, B, C, lo):
        return C.vload([lo], dtype=i32) + T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id(wd),
            T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(ubsw), a(A),
                                    B.vload([lo, 0], dtype=i8), dtype=i16),
            T.broadcast(T.int16(1), 2 * lanes), dtype=i32)

    return dot_impl(lanes, step)


@dataclass(frozen=True)
class AVX2Kernel(Int8Kernel):
    name: str = "avx2"
    intrin: str = "dot_16x4_avx2"
    mnemonics: tuple[str, ...] = ("vpmaddubsw", "vpmaddwd")
    weight_bits: int = 7

    def impl(self):
        return pmadd_impl(256)
