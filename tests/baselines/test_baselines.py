import numpy as np
import pytest

from pose_tuner.hardware import get_target
from pose_tuner.baselines import BASELINES, BaselineUnavailable, get_baseline
from pose_tuner.measure.check import compare, compare_approx
from pose_tuner.measure.inputs import structured_input
from pose_tuner.measure.reference import ORTSession
from pose_tuner.measure.runner import Timing


def calib(n=8):
    return np.concatenate([structured_input((1, 3, 32, 32), seed=100 + i) for i in range(n)])


@pytest.mark.parametrize("name", ["onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32",
                                  "openvino-int8", "openvino-bf16"])
def test_cpu_baselines_run_and_agree_with_the_reference(name, tiny_onnx, tmp_path):
    bl = get_baseline(name)
    try:
        bl.check_available(get_target("x86"))
    except BaselineUnavailable as exc:
        pytest.skip(str(exc))
    sess = bl.prepare(tiny_onnx, str(tmp_path / name), calib(), threads=2)
    x = structured_input((1, 3, 32, 32), seed=1)
    ref = ORTSession(tiny_onnx).run(x)
    out = sess.run(x)
    if bl.numerics == "exact":
        assert compare(out, ref).rel_err < 1e-3
    else:
        res = compare_approx(out, ref)
        assert res.rel_err > 0  # really reduced precision, not the fp32 model again
    assert sess.size_bytes > 0
    stats = sess.latency(x, Timing(budget_s=0.1, min_repeat=3))
    assert stats.runs >= 3 and stats.median_ms > 0


