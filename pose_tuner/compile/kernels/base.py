"""The ``Int8Kernel`` contract: one x86 integer dot-product instruction family.

A kernel is a TVM tensor intrinsic for TVM's ``dot_product_16x4_u8i8i32_desc``
(``C[16] int32 += A[4] u8 . B[16, 4] s8``: one packed NCHW16c step of
:func:`pose_tuner.compile.int8.te.te_conv2d_nchwc_int8_requant`), implemented with the family's
instructions. It states

* ``intrin``: the name it registers (and MetaSchedule records carry);
* ``mnemonics``: the instructions a tensorized build contains (tests inspect the
  assembly for them, so a build for a CPU this host lacks is still checked);
* ``weight_bits``: the widest int8 weights for which it is exact (7 for the families whose
  ``vpmaddubsw`` sums pairs of u8 x s8 products in saturating int16: 2 x 255 x 64 fits,
  2 x 255 x 128 does not);
* ``impl()``: the TVMScript implementation, built from LLVM intrinsics by name.

``register()`` is idempotent and needs no such hardware: MetaSchedule only picks a kernel
for the targets whose design space names it (:func:`pose_tuner.compile.kernels.design_space`).
"""

from __future__ import annotations

from dataclasses import dataclass

_REGISTERED: set[str] = set()


@dataclass(frozen=True)
class Int8Kernel:
    name: str = ""
    intrin: str = ""
    mnemonics: tuple[str, ...] = ()
    weight_bits: int = 8

    def impl(self):
        """The intrinsic's implementation (a TVMScript PrimFunc)."""
        raise NotImplementedError

    def register(self) -> str:
        """Register the intrinsic (overriding TVM's own of the same name); its name."""
        if self.intrin in _REGISTERED:
            return self.intrin
        from tvm.s_tir import TensorIntrin

        from pose_tuner.compile.tensor_intrin import import_only

        # TVM's own x86 intrinsics must be registered before they are overridden, or
        # importing them later fails on the duplicate name
        import_only(("x86",))
        from tvm.s_tir.tensor_intrin import x86

        TensorIntrin.register(self.intrin, x86.dot_product_16x4_u8i8i32_desc, self.impl(),
                              override=True)
        _REGISTERED.add(self.intrin)
        return self.intrin


def dot_impl(lanes: int, step):
    """The intrinsic's implementation: 16 / ``lanes`` unrolled register steps, each
    ``C[lo:lo+lanes] = step(A, B, C, lo)`` (an expression of the family's LLVM intrinsics;
    one expression, since named temporaries would become local buffers)."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((16, 4), "int8", offset_factor=1),
        C: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            for h in T.unroll(16 // lanes):
                C[T.ramp(h * lanes, 1, lanes)] = step(A, B, C, h * lanes)

    return impl


def broadcast_a(lanes: int):
    """A's 4 u8 values (one int32) broadcast to ``lanes`` int32 lanes, as u8 x 4*lanes."""
    from tvm.script import tirx as T

    def expr(A):
        return T.reinterpret(
            T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), lanes),
            dtype=f"uint8x{4 * lanes}",
        )

    return expr
