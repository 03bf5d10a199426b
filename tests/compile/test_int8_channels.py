"""Channel rearrangements on the packed int8 layout (pose_tuner/compile/int8/channels.py):
element maps followed through Relax's own movement ops, the channel tables read from them,
and the packed gather kernel, each against TVM running the original ops."""

import numpy as np
import pytest

pytest.importorskip("tvm")


def _pack(x: np.ndarray, block: int = 16) -> np.ndarray:
    """NCHW -> [N, C/block, H, W, block], channels padded with zeros."""
    n, c, h, w = x.shape
    cb = -(-c // block)
    padded = np.zeros((n, cb * block, h, w), x.dtype)
    padded[:, :c] = x
    return np.ascontiguousarray(padded.reshape(n, cb, block, h, w).transpose(0, 1, 3, 4, 2))


def _movement(sources, steps):
    """A Relax function of ``sources`` (name -> shape) applying ``steps`` (each a function
    of the previous var and the source vars, giving a Relax call), and the ElementMap of
    its result, followed step by step as the int8 rewrite does."""
    from tvm import relax

    from pose_tuner.compile.int8.channels import ElementMap, follow

    bb = relax.BlockBuilder()
    params = [relax.Var(n, relax.TensorType(s, "uint8")) for n, s in sources.items()]
    maps = {p: ElementMap.identity(p, p.ty.shape) for p in params}
    emap = None
    with bb.function("main", params):
        with bb.dataflow():
            cur = params[0]
            for step in steps:
                call = step(cur, params)
                operands = list(call.args[0].fields) if call.op.name == "relax.concat" \
                    else [call.args[0]]
                var = bb.emit(call)
                emap = follow(call.op.name, [maps[o] for o in operands], call, var.ty.shape)
                maps[var] = emap
                cur = var
            out = bb.emit_output(cur)
        bb.emit_func_output(out)
    return bb.get(), emap


def _run(mod, arrays):
    import tvm
    from tvm import relax

    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm", "num-cores": 1}))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(a) for a in arrays]).numpy()


def _gather(emap, arrays):
    """The packed result of ``packed_gather`` over the packed sources, unpacked to NCHW."""
    import tvm

    from pose_tuner.compile.int8.channels import packed_gather

    table = emap.channel_table()
    assert table is not None
    _, c, h, w = emap.ids.shape
    packed = [_pack(a) for a in arrays]
    func = packed_gather([p.shape[1] for p in packed], table, h, w)
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target=tvm.target.Target({"kind": "llvm", "num-cores": 1}))
    out = tvm.runtime.tensor(np.full((1, -(-c // 16), h, w, 16), 7, np.uint8))
    lib["main"](*[tvm.runtime.tensor(p) for p in packed], out)
    got = out.numpy()
    # padding channels are zero
    assert not got.transpose(0, 1, 4, 2, 3).reshape(1, -1, h, w)[:, c:].any()
    return got.transpose(0, 1, 4, 2, 3).reshape(1, -1, h, w)[:, :c]


def _shuffle_steps(c_half, h, w, groups=2):
    from tvm import relax

    c = 2 * c_half
    return [
        lambda x, p: relax.op.concat([p[0], p[1]], axis=1),
        lambda x, p: relax.op.reshape(x, (1, groups, c // groups, h, w)),
        lambda x, p: relax.op.permute_dims(x, [0, 2, 1, 3, 4]),
        lambda x, p: relax.op.reshape(x, (1, c, h, w)),
    ]


@pytest.mark.parametrize("half", ["first", "second", "all"])
def test_shufflenet_channel_shuffle_and_split_match_tvm(half):
    """ShuffleNet's concat + channel shuffle + split, 40 + 40 channels (not a multiple of
    16: blocks straddle the sources and the halves), on distinct values per element."""
    from tvm import relax

    h, w = 5, 3
    steps = _shuffle_steps(40, h, w)
    if half != "all":
        begin = 0 if half == "first" else 40
        steps.append(lambda x, p: relax.op.strided_slice(
            x, axes=[1], begin=[begin], end=[begin + 40]))
    mod, emap = _movement({"a": (1, 40, h, w), "b": (1, 40, h, w)}, steps)
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (1, 40, h, w), dtype=np.uint8) for _ in range(2)]
    expected = _run(mod, arrays)
    assert np.unique(expected).size > 100
    np.testing.assert_array_equal(_gather(emap, arrays), expected)


def test_three_way_concat_slices_and_squeezes_match_tvm():
    """Sources of different channel counts, a strided channel slice, a 5-D detour through
    expand_dims / squeeze and a reversed channel order."""
    from tvm import relax

    h, w = 4, 6
    steps = [
        lambda x, p: relax.op.concat([p[0], p[1], p[2]], axis=1),
        lambda x, p: relax.op.expand_dims(x, axis=[2]),
        lambda x, p: relax.op.strided_slice(x, axes=[1], begin=[3], end=[60], strides=[2]),
        lambda x, p: relax.op.squeeze(x, axis=[2]),
        lambda x, p: relax.op.strided_slice(x, axes=[1], begin=[27], end=[-100], strides=[-1]),
    ]
    shapes = {"a": (1, 8, h, w), "b": (1, 33, h, w), "c": (1, 20, h, w)}
    mod, emap = _movement(shapes, steps)
    assert len(emap.sources) == 3
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, s, dtype=np.uint8) for s in shapes.values()]
    expected = _run(mod, arrays)
    assert expected.shape[1] == 28
    np.testing.assert_array_equal(_gather(emap, arrays), expected)


def test_moves_that_mix_pixels_have_no_channel_table():
    """A spatial transpose, a spatial slice, or a reshape that moves pixels between
    channels is followed, but is not a rearrangement of whole channels."""
    from tvm import relax

    h, w = 4, 4
    cases = [
        [lambda x, p: relax.op.permute_dims(x, [0, 1, 3, 2])],
        [lambda x, p: relax.op.strided_slice(x, axes=[2], begin=[1], end=[3]),
         lambda x, p: relax.op.concat([x, x], axis=2)],
        [lambda x, p: relax.op.reshape(x, (1, 2, 16, 8)),
         lambda x, p: relax.op.permute_dims(x, [0, 1, 3, 2]),
         lambda x, p: relax.op.reshape(x, (1, 16, 4, 4))],
    ]
    for steps in cases:
        _, emap = _movement({"a": (1, 16, h, w)}, steps)
        assert emap is not None and emap.channel_table() is None
    # ... while a reshape round trip through [1, 16, 16] is the identity
    _, emap = _movement({"a": (1, 16, h, w)}, [
        lambda x, p: relax.op.reshape(x, (1, 16, 16)),
        lambda x, p: relax.op.reshape(x, (1, 16, 4, 4))])
    assert emap.channel_table() == [(0, c) for c in range(16)]


def test_the_gather_kernel_is_vectorised_and_left_alone_by_tuning():
    """One shuffle of 16-byte vectors per output block and pixel, parallel over rows, and
    marked scheduled (tuning skips it) and opaque (fusion leaves it alone)."""
    import tvm

    from pose_tuner.compile.int8.channels import packed_gather

    table = [(j % 2, j // 2) for j in range(32)]  # interleave two 16-channel sources
    func = packed_gather([1, 1], table, 3, 2)
    assert func.attrs["tirx.is_scheduled"] and int(func.attrs["op_pattern"]) == 8
    text = func.script()
    assert "T.parallel(3)" in text and text.count("T.Shuffle(") == 2
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target=tvm.target.Target({"kind": "llvm", "num-cores": 1}))
    ll = lib.mod.inspect_source("ll")
    assert "shufflevector <16 x i8>" in ll


def test_tuning_skips_the_gather_tasks():
    """MetaSchedule extracts a task for every kernel; the gathers come scheduled, so the
    tuner leaves them out (TVM's own analyses do not read their vector shuffles)."""
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    from pose_tuner.compile import pipeline
    from pose_tuner.compile.int8.channels import packed_gather
    from pose_tuner.compile.tuning import _scheduled

    bb = relax.BlockBuilder()
    a = relax.Var("a", relax.TensorType((1, 1, 4, 4, 16), "uint8"))
    b = relax.Var("b", relax.TensorType((1, 1, 4, 4, 16), "uint8"))
    with bb.function("main", [a, b]):
        with bb.dataflow():
            gv = bb.add_func(packed_gather([1, 1], [(j % 2, j // 2) for j in range(32)], 4, 4),
                             "channel_gather_int8")
            g = bb.emit(relax.call_tir(gv, [a, b], relax.TensorType((1, 2, 4, 4, 16), "uint8")))
            out = bb.emit_output(bb.emit(relax.op.add(g, g)))
        bb.emit_func_output(out)
    target = tvm.target.Target({"kind": "llvm", "num-cores": 1})
    mod = pipeline.prepare(bb.get(), target)
    tasks = ms.relax_integration.extract_tasks(mod, target)
    flags = sorted((t.task_name, _scheduled(t)) for t in tasks)
    assert [f for _, f in flags] == [False, True], flags
    assert "gather" in next(name for name, f in flags if f)
