"""Channel rearrangements of 8-bit activations, done on the packed layout in one kernel.

ShuffleNet's units concatenate two branches, shuffle the channels (reshape, transpose,
reshape) and split them again; at 8 bits (:meth:`IntegerRewriter.fold_movement`) each of
these still unpacks the integer convs' packed outputs, moves bytes in NCHW, and packs them
again for the next conv: a quarter of the int8 default model's time on x86. Here the data
movement is followed symbolically instead:

- :class:`ElementMap` says, for every element of a movement op's result, which element of
  which source tensor it is. It is built by running the op itself (numpy's reshape,
  transpose, concatenate, slicing) on the element numbers of its operands, so every op of
  :data:`MAP_OPS` and every composition of them is followed exactly, whatever the model.
- :meth:`ElementMap.channel_table` reads from a map of a ``[1, C, H, W]`` result whether
  it only rearranges whole channels (output channel ``j`` is channel ``c`` of source ``s``
  at every pixel), and if so, that table.
- :func:`packed_gather` makes the TIR function that builds the packed ``[1, C/16, H, W,
  16]`` result straight from the sources' packed data: per pixel and channel block one
  vector shuffle of the source blocks it needs (an interleave of two blocks for a
  channel shuffle). Sources are never unpacked, and the intermediate tensors vanish.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the Relax ops an :class:`ElementMap` follows
MAP_OPS = ("relax.reshape", "relax.permute_dims", "relax.concat", "relax.strided_slice",
           "relax.squeeze", "relax.expand_dims")


@dataclass(frozen=True, eq=False)
class ElementMap:
    """Where each element of a tensor comes from.

    ``sources`` are the tensors (Relax vars) it was moved from, with their shapes;
    ``ids`` has the tensor's shape and holds, per element, ``offset(s) + i``: ``i`` the
    flat (row-major) index in source ``s``, ``offset(s)`` the sum of the sizes of the
    sources before it.
    """

    sources: tuple
    shapes: tuple
    ids: np.ndarray

    @staticmethod
    def identity(var, shape) -> ElementMap:
        shape = tuple(int(v) for v in shape)
        return ElementMap((var,), (shape,), np.arange(int(np.prod(shape))).reshape(shape))

    def offsets(self) -> np.ndarray:
        sizes = [int(np.prod(s)) for s in self.shapes]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def channel_table(self) -> list[tuple[int, int]] | None:
        """``(source, channel)`` per channel of a ``[1, C, H, W]`` tensor whose channels
        are whole channels of ``[1, Cs, H, W]`` sources of the same H and W; else None."""
        if self.ids.ndim != 4 or self.ids.shape[0] != 1:
            return None
        _, c, h, w = self.ids.shape
        if any(len(s) != 4 or s[0] != 1 or tuple(s[2:]) != (h, w) for s in self.shapes):
            return None
        offsets = self.offsets()
        flat = self.ids.reshape(c, h * w)
        src = np.searchsorted(offsets, flat[:, 0], side="right") - 1
        start = flat[:, 0] - offsets[src]
        if np.any(start % (h * w)) or np.any(flat != flat[:, :1] + np.arange(h * w)):
            return None  # some channel is not one source channel's pixels, in order
        return [(int(s), int(i) // (h * w)) for s, i in zip(src, start)]


def _merge(maps: list[ElementMap]) -> tuple[tuple, tuple, list[np.ndarray]]:
    """The sources of all ``maps`` (each once) and each map's ids renumbered over them."""
    sources, shapes = [], []
    for m in maps:
        for var, shape in zip(m.sources, m.shapes):
            if not any(var.same_as(v) for v in sources):
                sources.append(var)
                shapes.append(shape)
    merged = ElementMap(tuple(sources), tuple(shapes), np.zeros(0, np.int64))
    new_offsets = merged.offsets()
    out = []
    for m in maps:
        old = m.offsets()
        src = np.searchsorted(old, m.ids, side="right") - 1
        moved = np.array([next(i for i, v in enumerate(sources) if v.same_as(var))
                          for var in m.sources], np.int64)
        out.append(m.ids - old[src] + new_offsets[moved[src]])
    return tuple(sources), tuple(shapes), out


