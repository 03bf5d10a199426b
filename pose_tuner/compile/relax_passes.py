"""Relax rewrites that make pose models cheap to compile well.

``SubPixelConvTranspose``: TVM 0.27 lowers ``conv2d_transpose`` by zero-stuffing its
input, so a stride-2 4x4 deconvolution (the SimpleBaseline head) does 4x the needed
multiply-adds. Each output phase (y mod s, x mod s) of a transposed convolution is an
ordinary correlation of the input with a sub-kernel, so the layer becomes one ``conv2d``
per phase (exactly the needed multiply-adds; one grouped conv over the phases' input
windows when they all have the same kernel size), interleaved by a
depth-to-space (reshape/transpose/reshape) and a crop. Where a phase has no kernel
taps (kernel smaller than stride), all phases share one dense conv over a common window
instead. Only layers with a constant
weight, ``groups == 1``, dilation 1 and NCHW/IOHW layouts are rewritten; anything
else is left as it was.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.ir.module import IRModule
from tvm.relax import Call, Expr, PyExprMutator, expr_functor


def subpixel_plan(k: int, s: int, pad_begin: int, out: int, size_in: int):
    """For one spatial dimension: (lo, kw, taps, pad_lo, pad_hi, q).

    ``taps[r]`` lists ``(j, ky)``: output phase ``r`` takes kernel tap ``ky`` of the
    transposed conv at position ``j`` of a ``kw``-wide correlation window that starts at
    input offset ``lo``. Returns None when the rewrite does not apply (window would
    start after the first input row).
    """
    per_phase = []
    for r in range(s):
        ky0 = (r + pad_begin) % s
        c = (r + pad_begin - ky0) // s
        kys = list(range(ky0, k, s))
        per_phase.append((c, kys))
    lo = min(c - (len(kys) - 1) for c, kys in per_phase if kys) if any(k for _, k in per_phase) else 0
    hi = max(c for c, kys in per_phase if kys) if any(k for _, k in per_phase) else 0
    if lo > 0:
        return None
    kw = hi - lo + 1
    taps = [[(c - m - lo, ky) for m, ky in enumerate(kys)] for c, kys in per_phase]
    q = -(-out // s)
    pad_lo = -lo
    pad_hi = max(0, (q - 1 + hi) - (size_in - 1))
    return lo, kw, taps, pad_lo, pad_hi, q


def subpixel_weight(w_iohw: np.ndarray, s: tuple[int, int], plans) -> np.ndarray:
    """Dense conv2d weight (O*sh*sw, I, kh', kw') equivalent to an IOHW deconv weight."""
    cin, cout, _, _ = w_iohw.shape
    (_, kwh, taps_h, *_), (_, kww, taps_w, *_) = plans
    sh, sw = s
    w = np.zeros((cout, sh, sw, cin, kwh, kww), dtype=w_iohw.dtype)
    for ry in range(sh):
        for rx in range(sw):
            for jy, ky in taps_h[ry]:
                for jx, kx in taps_w[rx]:
                    w[:, ry, rx, :, jy, jx] = w_iohw[:, :, ky, kx].T
    return w.reshape(cout * sh * sw, cin, kwh, kww)


def subpixel_phase_weights(w: np.ndarray, s, plans, in_shape):
    """The ``sh * sw`` phases of a stride-``s`` deconvolution as plain convolutions.

    ``w`` is the ConvTranspose weight (I, O, KH, KW); ``plans`` the two
    :func:`subpixel_plan` results (rows, columns). Returns, per phase in (row, column)
    order, ``((top, left, bottom, right) padding, first input row, first input column,
    conv weight (O, I, taps_h, taps_w))``, or None when a phase has no taps or needs
    negative padding.
    """
    (_, _, taps_h, ph_lo, ph_hi, qh), (_, _, taps_w, pw_lo, pw_hi, qw) = plans
    sh, sw = s
    if any(not t for t in taps_h) or any(not t for t in taps_w):
        return None
    phases = []
    for ry in range(sh):
        jy = sorted(taps_h[ry])
        for rx in range(sw):
            jx = sorted(taps_w[rx])
            ty, tx = len(jy), len(jx)
            top, left = ph_lo - jy[0][0], pw_lo - jx[0][0]
            bottom = qh + ty - 1 - in_shape[2] - top
            right = qw + tx - 1 - in_shape[3] - left
            if min(top, left, bottom, right) < 0 or bottom > ph_hi or right > pw_hi:
                return None
            wp = np.empty((w.shape[1], w.shape[0], ty, tx), dtype=w.dtype)
            for a, (_, ky) in enumerate(jy):
                for b, (_, kx) in enumerate(jx):
                    wp[:, :, a, b] = w[:, :, ky, kx].T
            phases.append(((top, left, bottom, right), jy[0][0], jx[0][0], wp))
    return phases


@expr_functor.mutator
class _SubPixelMutator(PyExprMutator):
    def __init__(self, mod: IRModule):
        super().__init__(mod)
        self.rewritten = 0

    def visit_call_(self, call: Call) -> Expr:
        call = super().visit_call_(call)
        if not isinstance(call.op, tvm.ir.Op) or call.op.name != "relax.nn.conv2d_transpose":
            return call
        out = self._rewrite(call)
        if out is None:
            return call
        self.rewritten += 1
        return out

    def _phase_convs(self, data, w, s, plans, in_shape, dtype):
        """The phases' outputs concatenated on channels, in (phase, O) order.

        When every phase has the same number of taps (kernel divisible by stride), the
        input is padded once, each phase's window sliced out, and all phases run as one
        grouped conv (one tuning task per layer). Otherwise one conv2d per phase. None
        when a phase has no taps or needs negative padding (then the dense form is used).
        """
        (_, _, _, ph_lo, ph_hi, qh), (_, _, _, pw_lo, pw_hi, qw) = plans
        phases = subpixel_phase_weights(w, s, plans, in_shape)
        if phases is None:
            return None
        bb = self.builder_
        if len({p[3].shape for p in phases}) == 1:
            padded = bb.emit(relax.op.nn.pad(
                data, [0, 0, 0, 0, ph_lo, ph_hi, pw_lo, pw_hi]))
            ty, tx = phases[0][3].shape[2:]
            windows = [
                bb.emit(relax.op.strided_slice(
                    padded, axes=[2, 3], begin=[y0, x0],
                    end=[y0 + qh + ty - 1, x0 + qw + tx - 1]))
                for _, y0, x0, _ in phases
            ]
            stacked = bb.emit(relax.op.concat(windows, axis=1))
            weight = np.concatenate([p[3] for p in phases], axis=0)
            return bb.emit(relax.op.nn.conv2d(
                stacked, relax.const(weight), strides=1, padding=0, groups=len(phases),
                out_dtype=dtype))
        outs = [
            bb.emit(relax.op.nn.conv2d(data, relax.const(wp), strides=1, padding=pads,
                                       out_dtype=dtype))
            for pads, _, _, wp in phases
        ]
        return bb.emit(relax.op.concat(outs, axis=1))

    def _rewrite(self, call: Call) -> Expr | None:
        data, weight = call.args
        attrs = call.attrs
        if not isinstance(weight, tvm.ir.expr.Constant):
            return None
        if (
            int(attrs.groups) != 1
            or str(attrs.data_layout) != "NCHW"
            or str(attrs.kernel_layout) != "IOHW"
            or (attrs.out_layout is not None and str(attrs.out_layout) not in ("", "NCHW"))
            or any(int(d) != 1 for d in attrs.dilation)
        ):
            return None
        in_shape = [int(v) for v in data.ty.shape]
        out_shape = [int(v) for v in call.ty.shape]
        w = weight.value.numpy()
        _, cout, kh, kw = w.shape
        sh, sw = (int(v) for v in attrs.strides)
        pad = [int(v) for v in attrs.padding]  # top, left, bottom, right
        plans = (
            subpixel_plan(kh, sh, pad[0], out_shape[2], in_shape[2]),
            subpixel_plan(kw, sw, pad[1], out_shape[3], in_shape[3]),
        )
        if plans[0] is None or plans[1] is None:
            return None
        (_, kwh, _, ph_lo, ph_hi, qh), (_, kww, _, pw_lo, pw_hi, qw) = plans
        bb = self.builder_
        dtype = str(call.ty.dtype)
        conv = self._phase_convs(data, w, (sh, sw), plans, in_shape, dtype)
        if conv is not None:
            # exact sub-pixel convs: no multiply by a zero tap
            order = [0, 3, 4, 1, 5, 2]  # (n, sh, sw, O, qh, qw) -> (n, O, qh, sh, qw, sw)
            grouped = (in_shape[0], sh, sw, cout, qh, qw)
        else:
            wc = subpixel_weight(w, (sh, sw), plans)
            conv = bb.emit(
                relax.op.nn.conv2d(
                    data, relax.const(wc), strides=1,
                    padding=(ph_lo, pw_lo, ph_hi, pw_hi), out_dtype=dtype,
                )
            )
            conv_h = in_shape[2] + ph_lo + ph_hi - kwh + 1
            conv_w = in_shape[3] + pw_lo + pw_hi - kww + 1
            if conv_h < qh or conv_w < qw:
                return None
            if (conv_h, conv_w) != (qh, qw):
                conv = bb.emit(
                    relax.op.strided_slice(conv, axes=[2, 3], begin=[0, 0], end=[qh, qw])
                )
            order = [0, 1, 4, 2, 5, 3]  # (n, O, sh, sw, qh, qw) -> (n, O, qh, sh, qw, sw)
            grouped = (in_shape[0], cout, sh, sw, qh, qw)
        x = bb.emit(relax.op.reshape(conv, grouped))
        x = bb.emit(relax.op.permute_dims(x, order))
        n = in_shape[0]
        x = relax.op.reshape(x, (n, cout, qh * sh, qw * sw))
        if (qh * sh, qw * sw) != (out_shape[2], out_shape[3]):
            x = bb.emit(x)
            x = relax.op.strided_slice(
                x, axes=[2, 3], begin=[0, 0], end=[out_shape[2], out_shape[3]]
            )
        return x


@tvm.transform.module_pass(opt_level=0, name="SubPixelConvTranspose")
class SubPixelConvTranspose:
    """Rewrite constant-weight ``conv2d_transpose`` into sub-pixel conv2d + depth-to-space."""

    def __init__(self):
        self.rewritten = 0

    def transform_module(self, mod: IRModule, _ctx) -> IRModule:
        mutator = _SubPixelMutator(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                func = mutator.visit_expr(func)
                mutator.builder_.update_func(gv, func)
        self.rewritten += mutator.rewritten
        return mutator.builder_.get()