def test_int8_models_are_really_quantized(tiny_onnx, tmp_path):
    import onnx

    sess = get_baseline("onnxruntime-int8").prepare(tiny_onnx, str(tmp_path), calib(), 2)
    ops = {n.op_type for n in onnx.load(sess.artifact_path).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def _saturating_conv(path):
    """One 1x1 conv whose u8 x s8 pair sums overflow int16 with 8-bit weights: 32 input
    channels of positive weights near their channel's maximum, inputs near their range's top."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).uniform(0.8, 1.0, (8, 32, 1, 1)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "sat", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, 32, 8, 8])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, 8, 8, 8])], [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_onnx_runtime_int8_computes_its_own_model_exactly_with_the_targets_weight_bits(tmp_path):
    """ONNX Runtime's U8S8 kernels use vpmaddubsw on CPUs without VNNI, whose int16 pair
    sums saturate with 8-bit weights (2 x 255 x 127 > 32767): the host's target asks for
    7 bits there, and the baseline then computes exactly the model it quantized (its exact
    form, :func:`exact_reference`, widens to int16 and never saturates)."""
    import onnx
    from onnx import numpy_helper

    from pose_tuner.compile.int8.quantize import exact_reference

    target = get_target("x86")
    bl = get_baseline("onnxruntime-int8")
    try:
        bl.check_available(target)
    except BaselineUnavailable as exc:
        pytest.skip(str(exc))
    model = _saturating_conv(str(tmp_path / "sat.onnx"))
    rng = np.random.default_rng(1)
    x_cal = rng.uniform(0.8, 1.0, (8, 32, 8, 8)).astype(np.float32)
    sess = bl.prepare(model, str(tmp_path / "ort"), x_cal, threads=1,
                      int8_weight_bits=target.int8_weight_bits)
    weights = [numpy_helper.to_array(t) for t in onnx.load(sess.artifact_path).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert weights and max(int(np.abs(w).max()) for w in weights) == (
        64 if target.int8_weight_bits == 7 else 127)
    x = rng.uniform(0.8, 1.0, (1, 32, 8, 8)).astype(np.float32)
    exact = ORTSession(exact_reference(sess.artifact_path)).run(x)
    assert compare(sess.run(x), exact).rel_err < 1e-6


def test_unusable_baselines_say_why():
    with pytest.raises(BaselineUnavailable, match="not a baseline of target x86.*: cuda"):
        get_baseline("tensorrt-fp16").check_available(get_target("x86"))
    with pytest.raises(BaselineUnavailable, match="not a baseline of target rasp4b.*x86-vnni"):
        get_baseline("openvino-fp32").check_available(get_target("rasp4b"))
    with pytest.raises(BaselineUnavailable, match="no Raspberry Pi is attached"):
        get_baseline("onnxruntime-fp32").check_available(get_target("rasp4b", tracker=None))
    from pose_tuner.hardware.cuda import cuda_driver_present

    if not cuda_driver_present():
        with pytest.raises(BaselineUnavailable, match="GPU"):
            get_baseline("tensorrt-int8").check_available(get_target("cuda"))


def test_every_target_baseline_is_registered():
    from pose_tuner.hardware import list_targets

    for t in list_targets():
        for name in t.baselines:
            assert name in BASELINES


@pytest.mark.parametrize("name", ["onnxruntime-fp32", "onnxruntime-int8"])
def test_onnx_runtime_runs_on_the_device_through_the_device_server(name, local_devices,
                                                                  tiny_onnx, tmp_path):
    from pose_tuner.measure.rpc import RPCSpec

    bl = get_baseline(name)
    target = get_target("rasp4b", tracker=local_devices, rpc_key="helper")
    bl.check_available(target)
    rpc = RPCSpec.parse(local_devices, "helper")
    sess = bl.prepare(tiny_onnx, str(tmp_path / name), calib(), threads=2, rpc=rpc)
    assert sess.device_info["onnxruntime"] and sess.device_info["helper"] >= 1
    x = structured_input((1, 3, 32, 32), seed=1)
    # the device runs the same file as this host's ONNX Runtime would, input for input
    local = get_baseline(name).prepare(tiny_onnx, str(tmp_path / "local"), calib(), threads=2)
    for seed in (1, 2):
        xs = structured_input((1, 3, 32, 32), seed=seed)
        np.testing.assert_allclose(sess.run(xs), local.run(xs), rtol=1e-5, atol=1e-5)
    assert not np.allclose(sess.run(x), sess.run(structured_input((1, 3, 32, 32), seed=2)))
    np.testing.assert_allclose(sess.accuracy_run(x), sess.run(x), rtol=1e-5, atol=1e-5)
    stats = sess.latency(x, Timing(budget_s=0.2, min_repeat=4, max_repeat=6))
    assert 4 <= stats.runs <= 6 and 0 < stats.min_ms <= stats.median_ms
    assert sess.size_bytes == __import__("os").path.getsize(sess.artifact_path)


def test_a_device_with_tvms_plain_server_skips_onnx_runtime_with_the_fix(local_devices):
    target = get_target("rasp4b", tracker=local_devices, rpc_key="plain")
    with pytest.raises(BaselineUnavailable, match="plain RPC server.*server-script"):
        get_baseline("onnxruntime-fp32").check_available(target)


VNNI_HOST = ("cascadelake", frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512dq",
                                       "avx512vl", "avx512_vnni", "avx512_bf16"}))


def test_a_target_narrower_than_the_cpu_skips_what_cannot_be_held_to_its_isa(monkeypatch):
    from pose_tuner.hardware import cpu_isa

    monkeypatch.setattr(cpu_isa, "_detected", lambda: VNNI_HOST)
    monkeypatch.setenv(cpu_isa.HOST_ISA_ENV, "avx2")
    target = get_target("x86")
    assert target.name == "x86-avx2"
    for name in ("onnxruntime-fp32", "onnxruntime-int8"):
        with pytest.raises(BaselineUnavailable, match="no switch to hold them to avx2"):
            get_baseline(name).check_available(target)
    with pytest.raises(BaselineUnavailable, match="x86-avx2's CPUs .avx2. have no native bf16"):
        get_baseline("openvino-bf16").check_available(target)
    with pytest.raises(BaselineUnavailable, match="no switch"):
        get_baseline("onnxruntime-fp32").prepare("m.onnx", "w", None, 2, isa_cap="avx2")


def test_openvino_refuses_a_second_isa_in_one_process(monkeypatch):
    from pose_tuner.baselines import openvino

    monkeypatch.setenv(openvino.ONEDNN_ENV, "AVX512_CORE")
    with pytest.raises(BaselineUnavailable, match="held to AVX512_CORE .*not AVX2"):
        openvino.hold_to("avx2")
    openvino.hold_to("avx512")  # the same level again is fine


OV_HELD = """
import json, sys
from pose_tuner.baselines import get_baseline
from pose_tuner.baselines.openvino import wider_kernels
import numpy as np
sess = get_baseline(sys.argv[3]).prepare(sys.argv[1], sys.argv[2], np.load(sys.argv[4]), 2,
                                         isa_cap="avx2")
kernels = set()
for op in sess.compiled.get_runtime_model().get_ordered_ops():
    info = op.get_rt_info()
    if "primitiveType" in info:
        kernels.add(info["primitiveType"].astype(str))
wider = {layer: sorted(ks) for layer, ks in wider_kernels(sess.compiled, "avx2").items()}
print(json.dumps({"precision": sess.precision, "kernels": sorted(kernels), "wider": wider,
                  "listed": list(sess.wider_kernels)}))
"""


@pytest.mark.parametrize("name", ["openvino-fp32", "openvino-int8"])
def test_openvino_held_to_avx2_compiles_avx2_kernels(name, tiny_onnx, tmp_path):
    """In a fresh process (oneDNN reads its cap once): the convolutions' kernels are AVX2
    ones, none is wider, and the precision is f32 even on a CPU with bf16."""
    import subprocess
    import sys

    pytest.importorskip("openvino")
    if name == "openvino-int8":
        pytest.importorskip("nncf")
    from pose_tuner.hardware.cpu_isa import host_features

    if not {"avx2", "fma"} <= host_features():
        pytest.skip("this CPU has no AVX2")
    import json
    import os
    from pathlib import Path

    np.save(tmp_path / "calib.npy", calib())
    out = subprocess.run(
        [sys.executable, "-c", OV_HELD, tiny_onnx, str(tmp_path / name), name,
         str(tmp_path / "calib.npy")],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.returncode == 0, out.stderr[-2000:]
    held = json.loads(out.stdout.strip().splitlines()[-1])
    assert "float32" in held["precision"]
    from pose_tuner.baselines.openvino import COMPUTE_LAYERS

    assert not COMPUTE_LAYERS & set(held["wider"]), held["wider"]
    assert len(held["listed"]) == len(held["wider"])  # what runs wider anyway is listed
    assert any("avx2" in k for k in held["kernels"]), held["kernels"]
