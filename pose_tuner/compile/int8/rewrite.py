"""The Relax rewrite of the int8 path: QDQ float patterns to integer compute.

:func:`integer_rewrite` turns
``dequantize(x_q) -> conv2d(., dequantize(w_q)) [+ bias] [-> relu / clip] -> quantize``
into an integer u8 x s8 conv with int32 accumulation in TOPI's packed int8 layout
(data ``[1, C/16, H, W, 16]`` u8, weight ``[O/16, C/16, KH, KW, 4, 16, 4]`` s8, the layout
the x86 int8 kernels of :mod:`pose_tuner.compile.kernels` tensorize), the input zero point,
the bias and the activation folded in, then a float32 requantization (multiply by
``s_x s_w / s_y``, round to nearest even, add the output zero point, clip, cast): the TE
computes of :mod:`pose_tuner.compile.int8.te`. Consecutive integer convs pass their
activations packed. ``conv2d_transpose`` (stride s) becomes s*s exact integer convs, one
per output phase, written interleaved in the packed layout
(:mod:`pose_tuner.compile.int8.deconv`). ``MatMul`` / ``Gemm`` with a constant weight
become a plain int32 dense (weight ``(O, K)``). Data movement between equal quantization
parameters (``dequantize -> reshape / transpose / concat / slice / max-pool -> quantize``,
ShuffleNet's channel shuffle) moves the 8-bit values directly. Depthwise convs (groups =
channels, 16 channels or more) run integer in the packed layout too, so they keep their
neighbours' activations packed, and so do additions of two packed activations (residual
connections; :mod:`pose_tuner.compile.int8.elementwise`). Other grouped convs, ``Clip``
between conv and ``QuantizeLinear`` (the ONNX frontend lowers it to opaque TIR; ONNX
Runtime's quantizer removes Relu / Clip there anyway) and everything else stay in float
(``dequantize -> float op -> quantize``), unchanged.

The patterns are read by :class:`pose_tuner.compile.int8.matching.QDQMatcher`;
:func:`integer_reductions` lists the integer reductions a rewritten module holds.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax import expr_functor

from pose_tuner.compile.int8.channels import ElementMap, follow, packed_gather
from pose_tuner.compile.int8.deconv import DeconvRewrites
from pose_tuner.compile.int8.elementwise import AddRewrites
from pose_tuner.compile.int8.matching import QDQMatcher, Unmatched, calls
from pose_tuner.compile.int8.te import (
    N_ELEMS, OC_BLOCK, pack_conv_weight, te_conv2d_nchwc_int8_requant, te_dense_int8_requant,
    te_depthwise_nchwc_int8_requant, te_max_pool_packed, te_pack, te_pad_packed, te_unpack,
)

#: ops that only move or select values: they commute with an equal-parameter (de)quantize
_MOVEMENT_OPS = ("relax.reshape", "relax.permute_dims", "relax.concat", "relax.strided_slice",
                 "relax.nn.max_pool2d", "relax.squeeze", "relax.expand_dims")


@expr_functor.mutator
class IntegerRewriter(QDQMatcher, DeconvRewrites, AddRewrites):
    """The Relax mutator of :func:`integer_rewrite`: rewrites at each ``quantize`` call,
    counting what it rewrote (``convs``, ``depthwise``, ``deconvs``, ``dense``, ``adds``,
    ``moves``)."""

    def __init__(self, mod):
        super().__init__(mod)
        self.convs = 0
        self.depthwise = 0
        self.deconvs = 0
        self.dense = 0
        self.adds = 0
        self.moves = 0
        self.fold_moves = True
        self.int_depthwise = True
        self.gathers = True
        # var bound to an unpack of ours -> (packed var, channels, block, shift)
        self.packed = {}
        # (NCHW var, block, shift) -> packed var; (packed var, pads, value) -> padded
        self.packs = {}
        self.pads = {}
        # var bound to 8-bit data movement -> its ElementMap (channels.py)
        self.maps = {}

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if not calls(call, "relax.quantize"):
            return call
        try:
            core = self.epilogue_core(call)
            if calls(core, "relax.nn.conv2d"):
                return self.rewrite_conv(call)
            if calls(core, "relax.nn.conv2d_transpose"):
                return self.rewrite_deconv(call)
            if calls(core, "relax.matmul"):
                return self.rewrite_dense(call)
        except Unmatched:
            pass
        try:
            return self.rewrite_add(call)
        except Unmatched:
            pass
        try:
            if self.fold_moves:
                return self.fold_movement(call)
        except Unmatched:
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
            raise Unmatched("not data movement")
        s_y, z_y = self.scalar(call.args[1]), self.scalar(call.args[2])
        out_dtype = str(call.attrs.out_dtype)

        def strip(arg):
            xq, s, z, _axis, _ = self.dequant_parts(arg)
            if (str(xq.ty.dtype) != out_dtype or np.float32(self.scalar(s)) != np.float32(s_y)
                    or self.scalar(z) != z_y):
                raise Unmatched("quantization parameters differ")
            return xq

        if inner.op.name == "relax.concat":
            tup = self.resolve(inner.args[0])
            if not isinstance(tup, relax.Tuple):
                raise Unmatched("concat of a tuple variable")
            args = [relax.Tuple([strip(f) for f in tup.fields]), *inner.args[1:]]
        else:
            args = [strip(inner.args[0]), *inner.args[1:]]
        self.moves += 1
        if inner.op.name == "relax.nn.max_pool2d":
            pooled = self.packed_max_pool(args[0], inner.attrs, out_dtype)
            if pooled is not None:
                return pooled
        moved_call = relax.Call(inner.op, args, inner.attrs)
        moved = self.builder_.emit(moved_call)
        operands = args[0].fields if inner.op.name == "relax.concat" else [args[0]]
        maps = [self._element_map(v) for v in operands]
        if all(m is not None for m in maps):
            found = follow(inner.op.name, maps, moved_call, moved.ty.shape)
            if found is not None:
                self.maps[moved] = found
        return moved

    def _element_map(self, v):
        """The :class:`ElementMap` of var ``v``: the map of the data movement it is bound
        to (through var-to-var bindings), else ``v`` as its own source; None when ``v``
        has no static shape."""
        mapped = self._mapped_var(v)
        if mapped is not None:
            return self.maps[mapped]
        shape = getattr(v.ty, "shape", None)
        if not isinstance(v, relax.Var) or shape is None or not all(
                isinstance(d, (int, tvm.tirx.IntImm)) for d in shape):
            return None
        return ElementMap.identity(v, shape)

    def _mapped_var(self, v):
        v = self._bound_var(v, self.maps)
        return v if v in self.maps else None

    def gathered(self, xq, c: int, shift: int):
        """The packed form of ``xq`` made from its sources' packed data in one
        :func:`packed_gather`, when ``xq`` is data movement of whole channels (a channel
        shuffle, a split of one, a concat); None otherwise."""
        mapped = self._mapped_var(xq) if self.gathers else None
        if mapped is None or c < OC_BLOCK:
            return None
        key = ("gather", mapped, shift)
        if key in self.packs:
            return self.packs[key]
        emap = self.maps[mapped]
        table = emap.channel_table()
        if table is None:
            return None
        bb = self.builder_
        srcs = []
        for var in emap.sources:
            root = self._root_var(var)
            packed = self.packed.get(root)
            if packed is not None and packed[2] == OC_BLOCK and packed[3] == shift:
                srcs.append(packed[0])
            else:
                srcs.append(self._pack(var, root, OC_BLOCK, shift))
        _, _, h, w = (int(d) for d in emap.ids.shape)
        gv = bb.add_func(packed_gather([int(s.ty.shape[1]) for s in srcs], table, h, w),
                         "channel_gather_int8")
        out_ty = relax.TensorType((1, -(-c // OC_BLOCK), h, w, OC_BLOCK), "uint8")
        self.packs[key] = bb.emit(relax.call_tir(gv, srcs, out_ty))
        return self.packs[key]

    def packed_max_pool(self, xq, attrs, out_dtype):
        """Max pooling of an integer layer's output where it is still packed (ShuffleNet's
        stem: conv, max-pool, then both branches' convs), so that it is neither unpacked
        nor packed again; None when ``xq`` has no packed form or the layout differs."""
        packed = self.packed.get(self._root_var(xq))
        if (packed is None or str(attrs.layout) != "NCHW"
                or str(attrs.out_layout or "NCHW") not in ("", "NCHW")):
            return None
        out_p, channels, _block, _shift = packed
        pooled = self.builder_.emit(self.builder_.call_te(
            te_max_pool_packed, out_p, [int(v) for v in attrs.pool_size],
            [int(v) for v in attrs.strides], [int(v) for v in attrs.dilation],
            [int(v) for v in attrs.padding], bool(attrs.ceil_mode),
            primfunc_name_hint="max_pool_int8"))
        return self.unpacked(pooled, channels, out_dtype)

    def rewrite_conv(self, call):
        core = self.epilogue_core(call)
        attrs = core.attrs
        if (str(attrs.data_layout) != "NCHW" or str(attrs.kernel_layout) != "OIHW"
                or str(attrs.out_layout or "NCHW") not in ("", "NCHW")):
            raise Unmatched("layout")
        if int(attrs.groups) != 1:
            return self.rewrite_depthwise(call, core)
        w, s_w = self.weight_parts(core.args[1], 0)
        xq, s_x, z_x, x_dtype = self.act_parts(core.args[0])
        o, c, _, _ = w.shape
        conv_out, bias, bounds, s_y, z_y, out_dtype = self.epilogue(call, o, 1)
        if not conv_out.same_as(core):
            raise Unmatched("epilogue mismatch")
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
            raise Unmatched("integer depthwise convs switched off")
        w, s_w = self.weight_parts(core.args[1], 0)
        xq, s_x, z_x, x_dtype = self.act_parts(core.args[0])
        o, per_group, kh, kw = w.shape
        c = int(xq.ty.shape[1])
        if per_group != 1 or int(attrs.groups) != c or o != c:
            raise Unmatched("grouped conv that is not depthwise")
        conv_out, bias, bounds, s_y, z_y, out_dtype = self.epilogue(call, o, 1)
        if not conv_out.same_as(core):
            raise Unmatched("epilogue mismatch")
        xp, ib, zx = self.packed_input(xq, c, x_dtype, z_x)
        if ib != OC_BLOCK:
            raise Unmatched("fewer channels than one block")
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
            padding=[int(v) for v in attrs.padding], pad_value=zx,
            primfunc_name_hint="depthwise_NCHWc_int8_requant",
        ))
        self.depthwise += 1
        return self.unpacked(out_p, o, out_dtype)

    def packed_input(self, xq, c, x_dtype, z_x):
        """(packed uint8 input, channel block, its zero point) for an 8-bit NCHW var;
        reuses the packed output of a previous integer layer."""
        shift = 128 if x_dtype == "int8" else 0  # int8 activations are packed +128
        root = self._root_var(xq)
        packed = self.packed.get(root)
        if packed is not None and packed[1] == c and packed[3] == shift:
            return packed[0], packed[2], z_x + shift
        gathered = self.gathered(xq, c, shift)
        if gathered is not None:
            return gathered, OC_BLOCK, z_x + shift
        ib = OC_BLOCK if c >= OC_BLOCK else N_ELEMS
        return self._pack(xq, root, ib, shift), ib, z_x + shift

    def _pack(self, xq, root, block: int, shift: int):
        """``xq`` (8-bit NCHW, ``root`` its :meth:`_root_var`) packed in blocks of
        ``block`` channels with ``shift`` added; emitted once per (root, block, shift)."""
        key = (root, block, shift)
        if key not in self.packs:
            self.packs[key] = self.builder_.emit(self.builder_.call_te(
                te_pack, xq, block, shift, primfunc_name_hint="pack_int8"))
        return self.packs[key]

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
        bias_p, mult_p, qlo, qhi = self.requant_arrays(w, q)
        return relax.const(bias_p), relax.const(mult_p), qlo, qhi

    def requant_arrays(self, w, q):
        """:meth:`block_requant`'s bias and multiplier as numpy arrays."""
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
        return bias_p.reshape(ob, OC_BLOCK), mult_p.reshape(ob, OC_BLOCK), qlo, qhi

    def unpacked(self, out_p, o, out_dtype):
        out_shift = 128 if out_dtype == "int8" else 0
        y = self.builder_.emit(self.builder_.call_te(
            te_unpack, out_p, o, out_shift, out_dtype, primfunc_name_hint="unpack_int8"))
        self.packed[y] = (out_p, o, OC_BLOCK, out_shift)
        return y

    def _root_var(self, v):
        return self._bound_var(v, self.packed)

    def _bound_var(self, v, table):
        """The first var of ``table`` on ``v``'s chain of var-to-var bindings, else the
        chain's last var."""
        while isinstance(v, relax.Var) and v not in table:
            val = self.lookup_binding(v)
            if not isinstance(val, relax.Var):
                break
            v = val
        return v

    def rewrite_dense(self, call):
        bb = self.builder_
        core = self.epilogue_core(call)
        a, b = core.args
        xq, s_x, z_x, x_dtype = self.act_parts(a)
        if len(xq.ty.shape) != 2:
            raise Unmatched("dense input not 2-D")
        bexpr = self.resolve(b)
        if calls(bexpr, "relax.permute_dims"):  # Gemm transB: w is (O, K) already
            w, s_w = self.weight_parts(bexpr.args[0], 0)
        else:  # MatMul: (K, O)
            w, s_w = self.weight_parts(b, 1)
            w = np.ascontiguousarray(w.T)
        o = w.shape[0]
        dense_out, bias, bounds, s_y, z_y, out_dtype = self.epilogue(call, o, -1)
        if not dense_out.same_as(core):
            raise Unmatched("epilogue mismatch")
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