def _ints(values) -> list[int]:
    return [int(v.value) if hasattr(v, "value") else int(v) for v in values]


def follow(op_name: str, operands: list[ElementMap], call, out_shape) -> ElementMap | None:
    """The map of ``call`` (a Relax call of ``op_name`` in :data:`MAP_OPS`) whose tensor
    operands have the maps ``operands``; None for an op it does not follow, or where the
    result's shape is not ``out_shape`` (the call's own shape: a check on the numpy
    semantics)."""
    if op_name not in MAP_OPS:
        return None
    sources, shapes, ids = _merge(operands)
    x = ids[0]
    attrs = call.attrs
    if op_name == "relax.concat":
        y = np.concatenate(ids, axis=int(attrs.axis))
    elif op_name == "relax.reshape":
        y = x.reshape(tuple(int(v) for v in out_shape))
    elif op_name == "relax.permute_dims":
        y = np.transpose(x, None if attrs.axes is None else _ints(attrs.axes))
    elif op_name == "relax.squeeze":
        y = np.squeeze(x, None if attrs.axis is None else tuple(_ints(attrs.axis)))
    elif op_name == "relax.expand_dims":
        y = np.expand_dims(x, tuple(_ints(attrs.axis)))
    else:  # strided_slice: (x, axes, begin, end, strides)
        axes, begin, end = (_ints(a) for a in call.args[1:4])
        strides = _ints(call.args[4]) if len(call.args) > 4 else [1] * len(axes)
        index = [slice(None)] * x.ndim
        for a, b, e, s in zip(axes, begin, end, strides):
            index[a] = slice(b, e, s)
        y = x[tuple(index)]
    if tuple(y.shape) != tuple(int(v) for v in out_shape):
        return None
    return ElementMap(sources, shapes, np.ascontiguousarray(y))


def packed_gather(src_blocks: list[int], table: list[tuple[int, int]], h: int, w: int,
                  block: int = 16):
    """TIR function ``(src_0, ..., src_k, out)``: ``out[0, j // block, y, x, j % block] =
    src_s[0, c // block, y, x, c % block]`` for ``(s, c) = table[j]``, 0 in the padding
    channels; ``src_i`` is ``[1, src_blocks[i], h, w, block]`` uint8.

    Parallel over rows; per pixel and output block one shuffle of the source blocks that
    block reads (a plain copy where it is one whole block). Marked scheduled: tuning
    leaves it alone.
    """
    import tvm
    from tvm import tirx
    from tvm.script.ir_builder import IRBuilder
    from tvm.script.ir_builder import tirx as T

    out_blocks = -(-len(table) // block)
    plan = []  # per output block: (source blocks read, None for zeros; lane indices)
    for o in range(out_blocks):
        reads, lanes = [], []
        for j in range(o * block, (o + 1) * block):
            key = None if j >= len(table) else (table[j][0], table[j][1] // block)
            if key not in reads:
                reads.append(key)
            lanes.append(reads.index(key) * block + (0 if key is None else table[j][1] % block))
        plan.append((reads, lanes))
    with IRBuilder() as ib:
        with T.prim_func():
            T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True, "op_pattern": 8})
            srcs = [T.arg(f"src{i}", T.Buffer((1, cb, h, w, block), "uint8"))
                    for i, cb in enumerate(src_blocks)]
            out = T.arg("out", T.Buffer((1, out_blocks, h, w, block), "uint8"))
            vec = tirx.Ramp(0, 1, block)
            with T.sblock("root"), T.sblock("channel_gather"), T.parallel(0, h) as y, \
                    T.serial(0, w) as x:
                for o, (reads, lanes) in enumerate(plan):
                    loads = [tirx.Broadcast(tirx.const(0, "uint8"), block) if key is None
                             else tirx.BufferLoad(srcs[key[0]], [0, key[1], y, x, vec])
                             for key in reads]
                    if len(loads) == 1 and lanes == list(range(block)):
                        value = loads[0]
                    else:
                        value = tirx.Shuffle(loads, [tirx.const(i, "int32") for i in lanes])
                    T.buffer_store(out, value, [0, o, y, x, vec])
    func = ib.get()
    assert isinstance(func, tvm.tirx.PrimFunc)
    return func
