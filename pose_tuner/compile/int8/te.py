"""TE computes of the int8 path, and the packed weight layout they read.

Pack / unpack between NCHW and TOPI's packed int8 layout (data ``[N, C/16, H, W, 16]``
u8), padding of packed data, the packed u8 x s8 conv2d and depthwise conv2d with int32
accumulation and requantization, the interleaving of sub-pixel phases, and an int8 dense.
:func:`pose_tuner.compile.int8.rewrite.integer_rewrite` emits them with ``call_te``; the
x86 int8 kernels of :mod:`pose_tuner.compile.kernels` tensorize the packed conv.

Requantization follows ONNX Runtime's ``QLinearConv``: exact int32 accumulation with the
int32 bias, then ``nearbyint(acc * float32(s_x * s_w / s_y)) + zp``, clipped.
"""

from __future__ import annotations

import numpy as np

from pose_tuner.compile.int8.matching import int_range
from pose_tuner.compile.int8.rules import DEPTHWISE_RULE, POOL_RULE

#: channel block of the packed int8 layout (VNNI: 16 int32 lanes x 4 int8 per lane)
OC_BLOCK = 16
N_ELEMS = 4


def _requant(acc, bias, mult, zp: int, lo: int, hi: int, out_dtype: str):
    """clip(nearbyint(float32(acc + bias) * mult) + zp, lo, hi) as ``out_dtype``."""
    from tvm import tirx

    v = tirx.nearbyint((acc + bias).astype("float32") * mult).astype("int32") + zp
    return tirx.max(tirx.min(v, hi), lo).astype(out_dtype)


