"""ONNX hygiene: every corpus model cleans into one interface, equal to the original;
legacy BatchNorm, head selection and bad models."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from pose_tuner.measure.inputs import structured_input
from pose_tuner.accuracy.decode import SimCCDecoder, get_decoder
from pose_tuner.models.hashing import file_hash
from pose_tuner.models.source import ModelError, prepare_model
from pose_tuner.models.onnx_clean import MIN_OPSET, CleanupError, clean_onnx


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


@pytest.mark.parametrize("name", ["opset8-bn", "opset11", "opset13", "opset17", "nhwc",
                                  "simcc", "dynbatch", "preproc", "multiout"])
def test_corpus_model_cleans_to_one_interface(corpus, tmp_path, name):
    entry = corpus[name]
    msgs = []
    res = clean_onnx(entry.path, str(tmp_path / "c.onnx"), msgs.append)
    assert msgs == [res.summary()]
    assert res.original_hash == file_hash(entry.path) != res.cleaned_hash
    assert res.cleaned_hash == file_hash(res.path)
    cleaned = onnx.load(res.path)
    ops = {n.op_type for n in cleaned.graph.node}
    assert res.opset_after >= MIN_OPSET and "BatchNormalization" not in ops
    (inp,), (out,) = cleaned.graph.input, cleaned.graph.output
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 3, 64, 32]
    # the cleaned model equals the original, fed as the original wants
    x = structured_input((1, 3, 64, 32), seed=5)
    orig_x = x.transpose(0, 2, 3, 1) if name == "nhwc" else x
    ref = _run(entry.path, orig_x)
    got = _run(res.path, x)
    assert len(got) == 1
    want = np.concatenate(ref, axis=2) if name == "simcc" else ref[0]
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-4 * np.ptp(want))
    dec = get_decoder([got[0].shape], (64, 32))
    assert isinstance(dec, SimCCDecoder) == (name == "simcc")
    if name == "opset8-bn":
        assert any("spatial" in s for s in res.steps) and any("opset 8" in s for s in res.steps)
    if name == "multiout":
        assert res.original_outputs == ("heatmaps",)
    if name == "simcc":
        assert res.original_outputs == ("simcc_x", "simcc_y")
        x_vec, y_vec = dec.split(got[0])
        np.testing.assert_array_equal(x_vec, ref[0])
        np.testing.assert_array_equal(y_vec, ref[1])


def _bn_model(path, stats_shape, spatial, c=4, h=6, w=5):
    """conv -> BatchNormalization(spatial) with statistics of ``stats_shape`` at opset 8."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.5, (c, 3, 3, 3)).astype(np.float32), "w")]
    for name, lo, hi in (("g", 0.5, 2), ("b", -1, 1), ("m", -1, 1), ("v", 0.5, 2)):
        inits.append(numpy_helper.from_array(
            rng.uniform(lo, hi, stats_shape).astype(np.float32), name))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"],
                              spatial=spatial, epsilon=1e-5)]
    graph = helper.make_graph(nodes, "bn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, h, w])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)])
    model.ir_version = 4
    onnx.save(model, str(path))
    return path


def test_per_activation_batchnorm_is_lowered_to_mul_add(tmp_path):
    src = _bn_model(tmp_path / "pa.onnx", (4, 6, 5), spatial=0)
    res = clean_onnx(str(src), str(tmp_path / "c.onnx"), output="y")
    assert any("per-activation" in s for s in res.steps)
    x = structured_input((1, 3, 6, 5), seed=1)
    np.testing.assert_allclose(_run(res.path, x)[0], _run(src, x)[0], rtol=1e-5, atol=1e-5)


def test_per_channel_spatial_zero_is_dropped(tmp_path):
    src = _bn_model(tmp_path / "pc.onnx", (4,), spatial=0)
    # onnx's own converter refuses it: the reason the attribute is handled first
    with pytest.raises(Exception, match="spatial"):
        onnx.version_converter.convert_version(onnx.load(str(src)), 13)
    res = clean_onnx(str(src), str(tmp_path / "c.onnx"), output="y")
    assert any("'spatial' dropped" in s for s in res.steps)


def _two_heads(path):
    """A model with two outputs that both decode as 17-keypoint heatmaps."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(0, 1, (17, 3, 4, 4))
                                .astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], strides=[4, 4]),
             helper.make_node("Relu", ["a"], ["b"])]
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    graph = helper.make_graph(nodes, "two", [vi("x", [1, 3, 32, 16])],
                              [vi("a", [1, 17, 8, 4]), vi("b", [1, 17, 8, 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def test_several_heads_need_output_and_output_picks(tmp_path):
    src = _two_heads(tmp_path / "two.onnx")
    with pytest.raises(CleanupError, match="several outputs could be the pose head.*--output"):
        clean_onnx(src, str(tmp_path / "c.onnx"))
    res = clean_onnx(src, str(tmp_path / "c.onnx"), output="b")
    assert res.original_outputs == ("b",) and any("outputs a dropped" in s for s in res.steps)
    assert (_run(res.path, structured_input((1, 3, 32, 16)))[0] >= 0).all()  # the Relu one
    with pytest.raises(CleanupError, match="no output 'nope'.*outputs: a \\[1, 17, 8, 4\\]"):
        clean_onnx(src, str(tmp_path / "c.onnx"), output="nope")


def test_a_cleanup_that_changes_outputs_is_refused(corpus, tmp_path, monkeypatch):
    import onnxslim

    real = onnxslim.slim

    def broken(model, *a, **k):  # a faulty optimizer: scales one weight
        out = real(model, *a, **k)
        t = out.graph.initializer[0]
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 1.5, t.name))
        return out

    monkeypatch.setattr(onnxslim, "slim", broken)
    with pytest.raises(CleanupError, match="clean-up changed the outputs"):
        clean_onnx(corpus["opset17"].path, str(tmp_path / "c.onnx"))
    assert not (tmp_path / "c.onnx").exists()


def test_prepare_model_reuses_the_cleaned_copy_and_says_what_is_wrong(corpus, tmp_path):
    first = prepare_model(corpus["opset8-bn"].path, None, str(tmp_path))
    again = prepare_model(corpus["opset8-bn"].path, None, str(tmp_path))
    assert first == again and first.model_hash == file_hash(corpus["opset8-bn"].path)
    assert first.onnx_path.endswith(".clean.onnx") and "opset 8 -> 13" in first.cleanup
    with pytest.raises(ModelError, match="several outputs could be"):
        prepare_model(_two_heads(tmp_path / "two.onnx"), None, str(tmp_path))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        prepare_model(str(bad), None, str(tmp_path))
