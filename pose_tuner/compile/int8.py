"""Integer int8 compute for ONNX QDQ models in TVM 0.27.

TVM's ONNX frontend imports a QDQ model (QuantizeLinear / DequantizeLinear around every
conv) as ``dequantize -> float conv2d -> quantize``: the convs still run in float, so an
"int8" build is no faster than fp32. This module provides:

* :func:`quantize_qdq` – ONNX Runtime post-training static quantization (QDQ format,
  u8 activations, per-channel s8 weights) with a choice of calibration method;
* :func:`integer_rewrite` – a Relax pass that turns
  ``dequantize(x_q) -> conv2d(., dequantize(w_q)) [+ bias] [-> relu / clip] -> quantize``
  into an integer u8 x s8 conv with int32 accumulation in TOPI's packed int8 layout
  (data ``[1, C/16, H, W, 16]`` u8, weight ``[O/16, C/16, KH, KW, 4, 16, 4]`` s8, the
  layout the x86 int8 kernels of :mod:`pose_tuner.compile.kernels` tensorize), the input zero point, the bias and the activation
  folded in, then a float32 requantization (multiply by ``s_x s_w / s_y``, round to
  nearest even, add the output zero point, clip, cast). Consecutive integer convs pass
  their activations packed. ``conv2d_transpose`` (stride s) becomes s*s exact integer
  convs, one per output phase (the sub-pixel decomposition of
  :mod:`pose_tuner.compile.relax_passes`), interleaved in the packed layout. ``MatMul`` / ``Gemm``
  with a constant weight become a plain int32 dense (weight ``(O, K)``). Data movement
  between equal quantization parameters (``dequantize -> reshape / transpose / concat /
  slice / max-pool -> quantize``, ShuffleNet's channel shuffle) moves the 8-bit values
  directly. Depthwise convs (groups = channels, 16 channels or more) run integer in the
  packed layout too, so they keep their neighbours' activations packed. Other
  grouped convs, ``Clip`` between conv and ``QuantizeLinear`` (the ONNX frontend lowers
  it to opaque TIR; ONNX Runtime's quantizer removes Relu / Clip there anyway) and
  everything else stay in float (``dequantize -> float op -> quantize``), unchanged;
* :func:`exact_reference` – the QDQ model with its s8 weights stored as u8 (zero point
  +128, the same real values), which ONNX Runtime computes exactly on every ISA: its U8S8
  kernels on AVX2 / AVX-512 without VNNI use ``vpmaddubsw``, which saturates (outputs 10
  quantization steps off on a small test net), while its U8U8 kernels widen to int16.

Numerics follow ONNX Runtime's own integer kernels (``QLinearConv``): exact int32
accumulation with the int32 bias, then ``nearbyint(acc * float32(s_x * s_w / s_y)) + zp``.
"""

from __future__ import annotations

import numpy as np

#: calibration method names accepted by :func:`quantize_qdq`
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")

#: channel block of the packed int8 layout (VNNI: 16 int32 lanes x 4 int8 per lane)
OC_BLOCK = 16
N_ELEMS = 4


# --------------------------------------------------------------------------------------
# quantization (ONNX Runtime)
# --------------------------------------------------------------------------------------


