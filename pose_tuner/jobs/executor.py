"""Run one candidate in a child process with a timeout; crashes become failed results.

A remote one (its spec has ``"rpc"``) whose device went away mid-run is run once more, on
a free device of the pool (:func:`run_on_device`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable


def _die_with_parent() -> None:  # runs in the child before exec
    """Linux: the child gets SIGKILL when the search dies, even by ``kill -9`` (it runs in
    its own session, so nothing else would stop it)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_in_child(spec: dict, timeout_s: float, log_path: str,
                 on_progress: Callable[[str], None] = lambda _m: None,
                 threads: int | None = None, module: str = "pose_tuner.jobs.worker") -> dict:
    """Run ``python -m module SPEC RESULT`` (:mod:`pose_tuner.jobs.worker`); return its result dict.

    A non-zero exit, a signal (TVM can segfault) or a timeout gives
    ``{"status": "failed", "error": ...}`` naming what happened and the log file.
    """
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ptuner-") as tmp:
        spec_path = os.path.join(tmp, "spec.json")
        result_path = os.path.join(tmp, "result.json")
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump(spec, f)
        env = dict(os.environ)
        if threads:
            env["TVM_NUM_THREADS"] = str(threads)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        with open(log_path, "a", encoding="utf-8") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, spec_path, result_path],
                stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )

            def pump():
                for line in proc.stdout:
                    on_progress(line.rstrip("\n"))

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            try:
                rc = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                reader.join(5)
                return {"status": "failed",
                        "error": f"timed out after {timeout_s:.0f} s (raise --timeout); log: {log_path}"}
            except BaseException:
                # Ctrl-C / SIGTERM of the search: the child is in its own session, so it
                # would outlive us; stop it, and leave the database as it is (resumable)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
            reader.join(5)
        if rc != 0:
            what = (f"crashed with signal {signal.Signals(-rc).name}" if rc < 0
                    else f"exited with code {rc}")
            return {"status": "failed", "error": f"candidate process {what}; log: {log_path}"}
        try:
            with open(result_path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"status": "failed", "error": f"candidate process wrote no result; log: {log_path}"}


def device_lost(result: dict) -> bool:
    """A remote run failed because its device or session went away (worth one retry on
    another device of the pool), not because of what it ran."""
    err = (result.get("error") or "").lower()
    # "code=kShutdown" (an RPCCode where a kReturn was due) is how TVM's client sees a
    # session whose device process went away mid-call
    return result.get("status") != "ok" and any(
        w in err for w in ("rpcerror", "rpc session", "rpccode", "connection", "socket",
                           "session timeout", "broken pipe", "tracker"))


def run_on_device(spec: dict, timeout_s: float, log_path: str,
                  on_progress: Callable[[str], None] = lambda _m: None,
                  threads: int | None = None,
                  on_retry: Callable[[str], None] = lambda _m: None,
                  module: str = "pose_tuner.jobs.worker") -> dict:
    """:func:`run_in_child`, and for a remote spec whose device dropped mid-run
    (:func:`device_lost`) once more, after telling ``on_retry`` why. Only that run fails
    if the second try fails too; the caller goes on with the next."""
    result = run_in_child(spec, timeout_s, log_path, on_progress, threads, module)
    if "rpc" in spec and device_lost(result):
        on_retry(f"the device dropped ({result.get('error')}); retrying once")
        result = run_in_child(spec, timeout_s, log_path, on_progress, threads, module)
    return result
