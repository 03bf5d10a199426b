"""benchmarks/winograd_int16.py: the int16 GEMM probe tensorizes into vpmaddwd, computes the
GEMM exactly over the transformed operands' ranges, and refuses bad shapes."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "winograd_int16.py")


def _host_has_avx2() -> bool:
    from pose_tuner.hardware.cpu_isa import host_features

    return "avx2" in host_features()


def test_the_gemm_tensorizes_into_vpmaddwd_and_is_exact(tmp_path):
    """Where this CPU has no AVX2 the probe refuses with one line (exit 2) instead."""
    run = subprocess.run(
        [sys.executable, SCRIPT, "--cin", "32", "--cout", "32", "--tiles", "8", "--phases", "1",
         "--trials", "4", "--log-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "TVM_NUM_THREADS": "1"})
    if not _host_has_avx2():
        assert run.returncode == 2 and "no AVX2" in run.stderr
        pytest.skip("this CPU has no AVX2: the probe refuses to time its kernel")
    assert run.returncode == 0, run.stderr[-3000:]
    line = run.stdout.strip().splitlines()[-1]
    assert "exact: True" in line
    assert int(line.rsplit(":", 1)[1]) > 0  # vpmaddwd instructions in the tuned GEMM


def test_channels_must_fill_the_16_lane_blocks():
    run = subprocess.run([sys.executable, SCRIPT, "--cin", "24", "--trials", "1"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "multiples of 16" in run.stderr or "no AVX2" in run.stderr
