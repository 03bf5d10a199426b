import time
from dataclasses import dataclass
from typing import ClassVar

import pytest

from pose_tuner.failures import ErrorKind
from pose_tuner.hardware.remote import RPCSpec
from pose_tuner.jobs.executor import run_in_child, run_on_device
from pose_tuner.jobs.specs import (JOBS, BaselineJob, CandidateJob, Job, JobFormatError,
                                   JobResult, job_from_json)

CHILD = "tests.jobs.crashing_child"


@dataclass(frozen=True)
class ChildJob(Job):
    """What tests/jobs/crashing_child.py does."""

    kind: ClassVar[str] = "test-child"
    do: str
    drops: str | None = None
    rpc: RPCSpec | None = None


def test_child_imports_this_checkout(tmp_path, monkeypatch):
    """The child finds the package it runs from the same checkout as its parent: the
    checkout's root is first on its path, and no folder inside the package is (its
    sub-packages would then be top-level modules)."""
    import os

    import pose_tuner

    monkeypatch.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/..")
    r = run_in_child(ChildJob("path"), 60, str(tmp_path / "c.log"), module=CHILD)
    package = os.path.dirname(os.path.abspath(pose_tuner.__file__))
    path = [os.path.abspath(p) for p in r.extra["path"] if p]
    assert os.path.dirname(package) in path
    assert not any(p.startswith(package) for p in path), path


def test_child_result_and_progress(tmp_path):
    lines = []
    r = run_in_child(ChildJob("ok"), 60, str(tmp_path / "c.log"), lines.append, module=CHILD)
    assert r.ok and r.latency_median_ms == 4.2 and r.extra == {"value": 42}
    assert r.error_kind is None
    assert lines == ["started"]


def test_segfault_becomes_a_failed_result(tmp_path):
    r = run_in_child(ChildJob("segfault"), 60, str(tmp_path / "c.log"), module=CHILD)
    assert r.status == "failed" and "SIGSEGV" in r.error and r.error_kind is ErrorKind.CRASH


def test_timeout_kills_the_child(tmp_path):
    t = time.time()
    r = run_in_child(ChildJob("hang"), 2, str(tmp_path / "c.log"), module=CHILD)
    assert r.status == "failed" and "timed out after 2 s" in r.error
    assert r.error_kind is ErrorKind.TIMEOUT
    assert time.time() - t < 30


def test_nonzero_exit_and_unreadable_results_are_crashes(tmp_path):
    r = run_in_child(ChildJob("exit"), 60, str(tmp_path / "c.log"), module=CHILD)
    assert r.status == "failed" and "exited with code 3" in r.error
    assert r.error_kind is ErrorKind.CRASH
    r = run_in_child(ChildJob("garbage"), 60, str(tmp_path / "c.log"), module=CHILD)
    assert r.error_kind is ErrorKind.CRASH and "no_such_field" in r.error


def test_a_dropped_device_is_retried_once(tmp_path):
    drops = tmp_path / "drops"
    said = []
    job = ChildJob("drop", str(drops), RPCSpec("h", 9190, "k"))
    drops.write_text("1")
    r = run_on_device(job, 60, str(tmp_path / "c.log"), on_retry=said.append, module=CHILD)
    assert r.ok and len(said) == 1 and "retrying once" in said[0]
    drops.write_text("2")  # dropped again on the retry: that run fails, no third try
    r = run_on_device(job, 60, str(tmp_path / "c.log"), module=CHILD)
    assert r.error_kind is ErrorKind.DEVICE_LOST and drops.read_text() == "0"
    drops.write_text("1")  # a local run (no rpc) is not retried
    r = run_on_device(ChildJob("drop", str(drops)), 60, str(tmp_path / "c.log"), module=CHILD)
    assert r.status == "failed" and drops.read_text() == "0"


def test_jobs_round_trip_through_json_and_unknown_ones_are_refused():
    job = CandidateJob(onnx_path="m.onnx", input_shape=(1, 3, 64, 48), tvm_target={"kind": "llvm"},
                       prune_ratio=0.25, quant="int8", schedule="metaschedule", trials=8,
                       tuning_dir="t", artifact_path="a.so", rpc=RPCSpec("h", 9190, "pi"))
    back = job_from_json(job.to_json())
    assert back == job and isinstance(back.rpc, RPCSpec) and back.input_shape == (1, 3, 64, 48)
    assert set(JOBS) >= {"variant", "candidate", "baseline", "accuracy", "remeasure", "build"}
    with pytest.raises(JobFormatError, match="unknown job kind 'nope'"):
        job_from_json('{"kind": "nope"}')
    with pytest.raises(JobFormatError, match="unknown fields: colour"):
        job_from_json('{"kind": "build", "onnx_path": "m", "tvm_target": {}, "quant": "fp32", '
                      '"artifact_path": "a.so", "colour": 1}')
    with pytest.raises(JobFormatError, match="baseline job.*missing"):
        job_from_json('{"kind": "baseline", "baseline": "onnxruntime-fp32"}')
    assert job_from_json(BaselineJob("b", "x86", "m", (1,), "w", 2).to_json()).threads == 2


def test_results_carry_their_kind_through_json():
    r = JobResult.failure(ErrorKind.MISMATCH, "NumericalMismatch: rel err 0.3")
    back = JobResult.from_json(r.to_json())
    assert back == r and back.error_kind is ErrorKind.MISMATCH
    assert r.as_dict() == {"status": "failed", "error": "NumericalMismatch: rel err 0.3",
                           "error_kind": "numerical_mismatch"}


def test_a_baseline_job_for_a_narrower_target_is_held_and_says_so(tiny_onnx, tmp_path):
    """x86-avx2 on a CPU with AVX-512: OpenVINO's convolutions are held to AVX2 in the job's
    fresh process, and the stored timing conditions say so (with what ran wider anyway)."""
    import json

    pytest.importorskip("openvino")
    from pose_tuner.hardware import get_target

    target = get_target("x86-avx2")
    try:
        target.check_available()
    except Exception as exc:  # noqa: BLE001 - a CPU without AVX2
        pytest.skip(str(exc))
    if target.isa_below_host() is None:
        pytest.skip("this CPU has nothing wider than AVX2: there is nothing to hold")
    lines = []
    job = BaselineJob("openvino-fp32", "x86-avx2", tiny_onnx, (1, 3, 32, 32),
                      str(tmp_path / "ov"), 2, measure_budget_s=0.2)
    r = run_in_child(job, 300, str(tmp_path / "b.log"), lines.append)
    assert r.ok, r.error
    conditions = json.loads(r.timing_conditions)
    assert conditions["isa_cap"] == "avx2" and isinstance(conditions["wider_kernels"], list)
    assert any("held to avx2" in ln for ln in lines), lines
