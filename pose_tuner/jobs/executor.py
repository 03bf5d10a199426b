"""Run one job in a child process with a timeout; crashes become failed results.

The job (:mod:`pose_tuner.jobs.specs`) goes to the child as JSON and a
:class:`~pose_tuner.jobs.specs.JobResult` comes back. A timeout, a signal, a non-zero
exit or no result is a failure of kind ``timeout`` or ``crash``. A remote job whose
device went away mid-run (``device_lost``) runs once more, on a free device of the pool
(:func:`run_on_device`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable

from pose_tuner.failures import MEASURE_AGAIN, ErrorKind
from pose_tuner.jobs.specs import Job, JobFormatError, JobResult


def _die_with_parent() -> None:  # runs in the child before exec
    """Linux: the child gets SIGKILL when the search dies, even by ``kill -9`` (it runs in
    its own session, so nothing else would stop it)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_in_child(job: Job, timeout_s: float, log_path: str,
                 on_progress: Callable[[str], None] = lambda _m: None,
                 threads: int | None = None, module: str = "pose_tuner.jobs.worker") -> JobResult:
    """Run ``python -m module JOB RESULT`` (:mod:`pose_tuner.jobs.worker`); return its result.

    A non-zero exit, a signal (TVM can segfault) or a timeout gives a failed result whose
    message names what happened and the log file.
    """
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ptuner-") as tmp:
        spec_path = os.path.join(tmp, "spec.json")
        result_path = os.path.join(tmp, "result.json")
        with open(spec_path, "w", encoding="utf-8") as f:
            f.write(job.to_json())
        env = dict(os.environ)
        if threads:
            env["TVM_NUM_THREADS"] = str(threads)
        # the checkout this package is imported from (pose_tuner/jobs/executor.py)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
                return JobResult.failure(
                    ErrorKind.TIMEOUT,
                    f"timed out after {timeout_s:.0f} s (raise --timeout); log: {log_path}")
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
            return JobResult.failure(ErrorKind.CRASH, f"candidate process {what}; log: {log_path}")
        try:
            with open(result_path, encoding="utf-8") as f:
                return JobResult.from_json(f.read())
        except OSError:
            return JobResult.failure(ErrorKind.CRASH,
                                     f"candidate process wrote no result; log: {log_path}")
        except (ValueError, JobFormatError) as exc:
            return JobResult.failure(ErrorKind.CRASH, f"candidate process wrote an unreadable "
                                                      f"result ({exc}); log: {log_path}")


def run_on_device(job: Job, timeout_s: float, log_path: str,
                  on_progress: Callable[[str], None] = lambda _m: None,
                  threads: int | None = None,
                  on_retry: Callable[[str], None] = lambda _m: None,
                  module: str = "pose_tuner.jobs.worker") -> JobResult:
    """:func:`run_in_child`, and for a remote job whose device dropped mid-run (a failure
    of a kind in :data:`pose_tuner.failures.MEASURE_AGAIN`) once more, after telling
    ``on_retry`` why. Only that run fails if the second try fails too; the caller goes on
    with the next."""
    result = run_in_child(job, timeout_s, log_path, on_progress, threads, module)
    if getattr(job, "rpc", None) is not None and result.error_kind in MEASURE_AGAIN:
        on_retry(f"the device dropped ({result.error}); retrying once")
        result = run_in_child(job, timeout_s, log_path, on_progress, threads, module)
    return result
