"""The machine-wide timing lock: one latency measurement at a time across processes."""

import os
import signal
import subprocess
import sys
import time

import pytest

from pose_tuner.measure import timing_lock as tl
from pose_tuner.measure.runner import Timing, interleaved, time_callable

HOLDER = """
import sys, time
from pose_tuner.measure.timing_lock import timing_lock
with timing_lock():
    print("held", flush=True)
    time.sleep(float(sys.argv[1]))
    print(f"released {time.time():.6f}", flush=True)
"""


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(tl.LOCK_DIR_ENV, str(tmp_path))
    return tmp_path


def _holder(seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_timing_waits_for_another_process_and_says_so(lock_dir, capsys):
    proc = _holder(1.5)
    try:
        assert tl.holder() == proc.pid
        starts = []
        stats = time_callable(lambda: starts.append(time.time()),
                              Timing(budget_s=0.1, min_repeat=3, max_repeat=3, warmup=1))
        released = float(proc.stdout.readline().split()[1])
    finally:
        proc.wait(timeout=30)
    assert stats.runs == 3
    assert min(starts) >= released  # nothing ran while the other process timed
    err = capsys.readouterr().err
    assert f"waiting for another measurement on this machine (pid {proc.pid})" in err


def test_a_killed_holder_frees_the_lock(lock_dir):
    proc = _holder(60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    t = time.monotonic()
    with tl.timing_lock(waiting=None) as waited:
        assert waited < 5
    assert time.monotonic() - t < 5


def test_nested_timing_takes_the_lock_once(lock_dir):
    samples = interleaved({"a": lambda: None, "b": lambda: None}, rounds=2,
                          timing=Timing(budget_s=0.01, min_repeat=2, max_repeat=2))
    assert [len(v) for v in samples.values()] == [2, 2]
    with tl.timing_lock(waiting=None):
        with tl.timing_lock(waiting=None) as inner:
            assert inner == 0.0
        # still held after the inner block: another process cannot take it
        probe = subprocess.run(
            [sys.executable, "-c",
             "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR)\n"
             "try:\n fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
             "except BlockingIOError:\n print('held')", tl.lock_path()],
            capture_output=True, text=True, timeout=30)
        assert probe.stdout.strip() == "held"


def test_metaschedule_measurements_wait_for_the_lock(lock_dir, tmp_path):
    """A tuning batch on this machine is measured only once another process's timing is
    over (LockedRunner around MetaSchedule's LocalRunner)."""
    pytest.importorskip("tvm")
    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms

    from pose_tuner.compile.tuning import LockedRunner

    a = te.placeholder((64,), name="a")
    b = te.compute((64,), lambda i: a[i] * 2.0, name="b")
    func = te.create_prim_func([a, b])
    path = str(tmp_path / "k.so")
    tvm.compile(tvm.IRModule({"main": func}), target="llvm").export_library(path)
    inp = ms.runner.RunnerInput(path, "cpu", ms.arg_info.ArgInfo.from_prim_func(func))
    runner = LockedRunner(ms.runner.LocalRunner(timeout_sec=60))
    proc = _holder(3)
    try:
        (future,) = runner.run([inp])
        done = time.time()
        released = float(proc.stdout.readline().split()[1])
    finally:
        proc.wait(timeout=30)
    result = future.result()
    assert result.error_msg is None and len(result.run_secs) > 0
    assert done >= released
