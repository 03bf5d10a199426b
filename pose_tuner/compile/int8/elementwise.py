"""Residual additions of the int8 path, on packed data.

``quantize(add(dequantize(a), dequantize(b)))`` of two 8-bit activations of one shape
that integer layers left packed (MobileNetV2's residual connections) runs as one kernel
on the packed layout (:func:`pose_tuner.compile.int8.te.te_add_packed_requant`): the
graph's dequantize, add and quantize maths (rounding half to even, as ONNX's
``QuantizeLinear``), element by element, reading and writing packed
blocks, so the sum stays packed for the layers that read it instead of being unpacked,
added in float and packed again.
"""

from __future__ import annotations

from pose_tuner.compile.int8.matching import Unmatched, calls
from pose_tuner.compile.int8.te import OC_BLOCK, te_add_packed_requant


class AddRewrites:
    """The residual-add rewrite of :class:`pose_tuner.compile.int8.rewrite.IntegerRewriter`,
    which mixes it in: it uses the rewriter's ``resolve``, ``act_parts``, ``scalar``,
    ``packed``, ``_root_var`` and ``unpacked``, and counts ``adds``."""

    def rewrite_add(self, call):
        """``quantize(add(dequantize(a), dequantize(b)))`` -> one packed integer add;
        raises :class:`Unmatched` unless both inputs are packed outputs of integer layers
        with the same shape and at least one channel block."""
        inner = self.resolve(call.args[0])
        if not calls(inner, "relax.add"):
            raise Unmatched("not an add")
        out_dtype = str(call.attrs.out_dtype)
        if out_dtype not in ("uint8", "int8"):
            raise Unmatched("add not quantized to 8 bits")
        a, b = (self._packed_operand(arg) for arg in inner.args)
        if a[0].ty.shape is None or [int(v) for v in a[0].ty.shape] != \
                [int(v) for v in b[0].ty.shape]:
            raise Unmatched("add operands differ in shape")
        s_y, z_y = self.scalar(call.args[1]), int(round(self.scalar(call.args[2])))
        out_p = self.builder_.emit(self.builder_.call_te(
            te_add_packed_requant, a[0], b[0], a_zp=a[2], a_scale=float(a[1]), b_zp=b[2],
            b_scale=float(b[1]), out_scale=float(s_y), out_zp=z_y, out_dtype=out_dtype,
            primfunc_name_hint="add_int8_requant"))
        self.adds += 1
        return self.unpacked(out_p, a[3], out_dtype)

    def _packed_operand(self, expr):
        """(packed var, scale, packed zero point, channels) of ``dequantize(x)`` whose
        ``x`` an integer layer of this rewrite left packed in blocks of 16 channels."""
        xq, s, z, dtype = self.act_parts(expr)
        packed = self.packed.get(self._root_var(xq))
        shift = 128 if dtype == "int8" else 0
        if packed is None or packed[2] != OC_BLOCK or packed[3] != shift:
            raise Unmatched("add operand not packed")
        return packed[0], s, z + shift, packed[1]
