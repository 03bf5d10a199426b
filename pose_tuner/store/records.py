"""Records: what the tuner stores about one measured candidate (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


#: the fields an accuracy measurement fills in
ACCURACY_FIELDS = ("ap", "ap50", "ap75", "ar", "pck", "accuracy_dataset", "accuracy_people")


@dataclass(frozen=True)
class CandidateRecord:
    """One point of one model on one target: its configuration and what was measured.

    ``status`` is ``ok``, ``failed`` or ``skipped`` (then ``error`` says why and
    ``error_kind`` what kind of failure it is); measurements are None
    where they were not taken. ``backend`` is ``tvm`` for tuner candidates; baselines
    (ONNX Runtime, OpenVINO, TensorRT) use their own names.
    """

    model_name: str
    model_hash: str
    target: str
    backend: str
    prune_ratio: float
    quant: str
    schedule: str
    trials: int
    status: str
    #: how the variant was made beyond the key ('' for the plain model): pruning
    #: importance / rounding / fine-tuning steps, int8 calibration (SearchSpace.variant_tag)
    variant: str = ""
    #: digest of the exact TVM target (CPU, cores) the point was built and timed for
    target_config: str = ""
    finetune_steps: int | None = None  # fine-tuning steps after pruning (0: not fine-tuned)
    error: str | None = None
    #: what kind of failure (a :class:`pose_tuner.failures.ErrorKind` value) for a failed
    #: or skipped row: the rules (re-measure, retry) read this, never ``error``
    error_kind: str | None = None
    input_shape: str | None = None
    model_path: str | None = None  # the reference ONNX file the candidate was built from
    #: hash of the cleaned ONNX file the pipeline used (``model_hash`` is the user's file's)
    cleaned_hash: str | None = None
    latency_median_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_mean_ms: float | None = None
    latency_std_ms: float | None = None
    latency_runs: int | None = None
    #: frames per second, 1000 / median latency
    fps: float | None = None
    #: the timing stayed noisy after a second try (its figure is kept, flagged, and the
    #: nightly regression rule ignores it); the conditions it was timed under, as JSON
    latency_noisy: bool | None = None
    timing_conditions: str | None = None
    #: resident memory loading and running the artifact adds (MB), where it runs
    peak_memory_mb: float | None = None
    ap: float | None = None
    ap50: float | None = None
    ap75: float | None = None
    ar: float | None = None
    pck: float | None = None
    accuracy_dataset: str | None = None  # which data AP/PCK were measured on
    accuracy_people: int | None = None
    max_abs_err: float | None = None
    rel_err: float | None = None
    model_size_bytes: int | None = None
    param_count: int | None = None
    flops: float | None = None
    artifact_path: str | None = None
    emulated: bool = False
    tune_trials_run: int | None = None
    tune_seconds: float | None = None
    build_seconds: float | None = None
    wall_seconds: float | None = None
    tvm_version: str | None = None
    tuner_version: str | None = None
    host: str | None = None
    #: the exact TVM target JSON the point was built for, and the device it was timed on
    target_json: str | None = None
    device: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    id: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def schedule_label(self) -> str:
        if self.schedule in ("default", "vendor"):
            return self.schedule
        return f"{self.schedule}:{self.trials}"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
