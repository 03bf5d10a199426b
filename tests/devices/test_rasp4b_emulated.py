"""The rasp4b path for real against an emulated Pi (aarch64 TVM RPC servers under qemu on
this machine): cross-compile, upload, run, numerical check, MetaSchedule over the device
pool, the emulated mark, ONNX Runtime baselines on the device; and the clear errors of a
tracker without devices.

The emulated root is built by `tuner device emulate rasp4b --prepare-only` (`.ci/run`
does it); without it these tests are skipped, unless PTUNER_REQUIRE_EMULATOR is set."""

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from pose_tuner.hardware import TargetUnavailable, get_target
from pose_tuner.devices.availability import check_available
from pose_tuner.devices.emulator import emulator_dir, free_port, is_ready
from pose_tuner.cli import main


@pytest.fixture(scope="module")
def tracker_only():
    """An RPC tracker with no device registered."""
    import socket

    from tests.conftest import service

    port = free_port()
    with service([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                  "--port", str(port), "--port-end", str(port + 1)]):
        deadline = time.time() + 60
        while time.time() < deadline:  # until it listens (importing TVM takes a while)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"


def test_a_key_without_devices_is_a_clear_error(tracker_only):
    with pytest.raises(TargetUnavailable, match="has no device under key 'rasp4b'"):
        check_available(get_target("rasp4b", tracker=tracker_only))


def test_an_empty_pool_fails_at_once_instead_of_waiting_forever(tracker_only):
    from tvm.s_tir.meta_schedule.runner import RPCConfig

    from pose_tuner.measure.rpc import RPCError, RPCSpec, connect
    from pose_tuner.compile.tuning import _runner, trial_session

    spec = RPCSpec.parse(tracker_only, "rasp4b")
    t = time.time()
    with pytest.raises(RPCError, match="no device under key 'rasp4b'.*the pool is empty"):
        connect(spec)
    # MetaSchedule's tuning, at its start and for each trial's session
    with pytest.raises(RPCError, match="the pool is empty"):
        _runner(60, spec)
    with pytest.raises(RPCError, match="the pool is empty"):
        trial_session(RPCConfig(tracker_host=spec.tracker_host, tracker_port=spec.tracker_port,
                                tracker_key="rasp4b", session_timeout_sec=60))
    assert time.time() - t < 30


def test_a_point_that_failed_for_want_of_a_device_is_measured_again():
    from pose_tuner import __version__
    from pose_tuner.store.records import CandidateRecord
    from pose_tuner.search.rows import is_stale, lost_device, tvm_version

    def row(error, kind):
        return CandidateRecord(model_name="m", model_hash="h", target="rasp4b", backend="tvm",
                               prune_ratio=0.0, quant="fp32", schedule="default", trials=0,
                               status="failed", error=error, error_kind=kind,
                               tuner_version=__version__, tvm_version=tvm_version())

    lost = row("RPCError: no device under key 'rasp4b' at h:9190: the pool is empty",
               "device_lost")
    assert lost_device(lost) and is_stale(lost)
    # the kind decides, not the words
    wrong = row("NumericalMismatch: the RPC session's output differs", "numerical_mismatch")
    assert not lost_device(wrong) and not is_stale(wrong)


def test_a_remote_job_whose_session_went_away_fails_as_device_lost():
    """The worker gives each failure its kind: TVM's errors for a session whose device
    went away (it has no exception type for them) only on a remote job."""
    from pose_tuner.failures import ErrorKind
    from pose_tuner.hardware.remote import RPCError
    from pose_tuner.jobs.worker import classify
    from pose_tuner.measure.check import NumericalMismatch

    lost = [RPCError("no session on a device"), RuntimeError("Socket connection closed"),
            RuntimeError("Check failed: (code == RPCCode::kReturn) is false: code=kShutdown"),
            ConnectionResetError("peer")]
    for exc in lost:
        assert classify(exc, ErrorKind.RUN, remote=True) is ErrorKind.DEVICE_LOST
        assert classify(exc, ErrorKind.RUN, remote=False) is not ErrorKind.DEVICE_LOST
    assert classify(NumericalMismatch("rel err 0.3"), ErrorKind.RUN, True) is ErrorKind.MISMATCH
    assert classify(ValueError("bad op"), ErrorKind.BUILD, True) is ErrorKind.BUILD