def te_pack(x, block: int, shift: int):
    """NCHW -> NCHW{block}c as uint8; channels padded with 0 up to a multiple of ``block``.

    ``shift`` (128 for int8 activations, else 0) is added to make them uint8.
    """
    from tvm import te, tirx

    n, c, h, w = (int(v) for v in x.shape)
    cb = -(-c // block)

    def f(i, o, y, z, b):
        ch = o * block + b
        v = x[i, tirx.min(ch, c - 1), y, z]
        v = (v.astype("int32") + shift).astype("uint8") if shift else v.astype("uint8")
        return tirx.if_then_else(ch < c, v, tirx.const(0, "uint8"))

    return te.compute((n, cb, h, w, block), f, name="pack_int8")


def te_unpack(x, channels: int, shift: int, out_dtype: str):
    """NCHW{block}c -> NCHW with ``channels`` channels (``shift`` subtracted, as ``out_dtype``)."""
    from tvm import te

    n, _, h, w, block = (int(v) for v in x.shape)

    def f(i, c, y, z):
        v = x[i, c // block, y, z, c % block]
        return (v.astype("int32") - shift).astype(out_dtype) if shift else v.astype(out_dtype)

    return te.compute((n, channels, h, w), f, name="unpack_int8")


def te_pad_packed(data, padding, pad_value: int):
    """Spatial padding (top, left, bottom, right) of packed data with ``pad_value``."""
    from tvm import topi

    pt, pl, pb, pr = padding
    return topi.nn.pad(data, (0, 0, pt, pl, 0), (0, 0, pb, pr, 0), pad_value=pad_value,
                       name="pad_int8")


def te_max_pool_packed(data, pool_size, strides, dilation, padding, ceil_mode: bool):
    """Max pooling of packed (NCHW{block}c) 8-bit data.

    Taps outside the input (``padding`` top, left, bottom, right, and the extra row or
    column of ``ceil_mode``) read 0, the uint8 minimum: exact, as every window holds an
    input element, and on the +128-shifted values of int8 activations too, whose order the
    shift keeps. The block carries :data:`POOL_RULE` (one schedule:
    :func:`pose_tuner.compile.int8.rules.schedule_max_pool`).
    """
    from tvm import te, tirx

    n, cb, ih, iw, blk = (int(v) for v in data.shape)
    (ph, pw), (sh, sw), (dh, dw) = pool_size, strides, dilation
    pt, pl, pb, pr = padding

    def out_size(size, lo, hi, k, s, d):
        span = size + lo + hi - d * (k - 1) - 1
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= size + lo:
            out -= 1  # the last window must start inside the input or its left padding
        return out

    oh = out_size(ih, pt, pb, ph, sh, dh)
    ow = out_size(iw, pl, pr, pw, sw, dw)
    rh = te.reduce_axis((0, ph), name="rh")
    rw = te.reduce_axis((0, pw), name="rw")

    def f(b, c, y, x, k):
        iy = y * sh + rh * dh - pt
        ix = x * sw + rw * dw - pl
        inside = tirx.all(iy >= 0, iy < ih, ix >= 0, ix < iw)
        v = data[b, c, tirx.min(tirx.max(iy, 0), ih - 1), tirx.min(tirx.max(ix, 0), iw - 1), k]
        return te.max(tirx.if_then_else(inside, v, tirx.const(0, data.dtype)), axis=[rh, rw])

    return te.compute((n, cb, oh, ow, blk), f, name="max_pool_int8",
                      attrs={"schedule_rule": POOL_RULE})


def _window(ih: int, iw: int, kh_: int, kw_: int, strides, dilation):
    """(output height, width, KH reduce axis, KW reduce axis) of a sliding window over an
    already padded input."""
    from tvm import te

    (sh, sw), (dh, dw) = strides, dilation
    oh = (ih - ((kh_ - 1) * dh + 1)) // sh + 1
    ow = (iw - ((kw_ - 1) * dw + 1)) // sw + 1
    return oh, ow, te.reduce_axis((0, kh_), name="kh"), te.reduce_axis((0, kw_), name="kw")


def te_conv2d_nchwc_int8_requant(
    data, kernel, bias, mult, *, strides, dilation, out_zp: int, out_lo: int, out_hi: int,
):
    """Packed u8 x s8 conv2d (int32 accumulation) + requantization, packed u8 output.

    ``data`` [N, CB, H, W, ib] u8, already padded (:func:`te_pad_packed`); ``kernel``
    [OB, CB, KH, KW, ib/4, 16, 4] s8 (TOPI's ``conv2d_NCHWc_int8`` layout); ``bias``
    [OB, 16] int32 (bias and input zero-point correction); ``mult`` [OB, 16] float32.
    The accumulation is TOPI's compute without its ``schedule_rule`` annotation, so
    MetaSchedule's own rules (VNNI included) apply.

    Padding is not done here: MetaSchedule inlines a pad block into the conv, and the
    conv's data operand, then an ``if_then_else``, no longer matches the VNNI intrinsic
    ("Tensorize failed"); worse, the half-tensorized candidates put a weight layout
    rewrite block inside the reduction loop, on which ``RemoveWeightLayoutRewriteBlock``
    aborts the whole tuning run ("Check failed: (ind.as<PrimVar>())").
    """
    from tvm import te

    n, _, ih, iw, ib = (int(v) for v in data.shape)
    ob, cb, kh_, kw_, _, oc_bn, _ = (int(v) for v in kernel.shape)
    (sh, sw), (dh, dw) = strides, dilation
    oh, ow, kh, kw = _window(ih, iw, kh_, kw_, strides, dilation)
    ic_outer = te.reduce_axis((0, cb), name="ic_outer")
    ic_f_inner = te.reduce_axis((0, ib // N_ELEMS), name="ic_f_inner")
    ic_s_inner = te.reduce_axis((0, N_ELEMS), name="ic_s_inner")
    acc = te.compute(
        (n, ob, oh, ow, oc_bn),
        lambda b, oc, y, x, ocb: te.sum(
            data[b, ic_outer, y * sh + kh * dh, x * sw + kw * dw,
                 ic_f_inner * N_ELEMS + ic_s_inner].astype("int32")
            * kernel[oc, ic_outer, kh, kw, ic_f_inner, ocb, ic_s_inner].astype("int32"),
            axis=[kh, kw, ic_outer, ic_f_inner, ic_s_inner],
        ),
        name="conv2d_NCHWc_int8",
    )
    return te.compute(
        acc.shape,
        lambda b, oc, y, x, ocb: _requant(
            acc[b, oc, y, x, ocb], bias[oc, ocb], mult[oc, ocb], out_zp, out_lo, out_hi,
            "uint8"),
        name="requantize",
    )


def te_depthwise_nchwc_int8_requant(
    data, kernel, bias, mult, *, strides, dilation, out_zp: int, out_lo: int, out_hi: int,
    padding=(0, 0, 0, 0), pad_value: int = 0,
):
    """Packed u8 x s8 depthwise conv2d (int32 accumulation) + requantization.

    ``data`` [N, CB, H, W, 16] u8, read as if padded by ``padding`` (top, left, bottom,
    right) with ``pad_value`` (the input's zero point): taps outside it read the value,
    so that no padded copy of the activations is written and read back; ``kernel``
    [CB, KH, KW, 16] s8 (channel ``cb * 16 + k``); ``bias`` and ``mult`` [CB, 16].
    Channels stay in their block, so a depthwise conv between two integer convs keeps
    the activations packed.
    """
    from tvm import te, tirx

    n, cb, ih, iw, blk = (int(v) for v in data.shape)
    _, kh_, kw_, _ = (int(v) for v in kernel.shape)
    (sh, sw), (dh, dw) = strides, dilation
    pt, pl, pb, pr = padding
    oh, ow, kh, kw = _window(ih + pt + pb, iw + pl + pr, kh_, kw_, strides, dilation)

    def tap(b, c, y, x, k):
        iy, ix = y * sh + kh * dh - pt, x * sw + kw * dw - pl
        v = data[b, c, iy, ix, k]
        if not any(padding):
            return v
        inside = tirx.all(iy >= 0, iy < ih, ix >= 0, ix < iw)
        return tirx.if_then_else(inside, v, tirx.const(pad_value, "uint8"))

    acc = te.compute(
        (n, cb, oh, ow, blk),
        lambda b, c, y, x, k: te.sum(
            tap(b, c, y, x, k).astype("int32") * kernel[c, kh, kw, k].astype("int32"),
            axis=[kh, kw],
        ),
        name="depthwise_NCHWc_int8",
        attrs={"schedule_rule": DEPTHWISE_RULE},
    )
    return te.compute(
        acc.shape,
        lambda b, c, y, x, k: _requant(
            acc[b, c, y, x, k], bias[c, k], mult[c, k], out_zp, out_lo, out_hi, "uint8"),
        name="requantize",
    )


def te_deconv_nchwc_int8_requant(
    data, kernel, bias, mult, *, origin, step, out_size, out_zp: int, out_lo: int,
    out_hi: int,
):
    """Every sub-pixel phase of a transposed conv as one packed u8 x s8 conv (int32
    accumulation) + requantization, its output phase-major: [N, OB, QH, SH, QW, SW, 16],
    whose reshape to [N, OB, QH*SH, QW*SW, 16] is the deconvolution's packed output (row
    ``qy * SH + a`` is phase row ``a``).

    ``data`` [N, CB, H, W, ib] u8, padded so that phase (a, c) reads the window of
    ``out_size`` (QH, QW) outputs starting at row ``origin[0] + a * step[0]``, column
    ``origin[1] + c * step[1]``; ``kernel`` [SH, SW, OB, CB, TH, TW, ib/4, 16, 4] s8 (each
    phase's conv weight in :func:`pack_conv_weight`'s layout); ``bias`` [SH, SW, OB, 16]
    int32 (the zero-point correction differs by phase); ``mult`` [OB, 16] float32. The
    phases are spatial axes of one block, so MetaSchedule tiles them with the pixels and
    no interleaving pass or window copies are needed.
    """
    from tvm import te

    n, _, _, _, ib = (int(v) for v in data.shape)
    sh, sw, ob, cb, kh_, kw_, _, oc_bn, _ = (int(v) for v in kernel.shape)
    (oy, ox), (dy, dx), (qh, qw) = origin, step, out_size
    kh = te.reduce_axis((0, kh_), name="kh")
    kw = te.reduce_axis((0, kw_), name="kw")
    ic_outer = te.reduce_axis((0, cb), name="ic_outer")
    ic_f_inner = te.reduce_axis((0, ib // N_ELEMS), name="ic_f_inner")
    ic_s_inner = te.reduce_axis((0, N_ELEMS), name="ic_s_inner")
    acc = te.compute(
        (n, ob, qh, sh, qw, sw, oc_bn),
        lambda b, oc, y, a, x, c, ocb: te.sum(
            data[b, ic_outer, y + oy + a * dy + kh, x + ox + c * dx + kw,
                 ic_f_inner * N_ELEMS + ic_s_inner].astype("int32")
            * kernel[a, c, oc, ic_outer, kh, kw, ic_f_inner, ocb, ic_s_inner].astype("int32"),
            axis=[kh, kw, ic_outer, ic_f_inner, ic_s_inner],
        ),
        name="conv2d_NCHWc_int8",
    )
    return te.compute(
        acc.shape,
        lambda b, oc, y, a, x, c, ocb: _requant(
            acc[b, oc, y, a, x, c, ocb], bias[a, c, oc, ocb], mult[oc, ocb], out_zp, out_lo,
            out_hi, "uint8"),
        name="requantize",
    )


def te_interleave_phases(phases, sh: int, sw: int, out_h: int, out_w: int):
    """Depth-to-space of packed sub-pixel phase outputs (row-major phase order), cropped."""
    from tvm import te, tirx

    n, ob, _, _, blk = (int(v) for v in phases[0].shape)

    def f(i, o, y, x, b):
        p = (y % sh) * sw + x % sw
        v = phases[-1][i, o, y // sh, x // sw, b]
        for k in range(len(phases) - 2, -1, -1):
            v = tirx.Select(p == k, phases[k][i, o, y // sh, x // sw, b], v)
        return v

    return te.compute((n, ob, out_h, out_w, blk), f, name="interleave_int8")


def te_dense_int8_requant(data, weight, bias, mult, *, shift: int, out_zp: int, out_lo: int,
                          out_hi: int, out_dtype: str):
    """(M, K) u8/s8 x (O, K) s8 dense with int32 accumulation + requantization."""
    from tvm import te

    m, k_ = (int(v) for v in data.shape)
    o = int(weight.shape[0])
    k = te.reduce_axis((0, k_), name="k")

    def a(i, kk):
        v = data[i, kk].astype("int32")
        return v + shift if shift else v

    acc = te.compute(
        (m, o),
        lambda i, j: te.sum(a(i, k) * weight[j, k].astype("int32"), axis=k),
        name="dense_int8",
    )
    return te.compute(
        (m, o),
        lambda i, j: _requant(acc[i, j], bias[j], mult[j], out_zp, out_lo, out_hi, out_dtype),
        name="requantize",
    )


def pack_conv_weight(w: np.ndarray, ib: int, cin_padded: int) -> np.ndarray:
    """OIHW s8 -> [O/16, C/ib, KH, KW, ib/4, 16, 4] (O and C zero-padded)."""
    o, c, kh, kw = w.shape
    op = -(-o // OC_BLOCK) * OC_BLOCK
    wp = np.zeros((op, cin_padded, kh, kw), dtype=w.dtype)
    wp[:o, :c] = w
    wp = wp.reshape(op // OC_BLOCK, OC_BLOCK, cin_padded // ib, ib // N_ELEMS, N_ELEMS, kh, kw)
    # (OB, ocb, CB, f, s, KH, KW) -> (OB, CB, KH, KW, f, ocb, s)
    return np.ascontiguousarray(wp.transpose(0, 2, 5, 6, 3, 1, 4))


def te_add_packed_requant(a, b, *, a_zp: int, a_scale: float, b_zp: int, b_scale: float,
                          out_scale: float, out_zp: int, out_dtype: str):
    """Sum of two packed u8 activations of the same shape, requantized, packed u8 out.

    The maths of ``quantize(add(dequantize(a), dequantize(b)))``, element by element: ``float32(a - a_zp) * a_scale + float32(b - b_zp) * b_scale``,
    divided by ``out_scale``, rounded half to even (as ONNX's ``QuantizeLinear``; Relax's
    legalized ``quantize`` rounds ties away from zero), plus ``out_zp``, clipped to
    ``out_dtype`` (``uint8`` or ``int8``; int8 is written +128, as packed int8 activations
    are). ``a_zp`` and ``b_zp`` are the packed (shifted) zero points.
    """
    from tvm import te, tirx

    lo, hi = int_range(out_dtype)
    shift = 128 if out_dtype == "int8" else 0

    def f(*i):
        fa = (a[i].astype("int32") - a_zp).astype("float32") * tirx.const(a_scale, "float32")
        fb = (b[i].astype("int32") - b_zp).astype("float32") * tirx.const(b_scale, "float32")
        q = tirx.nearbyint((fa + fb) / tirx.const(out_scale, "float32")) \
            + tirx.const(out_zp, "float32")
        q = tirx.max(tirx.min(q, tirx.const(hi, "float32")), tirx.const(lo, "float32"))
        return (q.astype("int32") + shift).astype("uint8")

    return te.compute(a.shape, f, name="add_int8_requant")
