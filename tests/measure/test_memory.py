"""Peak memory of running an artifact, measured in a fresh process (measure/memory.py)."""

import numpy as np
import pytest


def _conv_onnx(path, channels: int) -> str:
    """One 3x3 convolution with ``channels`` x ``channels`` float weights on a 64x64 input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.linspace(-1, 1, channels * channels * 9, dtype="float32").reshape(
        channels, channels, 3, 3)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 64, 64])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return str(path)


def test_onnx_runtime_peak_memory_grows_with_the_weights(tmp_path):
    from pose_tuner.measure.memory import peak_memory_mb

    small = peak_memory_mb("onnxruntime", _conv_onnx(tmp_path / "s.onnx", 16), (1, 16, 64, 64))
    big = peak_memory_mb("onnxruntime", _conv_onnx(tmp_path / "b.onnx", 512), (1, 512, 64, 64))
    assert small is not None and big is not None and 0 < small < big
    weights_mb = 512 * 512 * 9 * 4 / 1e6  # 9.4 MB of weights, plus 8 MB of activations
    assert big - small > weights_mb


def test_tvm_artifact_peak_memory(tiny_onnx, tmp_path):
    import tvm

    from pose_tuner.compile.frontend import import_onnx
    from pose_tuner.compile.pipeline import compile_module, prepare
    from pose_tuner.measure.memory import peak_memory_mb

    target = tvm.target.Target({"kind": "llvm"})
    path = str(tmp_path / "m.so")
    compile_module(prepare(import_onnx(tiny_onnx), target), target).export_library(path)
    mb = peak_memory_mb("tvm", path, (1, 3, 32, 32))
    assert mb is not None and 0 < mb < 200


def test_a_broken_artifact_gives_no_figure(tmp_path, capsys):
    from pose_tuner.measure.memory import peak_memory_mb

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert peak_memory_mb("onnxruntime", str(bad), (1, 3, 8, 8)) is None
    assert "not measured" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no memory probe"):
        from pose_tuner.measure.memory import measure_here

        measure_here("tensorrt", str(bad), (1,))


def test_openvino_is_loaded_with_the_sessions_config(tmp_path, capsys):
    """The probe compiles with the options the timed session used (a precision hint the
    CPU lacks would fail there too): a real option gives a figure, a wrong one none."""
    pytest.importorskip("openvino")
    from pose_tuner.measure.memory import peak_memory_mb

    path = _conv_onnx(tmp_path / "c.onnx", 64)
    mb = peak_memory_mb("openvino", path, (1, 64, 64, 64),
                        config={"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    assert mb is not None and mb > 0
    assert peak_memory_mb("openvino", path, (1, 64, 64, 64),
                          config={"INFERENCE_PRECISION_HINT": "no-such-type"}) is None
    assert "not measured" in capsys.readouterr().err
