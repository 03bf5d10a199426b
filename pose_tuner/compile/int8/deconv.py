"""Transposed convolutions of the int8 path, in the packed layout.

A stride-s ``conv2d_transpose`` is s*s exact integer convs, one per output phase (the
sub-pixel decomposition of :mod:`pose_tuner.compile.relax_passes`). When the phases have
equal kernels and their input windows lie on a regular grid (:func:`phase_grid`; every
stride-2 deconvolution, the SimpleBaseline head's included), they run as one conv whose
phases are spatial axes (:func:`pose_tuner.compile.int8.te.te_deconv_nchwc_int8_requant`),
written straight into the interleaved layout. Otherwise each phase is a conv over its
window, and the phases are interleaved after.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from pose_tuner.compile.int8.matching import Unmatched
from pose_tuner.compile.int8.te import (
    OC_BLOCK, pack_conv_weight, te_deconv_nchwc_int8_requant, te_interleave_phases,
)


class DeconvRewrites:
    """The deconvolution rewrite of :class:`pose_tuner.compile.int8.rewrite.IntegerRewriter`,
    which mixes it in: it uses the rewriter's ``epilogue_core``, ``weight_parts``,
    ``act_parts``, ``epilogue``, ``packed_input``, ``padded``, ``int_conv``,
    ``requant_arrays`` and ``unpacked``, and counts ``deconvs``."""

    def rewrite_deconv(self, call):
        """conv2d_transpose as one exact integer conv per output phase (the sub-pixel
        decomposition of :mod:`pose_tuner.compile.relax_passes`), interleaved while packed."""
        from pose_tuner.compile.relax_passes import subpixel_phase_weights, subpixel_plan

        bb = self.builder_
        core = self.epilogue_core(call)
        attrs = core.attrs
        if (int(attrs.groups) != 1 or str(attrs.data_layout) != "NCHW"
                or str(attrs.kernel_layout) != "IOHW"
                or str(attrs.out_layout or "NCHW") not in ("", "NCHW")
                or any(int(d) != 1 for d in attrs.dilation)):
            raise Unmatched("layout / groups / dilation")
        w, s_w = self.weight_parts(core.args[1], 1)  # IOHW, per output channel
        xq, s_x, z_x, x_dtype = self.act_parts(core.args[0])
        c, o, kh, kw = w.shape
        conv_out, bias, bounds, s_y, z_y, out_dtype = self.epilogue(call, o, 1)
        if not conv_out.same_as(core):
            raise Unmatched("epilogue mismatch")
        in_shape = [int(v) for v in xq.ty.shape]
        out_shape = [int(v) for v in core.ty.shape]
        sh, sw = (int(v) for v in attrs.strides)
        pad = [int(v) for v in attrs.padding]
        plans = (subpixel_plan(kh, sh, pad[0], out_shape[2], in_shape[2]),
                 subpixel_plan(kw, sw, pad[1], out_shape[3], in_shape[3]))
        if plans[0] is None or plans[1] is None:
            raise Unmatched("no sub-pixel plan")
        (_, _, _, ph_lo, ph_hi, qh), (_, _, _, pw_lo, pw_hi, qw) = plans
        found = subpixel_phase_weights(w, (sh, sw), plans, in_shape)
        if found is None:
            raise Unmatched("a phase without taps, or outside the padding")
        phases = [(y0, x0, wp.astype(np.int8)) for _, y0, x0, wp in found]
        xp, ib, zx = self.packed_input(xq, c, x_dtype, z_x)
        xpad = self.padded(xp, [ph_lo, pw_lo, ph_hi, pw_hi], zx)
        q = (s_x, s_w, s_y, zx, bias, bounds, z_y, out_dtype)
        grid = phase_grid(phases, sh, sw)
        if grid is not None:
            out_p = self.phased_conv(xpad, ib, phases, q, grid, (sh, sw), (qh, qw), out_shape)
        else:
            outs = []
            for y0, x0, wp in phases:
                ty, tx = wp.shape[2:]
                win = bb.emit(relax.op.strided_slice(
                    xpad, axes=[2, 3], begin=[y0, x0],
                    end=[y0 + qh + ty - 1, x0 + qw + tx - 1]))
                outs.append(self.int_conv(win, ib, wp, q, [1, 1], [1, 1]))
            out_p = bb.emit(bb.call_te(
                te_interleave_phases, outs, sh, sw, out_shape[2], out_shape[3],
                primfunc_name_hint="interleave_int8"))
        self.deconvs += 1
        return self.unpacked(out_p, o, out_dtype)

    def phased_conv(self, xpad, ib, phases, q, grid, s, qs, out_shape):
        """The packed output of a deconvolution whose ``phases`` ((first row, first
        column, OIHW weight) each, row-major) read windows on the regular ``grid`` of
        :func:`phase_grid`: one :func:`te_deconv_nchwc_int8_requant`, viewed as the
        interleaved layout (``memory.view``: no copy) and cropped."""
        bb = self.builder_
        (sh, sw), (qh, qw) = s, qs
        z_y, out_dtype = q[6], q[7]
        out_shift = 128 if out_dtype == "int8" else 0
        cin_padded = int(xpad.ty.shape[1]) * ib
        kernel = np.stack([pack_conv_weight(wp, ib, cin_padded) for _, _, wp in phases])
        reqs = [self.requant_arrays(wp, q) for _, _, wp in phases]
        bias = np.stack([r[0] for r in reqs])
        _, mult, qlo, qhi = reqs[0]
        assert all(np.array_equal(r[1], mult) for r in reqs)  # s_x s_w / s_y: per channel
        out7 = bb.emit(bb.call_te(
            te_deconv_nchwc_int8_requant, xpad,
            relax.const(kernel.reshape(sh, sw, *kernel.shape[1:])),
            relax.const(bias.reshape(sh, sw, *bias.shape[1:])), relax.const(mult),
            origin=grid[0], step=grid[1], out_size=(qh, qw), out_zp=z_y + out_shift,
            out_lo=qlo + out_shift, out_hi=qhi + out_shift,
            primfunc_name_hint="conv2d_transpose_NCHWc_int8_requant"))
        n, ob = int(out7.ty.shape[0]), int(out7.ty.shape[1])
        out_p = bb.emit(relax.op.memory.view(out7, (n, ob, qh * sh, qw * sw, OC_BLOCK)))
        if (qh * sh, qw * sw) != tuple(out_shape[2:]):
            out_p = bb.emit(relax.op.strided_slice(
                out_p, axes=[2, 3], begin=[0, 0], end=list(out_shape[2:])))
        return out_p


def phase_grid(phases, sh: int, sw: int):
    """((row, column) of phase (0, 0)'s window, (row, column) step between phases) when
    the ``sh * sw`` sub-pixel ``phases`` ((first row, first column, weight), row-major)
    have equal kernels and windows on a regular grid, as a stride-2 deconvolution's
    always do; else None."""
    if len({wp.shape for _, _, wp in phases}) != 1:
        return None
    rows = [phases[a * sw][0] for a in range(sh)]
    cols = [phases[c][1] for c in range(sw)]
    dy = rows[1] - rows[0] if sh > 1 else 0
    dx = cols[1] - cols[0] if sw > 1 else 0
    grid = all(y0 == rows[0] + (i // sw) * dy and x0 == cols[0] + (i % sw) * dx
               for i, (y0, x0, _) in enumerate(phases))
    return ((rows[0], cols[0]), (dy, dx)) if grid else None