@pytest.fixture(scope="module")
def pi():
    import shutil

    if not is_ready() or shutil.which("aarch64-linux-gnu-g++") is None:
        if os.environ.get("PTUNER_REQUIRE_EMULATOR"):
            pytest.fail("the emulated Pi's root or the aarch64 cross linker is missing: "
                        "tuner device emulate rasp4b --prepare-only")
        pytest.skip("no emulated Pi root or cross linker (apt-get install g++-aarch64-linux-gnu; "
                    "tuner device emulate rasp4b --prepare-only)")
    from pose_tuner.devices.emulator import EmulatedPi

    with EmulatedPi(servers=2, say=lambda m: None) as emu:
        yield emu


def _sessions(n=2):
    """Sessions each emulated server has served so far (from their logs)."""
    out = {}
    for i in range(n):
        path = os.path.join(emulator_dir(), "logs", f"server-rasp4b-{i}.log")
        with open(path, encoding="utf-8", errors="replace") as f:
            out[i] = sum("connected from" in ln for ln in f)
    return out


def test_rasp4b_search_on_an_emulated_pi_pool(pi, tiny_onnx, tmp_path):
    logs = str(tmp_path / "logs")
    before = _sessions()
    assert main(["search", "--target", "rasp4b", "--tracker", pi.tracker, "--model", tiny_onnx,
                 "--prune", "0", "--quant", "fp32", "--schedules", "default,metaschedule:8",
                 "--no-baselines", "--no-accuracy", "--measure-budget", "0.5",
                 "--log-dir", logs]) == 0
    con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
    rows = con.execute("select schedule, status, emulated, device, rel_err, artifact_path, "
                       "latency_median_ms, peak_memory_mb from candidates where backend = 'tvm' "
                       "order by id").fetchall()
    con.close()
    assert [(s, st, em) for s, st, em, *_ in rows] == [("default", "ok", 1), ("metaschedule", "ok", 1)]
    for _, _, _, device, rel_err, artifact, latency, memory in rows:
        assert device.startswith("emulated Pi") and rel_err < 2e-3 and latency > 0
        assert 0 < memory < 500  # measured on the device, through its device server
        with open(artifact, "rb") as f:  # an aarch64 ELF shared library (e_machine 183)
            head = f.read(20)
        assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183
        assert os.path.isfile(artifact[:-3] + ".host.so")  # the host build, for accuracy
    after = _sessions()
    # the pool shared the work: both devices served sessions during this search
    assert all(after[k] > before[k] for k in after), (before, after)


def test_rasp4b_accuracy_and_onnx_runtime_baselines_on_the_emulated_pi(pi, tmp_path, capsys):
    logs = str(tmp_path / "logs")
    assert main(["search", "--target", "rasp4b", "--tracker", pi.tracker,
                 "--model", "shufflenetv2_fpn", "--input-size", "64x64", "--prune", "0",
                 "--quant", "fp32", "--schedules", "default",
                 "--val-images", "2", "--measure-budget", "0.5", "--log-dir", logs]) == 0
    con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
    rows = con.execute("select backend, quant, status, ap, accuracy_people, emulated, device, "
                       "rel_err, latency_median_ms, error from candidates order by backend, "
                       "quant").fetchall()
    con.close()
    assert [r[:3] for r in rows] == [("onnxruntime", "fp32", "ok"), ("onnxruntime", "int8", "ok"),
                                     ("tvm", "fp32", "ok")], rows
    for _, quant, _, ap, people, emulated, device, rel_err, latency, _ in rows:
        # accuracy on the host (TVM's host build, the same ONNX file for ONNX Runtime)
        assert ap is not None and people > 0 and emulated == 1
        assert device.startswith("emulated Pi") and latency > 0
        if quant == "fp32":  # checked on the device against the fp32 reference
            assert rel_err < 2e-3
    ort_fp32, tvm_fp32 = rows[0], rows[2]
    assert abs(ort_fp32[3] - tvm_fp32[3]) < 0.02  # same model, same AP within noise
    server_logs = "".join(open(os.path.join(emulator_dir(), "logs", f"server-rasp4b-{i}.log"),
                               encoding="utf-8", errors="replace").read() for i in range(2))
    assert "pose-tuner device server" in server_logs
    capsys.readouterr()
    assert main(["compare", "--target", "rasp4b", "--log-dir", logs]) == 0
    table = capsys.readouterr().out
    assert "| onnxruntime-int8 |" in table and "emulated device" in table
    assert main(["device", "emulate", "rasp4b", "--prepare-only"]) == 0  # cached: instant
    assert capsys.readouterr().out.strip().endswith("root")


