"""Typed records between the search (parent) and the worker (child process).

A job is a frozen dataclass whose class says its kind (``VariantJob``, ``CandidateJob``,
``BaselineJob``, ``AccuracyJob``, ``RemeasureJob``, ``BuildJob``); the worker answers
with a :class:`JobResult`. Both cross the process boundary as JSON, written and read
here only (:meth:`Job.to_json`, :func:`job_from_json`, :meth:`JobResult.to_json`,
:meth:`JobResult.from_json`): an unknown kind or field is an error, not a default.
Defaults live on the fields, once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

from pose_tuner.accuracy.benchmark import AccuracySpec
from pose_tuner.failures import ErrorKind, kind_of
from pose_tuner.hardware.remote import RPCSpec


class JobFormatError(ValueError):
    """A job or result file that is not one of these records (unknown kind or field)."""


#: every job class by its kind (filled by :meth:`Job.__init_subclass__`)
JOBS: dict[str, type["Job"]] = {}


def _plain(value):
    """JSON-able form of a field value."""
    if isinstance(value, (RPCSpec, AccuracySpec)):
        return value.as_dict()
    if isinstance(value, tuple):
        return list(value)
    return value


def _typed(name: str, value):
    """The field value a JSON value stands for."""
    if value is None:
        return None
    if name == "rpc":
        return RPCSpec(**value)
    if name == "accuracy":
        return AccuracySpec.from_dict(value)
    if isinstance(value, list):
        return tuple(value)
    return value


def _build(cls, payload: dict, what: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(payload) - known)
    if unknown:
        raise JobFormatError(f"{what} has unknown fields: {', '.join(unknown)}")
    try:
        return cls(**{k: _typed(k, v) for k, v in payload.items()})
    except TypeError as exc:
        raise JobFormatError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class Job:
    """One unit of work for :mod:`pose_tuner.jobs.worker`. Subclasses set ``kind``."""

    kind: ClassVar[str] = ""
    #: whether the job may import PyTorch; the worker blocks it for jobs that need none
    #: (:mod:`pose_tuner.measure.lean`: it would cost seconds per process)
    uses_torch: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.kind in JOBS:
            raise TypeError(f"job kind {cls.kind!r} is registered twice")
        JOBS[cls.kind] = cls

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind,
                           **{f.name: _plain(getattr(self, f.name)) for f in fields(self)}})


def job_from_json(text: str) -> Job:
    """The job a :meth:`Job.to_json` text describes; :class:`JobFormatError` otherwise."""
    payload = json.loads(text)
    kind = payload.pop("kind", None)
    cls = JOBS.get(kind)
    if cls is None:
        raise JobFormatError(f"unknown job kind {kind!r} (known: {', '.join(sorted(JOBS))})")
    return _build(cls, payload, f"{kind} job")


@dataclass(frozen=True)
class VariantJob(Job):
    """Prune (and recover) the PyTorch model at one ratio; export the fp32 reference."""

    kind: ClassVar[str] = "variant"
    model: str
    input_size: tuple[int, int]
    prune_ratio: float
    importance: str
    round_to: int
    out_path: str
    data_dir: str
    finetune_steps: int = 0
    recovery: str = "finetune"
    #: the accuracy data (distillation learns on its images; AP before / after on it)
    eval_ann: str | None = None
    eval_images: str | None = None
    eval_max_people: int | None = None


@dataclass(frozen=True)
class CandidateJob(Job):
    """Build one search point of one variant, check it against its reference, time it."""

    kind: ClassVar[str] = "candidate"
    uses_torch: ClassVar[bool] = False
    onnx_path: str
    input_shape: tuple[int, ...]
    tvm_target: dict
    prune_ratio: float
    quant: str
    schedule: str
    trials: int
    tuning_dir: str
    artifact_path: str
    measure_budget_s: float = 10.0
    #: the target's int8 dot-product kernel (``Target.int8_kernel``) and weight bits
    int8_kernel: str | None = None
    int8_weight_bits: int = 8
    calib_npy: str | None = None
    calibration: str = "minmax"
    runner_timeout_s: float = 60.0
    #: the device kind a local artifact runs on (``Target.device``)
    device: str = "cpu"
    #: where a remote target's devices are (None: this machine)
    rpc: RPCSpec | None = None


@dataclass(frozen=True)
class BaselineJob(Job):
    """Prepare one vendor stack on the reference model, check it, time it (and score it)."""

    kind: ClassVar[str] = "baseline"
    baseline: str
    target: str
    onnx_path: str
    input_shape: tuple[int, ...]
    work_dir: str
    threads: int
    calib_npy: str | None = None
    measure_budget_s: float = 10.0
    accuracy: AccuracySpec | None = None
    rpc: RPCSpec | None = None


@dataclass(frozen=True)
class AccuracyJob(Job):
    """COCO OKS AP / PCK of a built TVM artifact (a host build for remote targets)."""

    kind: ClassVar[str] = "accuracy"
    uses_torch: ClassVar[bool] = False
    artifact_path: str
    input_shape: tuple[int, ...]
    accuracy: AccuracySpec
    device: str = "cpu"


@dataclass(frozen=True)
class RemeasureJob(Job):
    """Check a stored artifact against its reference again, then time it (drift)."""

    kind: ClassVar[str] = "remeasure"
    uses_torch: ClassVar[bool] = False
    artifact_path: str
    onnx_path: str
    quant: str
    input_shape: tuple[int, ...]
    device: str = "cpu"
    measure_budget_s: float = 10.0
    rpc: RPCSpec | None = None


@dataclass(frozen=True)
class BuildJob(Job):
    """Compile only (``tuner build``): the model with the target's default schedules."""

    kind: ClassVar[str] = "build"
    uses_torch: ClassVar[bool] = False
    onnx_path: str
    tvm_target: dict
    quant: str
    artifact_path: str
    #: the linker of the target's devices' libraries (None: this machine's compiler)
    cross_cc: str | None = None


