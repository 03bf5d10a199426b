"""benchmarks/kernel_profile.py on a tiny compiled model: every kernel call is timed and
the kinds add up to the calls under the instrument."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "kernel_profile.py")


def test_kernel_profile_of_a_compiled_model(tiny_onnx, tmp_path):
    import tvm

    from pose_tuner.hardware import get_target
    from pose_tuner.compile import frontend, pipeline

    target = tvm.target.Target(get_target("x86").tvm_target())
    path = str(tmp_path / "tiny.so")
    pipeline.compile_module(pipeline.prepare(frontend.import_onnx(tiny_onnx), target),
                            target).export_library(path)
    run = subprocess.run([sys.executable, SCRIPT, path, "--input-shape", "1x3x32x32",
                          "--runs", "5", "--top", "50"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    head = lines[0]
    assert "calls per inference" in head and "time_evaluator" in head
    kernels = [ln for ln in lines if ln.startswith("| ") and "_" in ln.split("|")[4]]
    assert any("conv2d" in ln for ln in kernels)
    kinds = {ln.split("|")[3].strip(): float(ln.split("|")[1]) for ln in lines
             if ln.startswith("| ") and ln.count("|") == 4 and "%" in ln}
    assert "convolutions" in kinds and kinds["convolutions"] > 0
    under = float(head.split("under the instrument ")[1].split(" ms")[0])
    assert abs(sum(kinds.values()) - under) < 0.01 * under + 0.002