#: an emulated device whose first timing request ends its session, as a Pi that drops
#: mid-candidate (the server itself lives on and takes the retry)
DROPPING_SERVER = """
import os, sys
import tvm, tvm_ffi
from tvm import rpc

MARKER, TRACKER, KEY, PORT = sys.argv[1:5]


def init():
    timer = tvm.get_global_func("runtime.RPCTimeEvaluator")

    def drop_once(*args):
        if not os.path.exists(MARKER):
            open(MARKER, "w").close()
            os._exit(0)
        return timer(*args)

    tvm_ffi.register_global_func("runtime.RPCTimeEvaluator", drop_once, override=True)


host, port = TRACKER.rsplit(":", 1)
server = rpc.Server("127.0.0.1", int(PORT), int(PORT) + 1, key=KEY,
                    tracker_addr=(host, int(port)), server_init_callback=init)
server.proc.join()
"""


def test_a_device_that_drops_mid_candidate_fails_it_once_and_the_retry_measures_it(
        pi, tiny_onnx, tmp_path, capsys):
    import signal
    import uuid

    from pose_tuner.devices.emulator import prepare_root
    from pose_tuner.measure.rpc import RPCSpec, servers, tracker_summary

    root = prepare_root(lambda m: None)
    script, marker = "/opt/pose-tuner/dropping_server.py", f"/tmp/dropped-{uuid.uuid4().hex}"
    with open(root + script, "w", encoding="utf-8") as f:
        f.write(DROPPING_SERVER)
    proc = subprocess.Popen(["chroot", root, "/opt/tvmenv/bin/python", script, marker,
                             pi.tracker, "dropping", str(free_port())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 180
        while not servers(tracker_summary(RPCSpec.parse(pi.tracker, "dropping")), "dropping"):
            assert proc.poll() is None and time.time() < deadline, "the device did not start"
            time.sleep(1)
        logs = str(tmp_path / "logs")
        capsys.readouterr()
        assert main(["search", "--target", "rasp4b", "--tracker", pi.tracker,
                     "--rpc-key", "dropping", "--model", tiny_onnx, "--prune", "0",
                     "--quant", "fp32", "--schedules", "default", "--no-baselines",
                     "--no-accuracy", "--measure-budget", "0.5", "--log-dir", logs]) == 0
        out = capsys.readouterr().out
        assert os.path.exists(root + marker)  # the session really went away mid-candidate
        assert "the device dropped" in out and "retrying once" in out, out
        con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
        rows = con.execute("select status, latency_median_ms from candidates").fetchall()
        con.close()
        assert len(rows) == 1 and rows[0][0] == "ok" and rows[0][1] > 0, rows
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        for path in (root + script, root + marker):
            if os.path.exists(path):
                os.remove(path)


def test_nightly_job_on_the_emulated_pi_remeasures_on_the_device(pi, tiny_onnx, tmp_path):
    cfg = tmp_path / "nightly.toml"
    cfg.write_text(f'name = "pi"\nlog_dir = "{tmp_path / "logs"}"\n'
                   "[regression]\nlatency = 5.0\n"
                   f'[[jobs]]\nmodel = "{tiny_onnx}"\ntarget = "rasp4b"\ntracker = "{pi.tracker}"\n'
                   'quant = ["fp32"]\nprune = [0.0]\nschedules = ["default"]\nremeasure = 1\n'
                   "baselines = false\naccuracy = false\nmeasure_budget_s = 0.3\n")
    for night in ("1", "2"):
        assert main(["nightly", "--config", str(cfg), "--night", night]) == 0
    con = sqlite3.connect(os.path.join(tmp_path, "logs", "pareto.sqlite"))
    rows = con.execute("select r.night, i.kind, i.outcome, i.status, i.device from work_items i "
                       "join nightly_runs r on r.id = i.run_id order by i.id").fetchall()
    con.close()
    assert [r[:4] for r in rows] == [("1", "point", "measured", "ok"), ("2", "point", "reused", "ok"),
                                     ("2", "remeasure", "remeasured", "ok")]
    assert rows[2][4].startswith("emulated Pi")