@dataclass(frozen=True)
class JobResult:
    """What a job found. ``status`` is ``ok``, ``failed`` or ``skipped``; a failure carries
    ``error`` (one line for people) and ``error_kind`` (what rules read). Measurements
    are None where a job does not take them."""

    status: str = "failed"
    error: str | None = None
    error_kind: ErrorKind | None = None
    # numerical check against the reference, and timing
    max_abs_err: float | None = None
    rel_err: float | None = None
    latency_median_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_mean_ms: float | None = None
    latency_std_ms: float | None = None
    latency_runs: int | None = None
    #: the timing stayed noisy (:mod:`pose_tuner.measure.noise`), and its conditions (JSON)
    latency_noisy: bool | None = None
    timing_conditions: str | None = None
    #: resident memory of loading and running the artifact (:mod:`pose_tuner.measure.memory`)
    peak_memory_mb: float | None = None
    # the build
    artifact_path: str | None = None
    model_size_bytes: int | None = None
    build_seconds: float | None = None
    tune_trials_run: int | None = None
    tune_seconds: float | None = None
    wall_seconds: float | None = None
    tvm_version: str | None = None
    cuda_compiler: str | None = None
    cuda_images: tuple[str, ...] | None = None
    # accuracy (pose_tuner.store.records.ACCURACY_FIELDS)
    ap: float | None = None
    ap50: float | None = None
    ap75: float | None = None
    ar: float | None = None
    pck: float | None = None
    accuracy_dataset: str | None = None
    accuracy_people: int | None = None
    # a pruned variant
    onnx_path: str | None = None
    param_count: int | None = None
    flops: float | None = None
    finetune_steps: int | None = None
    ap_unpruned: float | None = None
    ap_pruned: float | None = None
    ap_recovered: float | None = None
    #: anything a test child reports beside (never read by the tool)
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def failure(cls, kind: ErrorKind, error: str) -> "JobResult":
        return cls(status="failed", error=error, error_kind=kind)

    def as_dict(self) -> dict:
        """The fields that are set (what ``tuner build`` prints)."""
        out = {k: _plain(v) for k, v in asdict(self).items()
               if v is not None and k != "extra"}
        if self.error_kind is not None:
            out["error_kind"] = self.error_kind.value
        return out

    def to_json(self) -> str:
        return json.dumps({**self.as_dict(), **({"extra": self.extra} if self.extra else {})})

    @classmethod
    def from_json(cls, text: str) -> "JobResult":
        payload = json.loads(text)
        if not isinstance(payload, dict):
            raise JobFormatError("a job result is a JSON object")
        if "error_kind" in payload:
            payload["error_kind"] = kind_of(payload["error_kind"])
        return _build(cls, payload, "job result")