def quantize_qdq(onnx_path: str, calib: np.ndarray, out_path: str, method: str = "minmax",
                 weight_bits: int = 8) -> str:
    """Static INT8 QDQ model of ``onnx_path`` calibrated on ``calib`` (N, C, H, W float32).

    u8 activations (per tensor), s8 symmetric per-channel weights: the u8 x s8 products
    the x86 int8 kernels compute. ``method`` is ``"minmax"``, ``"percentile"`` or
    ``"entropy"`` (ONNX Runtime's ``CalibrationMethod``). ``weight_bits=7`` quantizes the
    weights to [-64, 64] (ONNX Runtime's ``reduce_range``), for the kernels whose 16-bit
    pair sums would saturate with 8 (``Target.int8_weight_bits``). Returns ``out_path``.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
    )
    import onnxruntime as ort

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    if method not in methods:
        raise ValueError(
            f"unknown calibration method {method!r}; expected one of "
            f"{', '.join(CALIBRATION_METHODS)}"
        )
    calib = np.asarray(calib)
    if weight_bits not in (7, 8):
        raise ValueError(f"weight_bits must be 7 or 8, got {weight_bits}")
    if calib.ndim != 4 or len(calib) == 0:
        raise ValueError(f"calibration data must be (N, C, H, W) with N >= 1, got {calib.shape}")
    name = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib[i:i + 1] for i in range(len(calib)))

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: np.ascontiguousarray(x, np.float32)}

    quantize_static(
        onnx_path, out_path, Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
        calibrate_method=methods[method], reduce_range=weight_bits == 7,
    )
    return out_path


#: metadata key and value that mark a reference made by today's rules of :func:`exact_reference`
EXACT_RULES_KEY = "pose_tuner.exact_reference"
EXACT_RULES = "2"  # 1: u8 weights; 2: + quantized Add as Sum


def _exact_rules(model) -> str | None:
    return next((p.value for p in model.metadata_props if p.key == EXACT_RULES_KEY), None)


def exact_reference(qdq_path: str, out_path: str | None = None) -> str:
    """A copy of the QDQ model that ONNX Runtime computes exactly on every x86 ISA.

    The weights' ``DequantizeLinear`` inputs (s8 constants, zero point z) become u8
    constants w + 128 with zero point z + 128: the same real values, so the same model.
    ONNX Runtime then runs its U8U8 integer kernels, which widen to int16 and never
    saturate; its U8S8 kernels use ``vpmaddubsw`` on CPUs without VNNI, whose int16 pair
    sums saturate with 8-bit weights (its documentation says so).

    A quantized ``Add`` (``DequantizeLinear`` inputs, ``QuantizeLinear`` consumers, a
    residual add) becomes ``Sum``, which ONNX Runtime leaves unfused: it then computes the
    graph's own float maths (dequantize, add, quantize rounding half to even). Fused into
    its ``QLinearAdd`` kernel it approximates them: on a MobileNetV2 residual add it gave
    118 where the graph's maths give 119 (3.500005 steps), on 7 of 24,576 elements, and
    a residual network amplified that to 12% of the output range.

    Written beside ``qdq_path`` (``.exact.onnx``) unless ``out_path`` is given; reused
    when up to date and made by this version of the rules.
    """
    import os

    import onnx
    from onnx import numpy_helper

    out_path = out_path or qdq_path[:-5] + ".exact.onnx"
    if (os.path.exists(out_path) and os.path.getmtime(out_path) >= os.path.getmtime(qdq_path)
            and _exact_rules(onnx.load(out_path, load_external_data=False)) == EXACT_RULES):
        return out_path
    model = onnx.load(qdq_path)
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits or len(node.input) < 3:
            continue
        w = numpy_helper.to_array(inits[node.input[0]])
        zp_init = inits.get(node.input[2])
        if w.dtype != np.int8 or zp_init is None:
            continue
        zp = numpy_helper.to_array(zp_init)
        inits[node.input[0]].CopyFrom(numpy_helper.from_array(
            (w.astype(np.int16) + 128).astype(np.uint8), node.input[0]))
        zp_init.CopyFrom(numpy_helper.from_array(
            (zp.astype(np.int16) + 128).astype(np.uint8), node.input[2]))
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in model.graph.node:
        if (node.op_type == "Add" and node.domain in ("", "ai.onnx")
                and all(i in producers and producers[i].op_type == "DequantizeLinear"
                        for i in node.input)
                and consumers.get(node.output[0])
                and all(c.op_type == "QuantizeLinear" for c in consumers[node.output[0]])):
            node.op_type = "Sum"
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        EXACT_RULES_KEY: EXACT_RULES})
    tmp = f"{out_path}.tmp-{os.getpid()}"
    onnx.save(model, tmp)
    os.replace(tmp, out_path)
    return out_path


# --------------------------------------------------------------------------------------
# TE computes: pack / unpack, packed int8 conv + requantize, int8 dense + requantize
# --------------------------------------------------------------------------------------


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
):
    """Packed u8 x s8 depthwise conv2d (int32 accumulation) + requantization.

    ``data`` [N, CB, H, W, 16] u8, already padded; ``kernel`` [CB, KH, KW, 16] s8 (channel
    ``cb * 16 + k``); ``bias`` and ``mult`` [CB, 16]. Channels stay in their block, so a
    depthwise conv between two integer convs keeps the activations packed.
    """
    from tvm import te

    n, cb, ih, iw, blk = (int(v) for v in data.shape)
    _, kh_, kw_, _ = (int(v) for v in kernel.shape)
    (sh, sw), (dh, dw) = strides, dilation
    oh, ow, kh, kw = _window(ih, iw, kh_, kw_, strides, dilation)
    acc = te.compute(
        (n, cb, oh, ow, blk),
        lambda b, c, y, x, k: te.sum(
            data[b, c, y * sh + kh * dh, x * sw + kw * dw, k].astype("int32")
            * kernel[c, kh, kw, k].astype("int32"),
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


#: MetaSchedule's custom rule for the depthwise block (``s_tir.meta_schedule.cpu.<name>``)
DEPTHWISE_RULE = "pose_tuner_depthwise_nchwc_int8"


def register_schedule_rules() -> None:
    """Register :func:`schedule_depthwise` as MetaSchedule's custom rule for the depthwise
    block (``ApplyCustomRule`` looks it up by name for LLVM targets). Idempotent."""
    import tvm

    name = f"s_tir.meta_schedule.cpu.{DEPTHWISE_RULE}"
    if tvm.get_global_func(name, allow_missing=True) is None:
        tvm.register_global_func(name, schedule_depthwise)


def schedule_depthwise(sch, block):
    """The design space of the packed depthwise block: one sketch, its width tile sampled.

    MetaSchedule's generic tiling of this block gave schedules from 4 to 100 us for the same
    264k-op depthwise layer at one trial per task (the default budget), many of them not
    parallel or not vectorised over the 16 channels of a block. Here every sample is
    parallel over (batch, channel block, row), keeps the 9 (KH x KW) taps unrolled outside
    a width tile and vectorises the 16 channels; MetaSchedule only chooses the width tile.
    """
    b, c, y, x, k, kh, kw = sch.get_loops(block)
    xo, xi = sch.split(x, sch.sample_perfect_tile(x, n=2, max_innermost_factor=8))
    sch.reorder(b, c, y, xo, kh, kw, xi, k)
    outer = sch.fuse(b, c, y)
    sch.parallel(outer)
    sch.unroll(kh)
    sch.unroll(kw)
    sch.unroll(xi)
    sch.vectorize(k)
    # the requantize consumer and the reduction's init are left to MetaSchedule's own rules
    # and postprocessors: a rule that moves its consumers records a variable number of
    # loops in the trace, which the evolutionary search's replays then reject
    # ("old_outputs.size() == new_outputs.size()")
    return [sch]


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


# --------------------------------------------------------------------------------------
# the Relax rewrite
# --------------------------------------------------------------------------------------


def pack_conv_weight(w: np.ndarray, ib: int, cin_padded: int) -> np.ndarray:
    """OIHW s8 -> [O/16, C/ib, KH, KW, ib/4, 16, 4] (O and C zero-padded)."""
    o, c, kh, kw = w.shape
    op = -(-o // OC_BLOCK) * OC_BLOCK
    wp = np.zeros((op, cin_padded, kh, kw), dtype=w.dtype)
    wp[:o, :c] = w
    wp = wp.reshape(op // OC_BLOCK, OC_BLOCK, cin_padded // ib, ib // N_ELEMS, N_ELEMS, kh, kw)
    # (OB, ocb, CB, f, s, KH, KW) -> (OB, CB, KH, KW, f, ocb, s)
    return np.ascontiguousarray(wp.transpose(0, 2, 5, 6, 3, 1, 4))


def _int_range(dtype: str) -> tuple[int, int]:
    return (0, 255) if dtype == "uint8" else (-128, 127)


def _calls(expr, name: str) -> bool:
    import tvm
    from tvm import relax

    return (isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op)
            and expr.op.name == name)


#: ops that only move or select values: they commute with an equal-parameter (de)quantize
_MOVEMENT_OPS = ("relax.reshape", "relax.permute_dims", "relax.concat", "relax.strided_slice",
                 "relax.nn.max_pool2d", "relax.squeeze", "relax.expand_dims")


class _Unmatched(Exception):
    """The pattern does not apply here; the float ops stay."""


def _make_mutator():
    import tvm
    from tvm import relax
    from tvm.relax import PyExprMutator, expr_functor

    @expr_functor.mutator
    class IntegerRewriter(PyExprMutator):
        def __init__(self, mod):
            super().__init__(mod)
            self.convs = 0
            self.depthwise = 0
            self.deconvs = 0
            self.dense = 0
            self.moves = 0
            self.fold_moves = True
            self.int_depthwise = True
            # var bound to an unpack of ours -> (packed var, channels, block, shift)
            self.packed = {}
            # (NCHW var, block, shift) -> packed var; (packed var, pads, value) -> padded
            self.packs = {}
            self.pads = {}

        # ---- helpers over bindings ------------------------------------------------
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
                raise _Unmatched("constant chain too deep")
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
            raise _Unmatched("not a constant")

        def scalar(self, expr) -> float:
            v = self.const_value(expr)
            if v.size != 1:
                raise _Unmatched("per-channel activation quantization")
            return float(v.reshape(()))

        def dequant_parts(self, expr):
            """(x_q, scale, zero_point, axis) of ``dequantize``; raises if not one."""
            expr = self.resolve(expr)
            if not _calls(expr, "relax.dequantize"):
                raise _Unmatched("not dequantize")
            return expr.args[0], expr.args[1], expr.args[2], int(expr.attrs.axis), expr

        def weight_parts(self, expr, out_axis: int):
            """(s8 weight, per-output scale (O,)) of a constant dequantize with zp 0."""
            wq, s, z, axis, call = self.dequant_parts(expr)
            w = self.const_value(wq)
            if w.dtype != np.int8:
                raise _Unmatched("weights not int8")
            zp = self.const_value(z)
            if np.any(zp != 0):
                raise _Unmatched("asymmetric weights")
            scale = self.const_value(s).astype(np.float32).reshape(-1)
            o = w.shape[out_axis]
            if scale.size == 1:
                scale = np.full(o, scale[0], np.float32)
            elif scale.size != o or axis % w.ndim != out_axis:
                raise _Unmatched("weight scale not per output channel")
            return w, scale

        def act_parts(self, expr):
            """(x_q var, scale, zero point, dtype) of a per-tensor u8/s8 dequantize."""
            xq, s, z, _axis, _ = self.dequant_parts(expr)
            dtype = str(xq.ty.dtype)
            if dtype not in ("uint8", "int8"):
                raise _Unmatched("activation not 8-bit")
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
                raise _Unmatched("output not 8-bit")
            lo, hi = -np.inf, np.inf
            x = self.resolve(call.args[0])
            # activation: relu / clip / maximum / minimum with constants
            for _ in range(3):
                if _calls(x, "relax.nn.relu"):
                    lo = max(lo, 0.0)
                elif _calls(x, "relax.clip"):
                    lo = max(lo, float(self._prim(x.args[1])))
                    hi = min(hi, float(self._prim(x.args[2])))
                elif _calls(x, "relax.maximum") or _calls(x, "relax.minimum"):
                    try:
                        c = self.const_value(x.args[1])
                        other = x.args[0]
                    except _Unmatched:
                        c = self.const_value(x.args[0])
                        other = x.args[1]
                    if c.size != 1:
                        raise _Unmatched("non-scalar clip")
                    if _calls(x, "relax.maximum"):
                        lo = max(lo, float(c.reshape(())))
                    else:
                        hi = min(hi, float(c.reshape(())))
                    x = self.resolve(other)
                    continue
                else:
                    break
                x = self.resolve(x.args[0])
            bias = None
            if _calls(x, "relax.add"):
                core, b = x.args
                try:
                    bv = self.const_value(b)
                except _Unmatched:
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
            raise _Unmatched("clip bound not constant")

        @staticmethod
        def _per_channel(bv, channels, channel_axis, add_call):
            if add_call.ty.shape is None:
                raise _Unmatched("output shape not static")
            out_ndim = len(add_call.ty.shape)
            shape = [1] * (out_ndim - bv.ndim) + list(bv.shape)
            for i, d in enumerate(shape):
                if d != 1 and (i != channel_axis % out_ndim or d != channels):
                    raise _Unmatched("bias not per output channel")
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
                raise _Unmatched("bias out of int32 range")
            mult = (s_x * s_w / s_y).astype(np.float32)
            qlo, qhi = _int_range(out_dtype)
            lo, hi = bounds
            if np.isfinite(lo):
                qlo = max(qlo, int(np.round(np.float32(lo) / s_y)) + z_y)
            if np.isfinite(hi):
                qhi = min(qhi, int(np.round(np.float32(hi) / s_y)) + z_y)
            return bias_i.astype(np.int32), mult, qlo, qhi

        # ---- the rewrite ----------------------------------------------------------
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if not _calls(call, "relax.quantize"):
                return call
            try:
                core = self.epilogue_core(call)
                if _calls(core, "relax.nn.conv2d"):
                    return self.rewrite_conv(call)
                if _calls(core, "relax.nn.conv2d_transpose"):
                    return self.rewrite_deconv(call)
                if _calls(core, "relax.matmul"):
                    return self.rewrite_dense(call)
            except _Unmatched:
                pass
            try:
                if self.fold_moves:
                    return self.fold_movement(call)
            except _Unmatched:
                pass
            return call

        def fold_movement(self, call):
            """``quantize(op(dequantize(x, s, z), ...), s, z)`` -> ``op(x, ...)`` for data
            movement (reshape, transpose, concat, slice) and max pooling: exact when the
            parameters are equal (dequantize is monotonic and q(dq(x)) == x), and the
            quantizer gives these ops their input's parameters. ShuffleNet's channel
            shuffle then moves 8-bit values instead of converting them four times."""
            inner = self.resolve(call.args[0])
            if not (isinstance(inner, relax.Call) and isinstance(inner.op, tvm.ir.Op)
                    and inner.op.name in _MOVEMENT_OPS):
                raise _Unmatched("not data movement")
            s_y, z_y = self.scalar(call.args[1]), self.scalar(call.args[2])
            out_dtype = str(call.attrs.out_dtype)

            def strip(arg):
                xq, s, z, _axis, _ = self.dequant_parts(arg)
                if (str(xq.ty.dtype) != out_dtype or np.float32(self.scalar(s)) != np.float32(s_y)
                        or self.scalar(z) != z_y):
                    raise _Unmatched("quantization parameters differ")
                return xq

            if inner.op.name == "relax.concat":
                tup = self.resolve(inner.args[0])
                if not isinstance(tup, relax.Tuple):
                    raise _Unmatched("concat of a tuple variable")
                args = [relax.Tuple([strip(f) for f in tup.fields]), *inner.args[1:]]
            else:
                args = [strip(inner.args[0]), *inner.args[1:]]
            self.moves += 1
            return self.builder_.normalize(relax.Call(inner.op, args, inner.attrs))

        def epilogue_core(self, call):
            x = self.resolve(call.args[0])
            for _ in range(4):
                if (_calls(x, "relax.nn.relu") or _calls(x, "relax.clip")
                        or _calls(x, "relax.add") or _calls(x, "relax.maximum")
                        or _calls(x, "relax.minimum")):
                    nxt = self.resolve(x.args[0])
                    if (_calls(x, "relax.add") or _calls(x, "relax.maximum")
                            or _calls(x, "relax.minimum")) and isinstance(
                                nxt, tvm.ir.expr.Constant):
                        nxt = self.resolve(x.args[1])
                    x = nxt
                else:
                    break
            return x

        def rewrite_conv(self, call):
            core = self.epilogue_core(call)
            attrs = core.attrs
            if (str(attrs.data_layout) != "NCHW" or str(attrs.kernel_layout) != "OIHW"
                    or str(attrs.out_layout or "NCHW") not in ("", "NCHW")):
                raise _Unmatched("layout")
            if int(attrs.groups) != 1:
                return self.rewrite_depthwise(call, core)
            w, s_w = self.weight_parts(core.args[1], 0)
            xq, s_x, z_x, x_dtype = self.act_parts(core.args[0])
            o, c, _, _ = w.shape
            conv_out, bias, bounds, s_y, z_y, out_dtype = self.epilogue(call, o, 1)
            if not conv_out.same_as(core):
                raise _Unmatched("epilogue mismatch")
            xp, ib, zx = self.packed_input(xq, c, x_dtype, z_x)
            xp = self.padded(xp, [int(v) for v in attrs.padding], zx)
            q = (s_x, s_w, s_y, zx, bias, bounds, z_y, out_dtype)
            out_p = self.int_conv(xp, ib, w, q, [int(v) for v in attrs.strides],
                                  [int(v) for v in attrs.dilation])
            self.convs += 1
            return self.unpacked(out_p, o, out_dtype)

        def rewrite_depthwise(self, call, core):
            """Depthwise conv (groups == in == out channels) on the packed activations of
            the integer layers around it; other grouped convs stay float."""
            attrs = core.attrs
            if not self.int_depthwise:
                raise _Unmatched("integer depthwise convs switched off")
            w, s_w = self.weight_parts(core.args[1], 0)
            xq, s_x, z_x, x_dtype = self.act_parts(core.args[0])
            o, per_group, kh, kw = w.shape
            c = int(xq.ty.shape[1])
            if per_group != 1 or int(attrs.groups) != c or o != c:
                raise _Unmatched("grouped conv that is not depthwise")
            conv_out, bias, bounds, s_y, z_y, out_dtype = self.epilogue(call, o, 1)
            if not conv_out.same_as(core):
                raise _Unmatched("epilogue mismatch")
            xp, ib, zx = self.packed_input(xq, c, x_dtype, z_x)
            if ib != OC_BLOCK:
                raise _Unmatched("fewer channels than one block")
            xp = self.padded(xp, [int(v) for v in attrs.padding], zx)
            bias_c, mult_c, qlo, qhi = self.block_requant(
                w, (s_x, s_w, s_y, zx, bias, bounds, z_y, out_dtype))
            cb = int(xp.ty.shape[1])  # = ceil(o / 16): the input has the output's channels
            wp = np.zeros((cb * OC_BLOCK, kh, kw), np.int8)
            wp[:o] = w[:, 0]
            wp = np.ascontiguousarray(wp.reshape(cb, OC_BLOCK, kh, kw).transpose(0, 2, 3, 1))
            out_shift = 128 if out_dtype == "int8" else 0
            out_p = self.builder_.emit(self.builder_.call_te(
                te_depthwise_nchwc_int8_requant, xp, relax.const(wp), bias_c, mult_c,
                strides=[int(v) for v in attrs.strides],
                dilation=[int(v) for v in attrs.dilation], out_zp=z_y + out_shift,
                out_lo=qlo + out_shift, out_hi=qhi + out_shift,
                primfunc_name_hint="depthwise_NCHWc_int8_requant",
            ))
            self.depthwise += 1
            return self.unpacked(out_p, o, out_dtype)

        def packed_input(self, xq, c, x_dtype, z_x):
            """(packed uint8 input, channel block, its zero point) for an 8-bit NCHW var;
            reuses the packed output of a previous integer layer."""
            bb = self.builder_
            shift = 128 if x_dtype == "int8" else 0  # int8 activations are packed +128
            root = self._root_var(xq)
            packed = self.packed.get(root)
            if packed is not None and packed[1] == c and packed[3] == shift:
                return packed[0], packed[2], z_x + shift
            ib = OC_BLOCK if c >= OC_BLOCK else N_ELEMS
            key = (root, ib, shift)
            if key not in self.packs:
                self.packs[key] = bb.emit(bb.call_te(
                    te_pack, xq, ib, shift, primfunc_name_hint="pack_int8"))
            return self.packs[key], ib, z_x + shift

        def padded(self, xp, pad, value):
            if not any(pad):
                return xp
            key = (xp, tuple(pad), value)
            if key not in self.pads:
                self.pads[key] = self.builder_.emit(self.builder_.call_te(
                    te_pad_packed, xp, pad, value, primfunc_name_hint="pad_int8"))
            return self.pads[key]

        def int_conv(self, xp, ib, w, q, strides, dilation):
            """Packed integer conv of ``xp`` with OIHW int8 ``w``, requantized by ``q``
            (s_x, s_w, s_y, packed z_x, bias, bounds, z_y, out dtype)."""
            s_x, s_w, s_y, zx, bias, bounds, z_y, out_dtype = q
            out_shift = 128 if out_dtype == "int8" else 0
            cin_padded = int(xp.ty.shape[1]) * ib
            bias_c, mult_c, qlo, qhi = self.block_requant(w, q)
            return self.builder_.emit(self.builder_.call_te(
                te_conv2d_nchwc_int8_requant, xp,
                relax.const(pack_conv_weight(w, ib, cin_padded)), bias_c, mult_c,
                strides=strides, dilation=dilation, out_zp=z_y + out_shift,
                out_lo=qlo + out_shift, out_hi=qhi + out_shift,
                primfunc_name_hint="conv2d_NCHWc_int8_requant",
            ))

        def block_requant(self, w, q):
            """(int32 bias, float32 multiplier) constants [O/16, 16], zero-padded, and the
            clip range, of an integer conv with OIHW weights ``w`` and parameters ``q``
            (s_x, s_w, s_y, packed z_x, bias, bounds, z_y, out dtype)."""
            s_x, s_w, s_y, zx, bias, bounds, z_y, out_dtype = q
            o = w.shape[0]
            wsum = w.astype(np.int64).sum(axis=(1, 2, 3))
            bias_i, mult, qlo, qhi = self.requant_params(
                s_x, s_w, s_y, zx, wsum, bias, bounds, z_y, out_dtype)
            ob = -(-o // OC_BLOCK)
            bias_p = np.zeros(ob * OC_BLOCK, np.int32)
            bias_p[:o] = bias_i
            mult_p = np.zeros(ob * OC_BLOCK, np.float32)
            mult_p[:o] = mult
            return (relax.const(bias_p.reshape(ob, OC_BLOCK)),
                    relax.const(mult_p.reshape(ob, OC_BLOCK)), qlo, qhi)

        def unpacked(self, out_p, o, out_dtype):
            out_shift = 128 if out_dtype == "int8" else 0
            y = self.builder_.emit(self.builder_.call_te(
                te_unpack, out_p, o, out_shift, out_dtype, primfunc_name_hint="unpack_int8"))
            self.packed[y] = (out_p, o, OC_BLOCK, out_shift)
            return y

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
                raise _Unmatched("layout / groups / dilation")
            w, s_w = self.weight_parts(core.args[1], 1)  # IOHW, per output channel
            xq, s_x, z_x, x_dtype = self.act_parts(core.args[0])
            c, o, kh, kw = w.shape
            conv_out, bias, bounds, s_y, z_y, out_dtype = self.epilogue(call, o, 1)
            if not conv_out.same_as(core):
                raise _Unmatched("epilogue mismatch")
            in_shape = [int(v) for v in xq.ty.shape]
            out_shape = [int(v) for v in core.ty.shape]
            sh, sw = (int(v) for v in attrs.strides)
            pad = [int(v) for v in attrs.padding]
            plans = (subpixel_plan(kh, sh, pad[0], out_shape[2], in_shape[2]),
                     subpixel_plan(kw, sw, pad[1], out_shape[3], in_shape[3]))
            if plans[0] is None or plans[1] is None:
                raise _Unmatched("no sub-pixel plan")
            (_, _, _, ph_lo, ph_hi, qh), (_, _, _, pw_lo, pw_hi, qw) = plans
            found = subpixel_phase_weights(w, (sh, sw), plans, in_shape)
            if found is None:
                raise _Unmatched("a phase without taps, or outside the padding")
            phases = [(y0, x0, wp.astype(np.int8)) for _, y0, x0, wp in found]
            xp, ib, zx = self.packed_input(xq, c, x_dtype, z_x)
            xpad = self.padded(xp, [ph_lo, pw_lo, ph_hi, pw_hi], zx)
            q = (s_x, s_w, s_y, zx, bias, bounds, z_y, out_dtype)
            outs = []
            for y0, x0, wp in phases:
                ty, tx = wp.shape[2:]
                win = bb.emit(relax.op.strided_slice(
                    xpad, axes=[2, 3], begin=[y0, x0], end=[y0 + qh + ty - 1, x0 + qw + tx - 1]))
                outs.append(self.int_conv(win, ib, wp, q, [1, 1], [1, 1]))
            out_p = bb.emit(bb.call_te(
                te_interleave_phases, outs, sh, sw, out_shape[2], out_shape[3],
                primfunc_name_hint="interleave_int8"))
            self.deconvs += 1
            return self.unpacked(out_p, o, out_dtype)

        def _root_var(self, v):
            while isinstance(v, relax.Var):
                if v in self.packed:
                    return v
                val = self.lookup_binding(v)
                if not isinstance(val, relax.Var):
                    return v
                v = val
            return v

        def rewrite_dense(self, call):
            bb = self.builder_
            core = self.epilogue_core(call)
            a, b = core.args
            xq, s_x, z_x, x_dtype = self.act_parts(a)
            if len(xq.ty.shape) != 2:
                raise _Unmatched("dense input not 2-D")
            bexpr = self.resolve(b)
            if _calls(bexpr, "relax.permute_dims"):  # Gemm transB: w is (O, K) already
                w, s_w = self.weight_parts(bexpr.args[0], 0)
            else:  # MatMul: (K, O)
                w, s_w = self.weight_parts(b, 1)
                w = np.ascontiguousarray(w.T)
            o = w.shape[0]
            dense_out, bias, bounds, s_y, z_y, out_dtype = self.epilogue(call, o, -1)
            if not dense_out.same_as(core):
                raise _Unmatched("epilogue mismatch")
            shift = 128 if x_dtype == "int8" else 0
            wsum = w.astype(np.int64).sum(axis=1)
            bias_i, mult, qlo, qhi = self.requant_params(
                s_x, s_w, s_y, z_x + shift, wsum, bias, bounds, z_y, out_dtype)
            y = bb.emit(bb.call_te(
                te_dense_int8_requant, xq, relax.const(w), relax.const(bias_i),
                relax.const(mult), shift=shift, out_zp=z_y, out_lo=qlo, out_hi=qhi,
                out_dtype=out_dtype, primfunc_name_hint="dense_int8_requant",
            ))
            self.dense += 1
            return y

    return IntegerRewriter


def integer_rewrite(mod, stats: dict | None = None, movement: bool = True,
                    depthwise: bool = True):
    """Rewrite the QDQ float patterns of ``mod`` into integer compute (see module doc).

    Call on the module :func:`pose_tuner.compile.tvm_builder.import_onnx` returns, before
    :func:`pose_tuner.compile.tvm_builder.prepare`. What does not match stays float. With ``stats``
    (a dict), the numbers of rewritten layers are added to it as ``"conv2d"``,
    ``"depthwise"``, ``"conv2d_transpose"``, ``"dense"`` and ``"movement"`` (data movement
    kept in 8 bits).
    ``movement=False`` leaves data movement in float, as before 0.2.0, and
    ``depthwise=False`` the depthwise convs (for comparisons).
    """
    import tvm
    from tvm import relax

    mutator = _make_mutator()(mod)
    mutator.fold_moves = movement
    mutator.int_depthwise = depthwise
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            func = mutator.visit_expr(func)
            mutator.builder_.update_func(gv, func)
    out = mutator.builder_.get()
    out = tvm.transform.Sequential([
        relax.transform.CanonicalizeBindings(),
        relax.transform.DeadCodeElimination(),
    ])(out)
    if stats is not None:
        stats["conv2d"] = stats.get("conv2d", 0) + mutator.convs
        stats["depthwise"] = stats.get("depthwise", 0) + mutator.depthwise
        stats["conv2d_transpose"] = stats.get("conv2d_transpose", 0) + mutator.deconvs
        stats["dense"] = stats.get("dense", 0) + mutator.dense
        stats["movement"] = stats.get("movement", 0) + mutator.moves
    return out


def integer_reductions(mod) -> list[tuple[str, str]]:
    """(PrimFunc, block) of every reduction that accumulates 8-bit inputs into int32.

    Looks at the top-level blocks of each PrimFunc of ``mod`` (as :func:`integer_rewrite`
    leaves them, before scheduling): a block with a reduction axis that writes int32 and
    reads an int8/uint8 buffer. Empty for a module whose convs are all float.
    """
    import tvm
    from tvm import s_tir

    found = []
    for gv, func in mod.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        sch = s_tir.Schedule(func)
        try:
            blocks = sch.get_child_blocks(sch.get_sblock("root"))
        except Exception:  # noqa: BLE001 - no root block: not a TE-made function
            continue
        for rv in blocks:
            block = sch.get(rv)
            reduces = any(int(iv.iter_type) == 2 for iv in block.iter_vars)  # CommReduce
            reads = {str(r.source.dtype) for r in block.reads}
            writes = {str(w.source.dtype) for w in block.writes}
            if reduces and writes == {"int32"} and reads & {"int8", "uint8"}:
                found.append((gv.name_hint, block.name_hint))
    return found
