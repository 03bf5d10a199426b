"""Reading the QDQ float patterns of an imported ONNX model (the rewrite's left-hand side).

:class:`QDQMatcher` is the part of the integer rewrite's Relax mutator that looks at
bindings: constant subgraphs as numpy values, ``dequantize`` operands (per-tensor
activations, per-output-channel symmetric s8 weights), and the epilogue between a float
op and its ``quantize`` (bias add, relu / clip / maximum / minimum), turned into the
integer bias, float32 multiplier and clip range of the requantization. A pattern that
does not apply raises :class:`Unmatched`; the float ops then stay.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax import PyExprMutator


def int_range(dtype: str) -> tuple[int, int]:
    """The values of an 8-bit integer dtype (``uint8`` or ``int8``)."""
    return (0, 255) if dtype == "uint8" else (-128, 127)


def calls(expr, name: str) -> bool:
    """Whether ``expr`` is a call of the Relax op ``name``."""
    return (isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op)
            and expr.op.name == name)


class Unmatched(Exception):
    """The pattern does not apply here; the float ops stay."""


class QDQMatcher(PyExprMutator):
    """Helpers over the bindings of the function being mutated (see the module doc).

    Not a mutator by itself: :class:`pose_tuner.compile.int8.rewrite.IntegerRewriter`
    derives from it and is the decorated ``PyExprMutator``.
    """

    def resolve(self, expr):
        """Follow var -> bound value through aliases (None for params)."""
        seen = 0
        while isinstance(expr, relax.Var) and seen < 64:
            val = self.lookup_binding(expr)
            if val is None:
                return expr
            expr = val
            seen += 1
        return expr

    def const_value(self, expr, depth: int = 0) -> np.ndarray:
        """numpy value of a constant subgraph (const, dequantize, reshape, etc.)."""
        if depth > 16:
            raise Unmatched("constant chain too deep")
        expr = self.resolve(expr)
        if isinstance(expr, tvm.ir.expr.Constant):
            return expr.value.numpy()
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            name = expr.op.name
            args = expr.args
            if name == "relax.dequantize":
                q = self.const_value(args[0], depth + 1).astype(np.float32)
                s = self.const_value(args[1], depth + 1).astype(np.float32)
                z = self.const_value(args[2], depth + 1).astype(np.float32)
                axis = int(expr.attrs.axis) % max(q.ndim, 1)
                shape = [1] * q.ndim
                if s.size > 1 or z.size > 1:
                    shape[axis] = -1
                return ((q - z.reshape(shape)) * s.reshape(shape)).astype(np.float32)
            if name == "relax.reshape":
                v = self.const_value(args[0], depth + 1)
                return v.reshape([int(d) for d in expr.ty.shape])
            if name in ("relax.expand_dims", "relax.squeeze", "relax.permute_dims"):
                v = self.const_value(args[0], depth + 1)
                if name == "relax.permute_dims":
                    axes = expr.attrs.axes
                    return np.transpose(v, None if axes is None else [int(a) for a in axes])
                return v.reshape([int(d) for d in expr.ty.shape])
        raise Unmatched("not a constant")

    def scalar(self, expr) -> float:
        v = self.const_value(expr)
        if v.size != 1:
            raise Unmatched("per-channel activation quantization")
        return float(v.reshape(()))

    def dequant_parts(self, expr):
        """(x_q, scale, zero_point, axis) of ``dequantize``; raises if not one."""
        expr = self.resolve(expr)
        if not calls(expr, "relax.dequantize"):
            raise Unmatched("not dequantize")
        return expr.args[0], expr.args[1], expr.args[2], int(expr.attrs.axis), expr

    def weight_parts(self, expr, out_axis: int):
        """(s8 weight, per-output scale (O,)) of a constant dequantize with zp 0."""
        wq, s, z, axis, call = self.dequant_parts(expr)
        w = self.const_value(wq)
        if w.dtype != np.int8:
            raise Unmatched("weights not int8")
        zp = self.const_value(z)
        if np.any(zp != 0):
            raise Unmatched("asymmetric weights")
        scale = self.const_value(s).astype(np.float32).reshape(-1)
        o = w.shape[out_axis]
        if scale.size == 1:
            scale = np.full(o, scale[0], np.float32)
        elif scale.size != o or axis % w.ndim != out_axis:
            raise Unmatched("weight scale not per output channel")
        return w, scale

    def act_parts(self, expr):
        """(x_q var, scale, zero point, dtype) of a per-tensor u8/s8 dequantize."""
        xq, s, z, _axis, _ = self.dequant_parts(expr)
        dtype = str(xq.ty.dtype)
        if dtype not in ("uint8", "int8"):
            raise Unmatched("activation not 8-bit")
        return xq, np.float32(self.scalar(s)), int(round(self.scalar(z))), dtype

    def epilogue(self, call, channels: int, channel_axis: int):
        """Walk from quantize back over clip/relu and bias add.

        Returns (core float op, bias (O,) float32 or None, (lo, hi) float bounds,
        out scale, out zp, out dtype).
        """
        s_y = np.float32(self.scalar(call.args[1]))
        z_y = int(round(self.scalar(call.args[2])))
        out_dtype = str(call.attrs.out_dtype)
        if out_dtype not in ("uint8", "int8"):
            raise Unmatched("output not 8-bit")
        lo, hi = -np.inf, np.inf
        x = self.resolve(call.args[0])
        # activation: relu / clip / maximum / minimum with constants
        for _ in range(3):
            if calls(x, "relax.nn.relu"):
                lo = max(lo, 0.0)
            elif calls(x, "relax.clip"):
                lo = max(lo, float(self._prim(x.args[1])))
                hi = min(hi, float(self._prim(x.args[2])))
            elif calls(x, "relax.maximum") or calls(x, "relax.minimum"):
                try:
                    c = self.const_value(x.args[1])
                    other = x.args[0]
                except Unmatched:
                    c = self.const_value(x.args[0])
                    other = x.args[1]
                if c.size != 1:
                    raise Unmatched("non-scalar clip")
                if calls(x, "relax.maximum"):
                    lo = max(lo, float(c.reshape(())))
                else:
                    hi = min(hi, float(c.reshape(())))
                x = self.resolve(other)
                continue
            else:
                break
            x = self.resolve(x.args[0])
        bias = None
        if calls(x, "relax.add"):
            core, b = x.args
            try:
                bv = self.const_value(b)
            except Unmatched:
                core, b = b, core
                bv = self.const_value(b)
            bias = self._per_channel(bv, channels, channel_axis, x)
            x = self.resolve(core)
        return x, bias, (lo, hi), s_y, z_y, out_dtype

    @staticmethod
    def _prim(v):
        v = getattr(v, "value", v)  # PrimValue -> PrimExpr
        if isinstance(v, (tvm.tirx.IntImm, tvm.tirx.FloatImm)):
            return v.value
        raise Unmatched("clip bound not constant")

    @staticmethod
    def _per_channel(bv, channels, channel_axis, add_call):
        if add_call.ty.shape is None:
            raise Unmatched("output shape not static")
        out_ndim = len(add_call.ty.shape)
        shape = [1] * (out_ndim - bv.ndim) + list(bv.shape)
        for i, d in enumerate(shape):
            if d != 1 and (i != channel_axis % out_ndim or d != channels):
                raise Unmatched("bias not per output channel")
        return np.broadcast_to(bv.reshape(-1) if bv.size > 1 else bv.reshape(1),
                               (channels,)).astype(np.float32)

    @staticmethod
    def requant_params(s_x, s_w, s_y, z_x, wsum, bias, bounds, z_y, out_dtype):
        """int32 bias (bias / (s_x s_w) - z_x sum(w)), float32 multiplier, clip range."""
        acc_scale = (s_x * s_w).astype(np.float32)
        b = np.zeros_like(acc_scale) if bias is None else bias
        bias_i = np.round(b.astype(np.float64) / acc_scale.astype(np.float64))
        bias_i = bias_i - float(z_x) * wsum.astype(np.float64)
        if np.abs(bias_i).max(initial=0) >= 2**31:
            raise Unmatched("bias out of int32 range")
        mult = (s_x * s_w / s_y).astype(np.float32)
        qlo, qhi = int_range(out_dtype)
        lo, hi = bounds
        if np.isfinite(lo):
            qlo = max(qlo, int(np.round(np.float32(lo) / s_y)) + z_y)
        if np.isfinite(hi):
            qhi = min(qhi, int(np.round(np.float32(hi) / s_y)) + z_y)
        return bias_i.astype(np.int32), mult, qlo, qhi

    def epilogue_core(self, call):
        x = self.resolve(call.args[0])
        for _ in range(4):
            if (calls(x, "relax.nn.relu") or calls(x, "relax.clip")
                    or calls(x, "relax.add") or calls(x, "relax.maximum")
                    or calls(x, "relax.minimum")):
                nxt = self.resolve(x.args[0])
                if (calls(x, "relax.add") or calls(x, "relax.maximum")
                        or calls(x, "relax.minimum")) and isinstance(
                            nxt, tvm.ir.expr.Constant):
                    nxt = self.resolve(x.args[1])
                x = nxt
            else:
                break
        return x
