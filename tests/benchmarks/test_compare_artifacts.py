"""benchmarks/compare_artifacts.py on two builds of a tiny model: their outputs agree with
the first's, both are timed, and the first is the peer of the ratios."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "compare_artifacts.py")


def test_two_builds_are_checked_and_timed_side_by_side(tiny_onnx, tmp_path):
    import tvm

    from pose_tuner.hardware import get_target
    from pose_tuner.compile import frontend, pipeline

    target = tvm.target.Target(get_target("x86").tvm_target())
    paths = [str(tmp_path / f"tiny{i}.so") for i in range(2)]
    for path in paths:
        pipeline.compile_module(pipeline.prepare(frontend.import_onnx(tiny_onnx), target),
                                target).export_library(path)
    run = subprocess.run([sys.executable, SCRIPT, *paths, "--input-shape", "1x3x32x32",
                          "--rounds", "2", "--budget", "0.1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert out.count("max |out - out[0]| = 0.0e+00") == 2
    rows = [ln.split() for ln in out.splitlines() if ln.strip().endswith(".so")
            and not ln.startswith("[")]
    assert len(rows) == 2 and float(rows[0][1]) == 1.0
    assert all(float(r[0]) > 0 for r in rows)
    assert "round 2/2" in run.stderr
