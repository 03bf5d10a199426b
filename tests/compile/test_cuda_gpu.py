"""The CUDA target on a real GPU (marked ``gpu``; skipped where no NVIDIA driver is).

Run on a GPU machine with ``.venv/bin/python -m pytest -m gpu tests/compile/test_cuda_gpu.py``.
"""

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from pose_tuner.hardware.cuda import cuda_driver_present

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cuda_driver_present(), reason="no NVIDIA driver (libcuda.so.1)"),
]

# Loads a CUDA library where TVM cannot compile CUDA (an unknown compile mode makes
# tvm_callback_cuda_compile raise), runs it on the GPU and times it there.
RUN_ON_GPU = r"""
import json, sys
import numpy as np
from pose_tuner.measure.runner import LocalVM, Timing
vm = LocalVM(sys.argv[1], device="cuda")
x = np.load(sys.argv[2])
out = vm.run(x)
np.save(sys.argv[3], out)
stats = vm.latency(x, Timing(budget_s=1.0))
print(json.dumps({"median_ms": stats.median_ms}))
"""


def test_cuda_library_runs_on_the_gpu_without_a_compiler(tiny_onnx, tmp_path):
    """A library built for the GPU's arch loads and runs with no CUDA compiler at load
    time (its kernels are compiled in), matches ONNX Runtime on the CPU, and is timed on
    the device."""
    import onnxruntime as ort
    import tvm

    from pose_tuner.hardware import get_target

    from pose_tuner.compile import frontend, pipeline

    dev = tvm.cuda(0)
    arch = "sm_" + dev.compute_version.replace(".", "")
    target = tvm.target.Target(get_target("cuda", arch=arch).tvm_target())
    ex = pipeline.compile_module(
        pipeline.prepare(frontend.import_onnx(tiny_onnx), target), target)
    lib = tmp_path / "tiny_cuda.so"
    ex.export_library(str(lib))

    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "TVM_CUDA_COMPILE_MODE": "no-compiler-at-load-time"}
    run = subprocess.run([sys.executable, "-c", RUN_ON_GPU, str(lib), str(tmp_path / "x.npy"),
                          str(tmp_path / "y.npy")], env=env, capture_output=True, text=True,
                         timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                             os.path.abspath(__file__)))))
    assert run.returncode == 0, run.stderr[-3000:]
    got = np.load(tmp_path / "y.npy")
    ref = ort.InferenceSession(tiny_onnx, providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]
    assert float(ref.std()) > 1e-3  # outputs that vary, so the comparison means something
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-4
    median = json.loads(run.stdout.strip().splitlines()[-1])["median_ms"]
    assert 0 < median < 100
    print(f"tiny model on {arch}: {median:.3f} ms")


def test_search_on_the_gpu_with_metaschedule(tmp_path):
    """`tuner search --target cuda`: fp32 and fp16 with dlight's default GPU schedules and
    with MetaSchedule, every point checked against the reference and timed on the GPU."""
    import tvm

    from pose_tuner.cli import main

    logs = tmp_path / "logs"
    arch = "sm_" + tvm.cuda(0).compute_version.replace(".", "")
    assert main(["search", "--target", "cuda", "--cuda-arch", arch, "--log-dir", str(logs),
                 "--model",
                 "shufflenetv2_fpn", "--input-size", "64x64", "--prune", "0", "--quant",
                 "fp32,fp16", "--schedules", "default,metaschedule:16", "--no-baselines",
                 "--val-images", "8", "--measure-budget", "0.5"]) == 0
    con = sqlite3.connect(logs / "pareto.sqlite")
    rows = con.execute("select quant, schedule, status, latency_median_ms, rel_err, error "
                       "from candidates where backend='tvm' order by id").fetchall()
    con.close()
    for row in rows:
        print(row)
    assert len(rows) == 4
    assert all(r[2] == "ok" and r[3] > 0 for r in rows), rows


def test_search_on_a_gpu_over_rpc(tmp_path, local_devices):
    """The same GPU reached through TVM RPC (a tracker and TVM's RPC server on this
    machine): libraries are linked here, uploaded, checked and timed on the server."""
    import tvm

    from pose_tuner.cli import main

    arch = "sm_" + tvm.cuda(0).compute_version.replace(".", "")
    logs = tmp_path / "logs"
    assert main(["search", "--target", "cuda", "--cuda-arch", arch,
                 "--tracker", local_devices, "--rpc-key", "plain",
                 "--log-dir", str(logs), "--model", "shufflenetv2_fpn", "--input-size", "64x64",
                 "--prune", "0", "--quant", "fp32", "--schedules", "default,metaschedule:8",
                 "--no-baselines", "--val-images", "8", "--measure-budget", "0.5"]) == 0
    con = sqlite3.connect(logs / "pareto.sqlite")
    rows = con.execute("select schedule, status, latency_median_ms, device from candidates "
                       "where backend='tvm' order by id").fetchall()
    con.close()
    assert len(rows) == 2 and all(r[1] == "ok" and r[2] > 0 for r in rows), rows