def integer_rewrite(mod, stats: dict | None = None, movement: bool = True,
                    depthwise: bool = True, gathers: bool = True):
    """Rewrite the QDQ float patterns of ``mod`` into integer compute (see module doc).

    Call on the module :func:`pose_tuner.compile.frontend.import_onnx` returns, before
    :func:`pose_tuner.compile.pipeline.prepare`. What does not match stays float. With
    ``stats`` (a dict), the numbers of rewritten layers are added to it as ``"conv2d"``,
    ``"depthwise"``, ``"conv2d_transpose"``, ``"dense"``, ``"add"`` (residual additions
    of packed activations) and ``"movement"`` (data movement kept in 8 bits).
    ``movement=False`` leaves data movement in float, as before 0.2.0, and
    ``depthwise=False`` the depthwise convs (for comparisons). ``gathers=False`` moves
    whole-channel rearrangements in NCHW, unpacked and packed again around them (as before
    0.4.0): for targets whose compile backend has no ``host_kernels`` (GPUs), where the
    packed gathers cannot run.
    """
    mutator = IntegerRewriter(mod)
    mutator.fold_moves = movement
    mutator.int_depthwise = depthwise
    mutator.gathers = gathers
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
        stats["add"] = stats.get("add", 0) + mutator.adds
        stats["movement"] = stats.get("movement", 0) + mutator.moves
    return out


def integer_reductions(mod) -> list[tuple[str, str]]:
    """(PrimFunc, block) of every reduction that accumulates 8-bit inputs into int32.

    Looks at the top-level blocks of each PrimFunc of ``mod`` (as :func:`integer_rewrite`
    leaves them, before scheduling): a block with a reduction axis that writes int32 and
    reads an int8/uint8 buffer. Empty for a module whose convs are all float.
    """
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
