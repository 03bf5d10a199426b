"""A database row of the search: its provenance, its record, and when to measure again.

A stored row is reused unless it was measured by another pose-tuner release (or, for TVM
points, another TVM), or failed in a way that says nothing about the point (its error
kind is in :data:`pose_tuner.failures.MEASURE_AGAIN`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time

from pose_tuner import build_version
from pose_tuner.devices import availability
from pose_tuner.failures import MEASURE_AGAIN, kind_of
from pose_tuner.jobs.specs import JobResult
from pose_tuner.models.source import PreparedModel
from pose_tuner.search.variants import ModelVariant
from pose_tuner.store.records import ACCURACY_FIELDS, CandidateRecord

def tvm_version() -> str:
    """The installed TVM's version (without importing it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("apache-tvm")
    except PackageNotFoundError:
        return "unknown"


def lost_device(rec: CandidateRecord) -> bool:
    """The row failed because its device went away (twice), which says nothing about the
    point: a later search or night measures it again (:data:`MEASURE_AGAIN`)."""
    return rec.status == "failed" and kind_of(rec.error_kind) in MEASURE_AGAIN


def is_stale(rec: CandidateRecord, tvm_ver: str | None = None) -> bool:
    """Measured by another pose-tuner release, or (TVM points) another TVM, or failed for
    want of a device (:func:`lost_device`): measure again (a commit of the same release is
    recorded, not re-measured)."""
    from pose_tuner import __version__

    if lost_device(rec):
        return True
    tvm_ver = tvm_ver or tvm_version()
    release = (rec.tuner_version or "").split("+")[0]
    return release != __version__ or (
        rec.backend == "tvm" and bool(rec.tvm_version) and rec.tvm_version != tvm_ver)


def target_digest(tvm_target: dict) -> str:
    """Identifies the exact TVM target (CPU, cores): database rows and tuning records of
    one target configuration are never used for another."""
    return hashlib.sha256(json.dumps(tvm_target, sort_keys=True).encode()).hexdigest()[:8]


def tuning_dir(log_dir: str, target_name: str, tvm_target: dict) -> str:
    return os.path.join(log_dir, "tuning", f"{target_name}-{target_digest(tvm_target)}")


def provenance(target, tvm_target: dict) -> dict:
    """What every record says about where it was built and measured."""
    emulated = availability.is_emulated(target)  # one look at the pool
    return {"target_json": json.dumps(tvm_target, sort_keys=True),
            "device": target.device_identity(emulated=emulated), "emulated": emulated}


def record_from(key: dict, model: PreparedModel, result: JobResult, t0: float,
            variant: ModelVariant | None = None, prov: dict | None = None) -> CandidateRecord:
    """A database record from a job's result (failed or not)."""
    variant = variant or ModelVariant.unpruned(model)
    r = result
    return CandidateRecord(
        **key, **(prov or {}), model_name=model.name, status=r.status, error=r.error,
        error_kind=r.error_kind.value if r.error_kind else None,
        input_shape=model.input_shape_text,
        model_path=variant.onnx_path, finetune_steps=variant.finetune_steps,
        cleaned_hash=model.cleaned_hash or None,
        latency_median_ms=r.latency_median_ms, latency_p90_ms=r.latency_p90_ms,
        latency_mean_ms=r.latency_mean_ms, latency_std_ms=r.latency_std_ms,
        latency_runs=r.latency_runs, max_abs_err=r.max_abs_err, rel_err=r.rel_err,
        fps=1000.0 / r.latency_median_ms if r.latency_median_ms else None,
        latency_noisy=r.latency_noisy, timing_conditions=r.timing_conditions,
        peak_memory_mb=r.peak_memory_mb,
        **{k: getattr(r, k) for k in ACCURACY_FIELDS},
        model_size_bytes=r.model_size_bytes, param_count=variant.param_count,
        flops=variant.flops,
        artifact_path=os.path.abspath(r.artifact_path) if r.artifact_path else None,
        tune_trials_run=r.tune_trials_run, tune_seconds=r.tune_seconds,
        build_seconds=r.build_seconds, wall_seconds=time.time() - t0,
        tvm_version=r.tvm_version, tuner_version=build_version(), host=platform.node(),
    )
