"""The nightly configuration file (TOML): which jobs a night runs, where results go, and
what counts as a regression.

```toml
name = "pose-nightly"          # nights of this name are compared with each other
db = "sqlite:///logs/nightly/pareto.sqlite"   # or postgresql+psycopg://user@host/tuning
log_dir = "logs/nightly"       # tuning records, artifacts, child logs (per worker machine)
reports = "logs/nightly/reports"

[regression]
latency = 0.10                 # slower by more than 10 % (and outside the old p90)
ap = 0.01                      # AP lower by more than 0.01

[defaults]                     # any job key; each [[jobs]] entry may override it
time_budget_min = 120
remeasure = 2
refine = true                  # spend what is left on tuning the front further

[[jobs]]
model = "shufflenetv2_fpn"
target = "x86"
space = "pose_tuner/search/default.toml"
trials = 64
[jobs.constraints]
max_latency_ms = 5.0
min_ap = 0.45
```

Relative paths are relative to the current directory (cron and systemd set it).
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field


class NightlyConfigError(ValueError):
    """The configuration file is unusable; the message says where and why."""


JOB_KEYS = {
    "model": "zoo name, .onnx file or package.module:factory",
    "target": "target name (see `tuner targets`)",
    "input_size": "HxW for zoo / PyTorch models",
    "output": "the ONNX output that is the pose head (X,Y for SimCC) where several could be",
    "space": "search space TOML (default: the shipped default space)",
    "prune": "pruning ratios overriding the space's",
    "quant": "quantization modes overriding the space's",
    "schedules": "schedules overriding the space's (default, metaschedule:N)",
    "trials": "MetaSchedule trials: replaces the space's metaschedule entries",
    "time_budget_min": "minutes after which the job starts no new item",
    "remeasure": "finished points re-timed each night to detect drift",
    "refine": "tune the front's MetaSchedule points further (doubling trials) until converged",
    "max_trials": "the most trials refinement goes to",
    "converged_gain": "a doubling that gains less than this (relative) ends refinement",
    "baselines": "measure the target's baselines too",
    "accuracy": "measure AP on the synthetic val split",
    "val_images": "images of the synthetic val split",
    "timeout_s": "seconds one candidate may take",
    "measure_budget_s": "seconds of timed runs per latency",
    "threads": "runtime threads",
    "tracker": "RPC tracker HOST:PORT for remote targets",
    "rpc_key": "RPC key of the remote device pool (default: the target's)",
    "cuda_arch": "GPU architecture for target cuda, e.g. sm_86 (default: sm_90)",
    "constraints": "table: max_latency_ms, min_ap, max_size_mb, max_memory_mb for the best point",
}
CONSTRAINT_KEYS = ("max_latency_ms", "min_ap", "max_size_mb", "max_memory_mb")


@dataclass(frozen=True)
class JobConfig:
    """One model on one target, searched every night."""

    model: str
    target: str
    input_size: str | None = None
    output: str | None = None
    space: str | None = None
    prune: tuple[float, ...] | None = None
    quant: tuple[str, ...] | None = None
    schedules: tuple[str, ...] | None = None
    trials: int | None = None
    time_budget_min: float | None = None
    remeasure: int = 2
    refine: bool = True
    max_trials: int = 1024
    converged_gain: float = 0.03
    baselines: bool = True
    accuracy: bool = True
    val_images: int = 100
    timeout_s: float = 3600.0
    measure_budget_s: float = 10.0
    threads: int | None = None
    tracker: str | None = None
    rpc_key: str | None = None
    cuda_arch: str | None = None
    constraints: tuple[tuple[str, float], ...] = ()

    @property
    def name(self) -> str:
        """How the job is known from night to night (reports, regressions)."""
        return f"{self.model}@{self.target}"

    def constraint(self, key: str) -> float | None:
        return dict(self.constraints).get(key)


@dataclass(frozen=True)
class NightlyConfig:
    name: str
    jobs: tuple[JobConfig, ...]
    log_dir: str = "logs/nightly"
    db: str | None = None
    reports: str | None = None
    latency_threshold: float = 0.10
    #: the relative slowdown that counts when either night's figure was flagged noisy
    #: (the larger of this and ``latency_threshold`` applies)
    noisy_latency_threshold: float = 1.0
    ap_threshold: float = 0.01
    #: seconds without a heartbeat after which another worker takes a claimed item over
    lease_s: float = 600.0
    source: str = ""
    digest: str = field(default="", compare=False)

    @property
    def db_url(self) -> str:
        from pose_tuner.store.db import default_url

        return self.db or default_url(self.log_dir)

    @property
    def reports_dir(self) -> str:
        return self.reports or os.path.join(self.log_dir, "reports")

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("digest")
        d.pop("source")
        return d


def _job(raw: dict, defaults: dict, where: str) -> JobConfig:
    data = {**defaults, **raw}
    unknown = sorted(set(data) - set(JOB_KEYS))
    if unknown:
        raise NightlyConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(JOB_KEYS)}")
    for req in ("model", "target"):
        if not isinstance(data.get(req), str) or not data[req]:
            raise NightlyConfigError(f"{where}: '{req}' is required ({JOB_KEYS[req]})")
    kw: dict = {"model": data["model"], "target": data["target"]}
    try:
        for k in ("input_size", "output", "space", "tracker", "rpc_key", "cuda_arch"):
            if k in data:
                kw[k] = str(data[k])
        if "cuda_arch" in kw:
            from pose_tuner.hardware import targets_with_option
            from pose_tuner.hardware.cuda import valid_arch

            takes = targets_with_option("arch")
            if kw["target"] not in takes or not valid_arch(kw["cuda_arch"]):
                raise ValueError(f"'cuda_arch' is for target {' or '.join(takes)}, like "
                                 f"\"sm_86\"; got {kw['cuda_arch']!r} for target "
                                 f"{kw['target']!r}")
        if "prune" in data:
            kw["prune"] = tuple(float(v) for v in data["prune"])
        for k in ("quant", "schedules"):
            if k in data:
                if isinstance(data[k], str):
                    raise TypeError(f"'{k}' must be a list, like [\"fp32\", \"int8\"]")
                kw[k] = tuple(str(v) for v in data[k])
        for k in ("trials", "remeasure", "val_images", "threads", "max_trials"):
            if k in data:
                kw[k] = int(data[k])
        for k in ("time_budget_min", "timeout_s", "measure_budget_s", "converged_gain"):
            if k in data:
                kw[k] = float(data[k])
        for k in ("baselines", "accuracy", "refine"):
            if k in data:
                if not isinstance(data[k], bool):
                    raise TypeError(f"'{k}' must be true or false")
                kw[k] = data[k]
        cons = data.get("constraints", {})
        if not isinstance(cons, dict) or set(cons) - set(CONSTRAINT_KEYS):
            raise TypeError(f"'constraints' takes {', '.join(CONSTRAINT_KEYS)}")
        kw["constraints"] = tuple(sorted((k, float(v)) for k, v in cons.items()))
    except (TypeError, ValueError) as exc:
        raise NightlyConfigError(f"{where}: {exc}") from None
    for k in ("remeasure", "val_images"):
        if kw.get(k, 0) < 0:
            raise NightlyConfigError(f"{where}: '{k}' must be >= 0")
    if kw.get("time_budget_min") is not None and kw["time_budget_min"] <= 0:
        raise NightlyConfigError(f"{where}: 'time_budget_min' must be > 0")
    return JobConfig(**kw)


def load_config(path: str) -> NightlyConfig:
    """Read and check a nightly configuration; errors name the file and the key."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise NightlyConfigError(f"no nightly configuration at {path}; start from "
                                 "docs/nightly.example.toml") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise NightlyConfigError(f"{path}: not a readable TOML file: {exc}") from None
    known = {"name", "db", "log_dir", "reports", "regression", "defaults", "jobs", "lease_s"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise NightlyConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; known: "
                                 f"{', '.join(sorted(known))}")
    jobs_raw = data.get("jobs")
    if not isinstance(jobs_raw, list) or not jobs_raw:
        raise NightlyConfigError(f"{path}: no jobs; add at least one [[jobs]] table with "
                                 "model and target")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise NightlyConfigError(f"{path}: [defaults] must be a table")
    jobs = tuple(_job(j, defaults, f"{path}: jobs[{i}]") for i, j in enumerate(jobs_raw))
    names = [j.name for j in jobs]
    if len(set(names)) != len(names):
        raise NightlyConfigError(f"{path}: the same model@target appears twice: "
                                 f"{sorted({n for n in names if names.count(n) > 1})}")
    reg = data.get("regression", {})
    if not isinstance(reg, dict) or set(reg) - {"latency", "noisy_latency", "ap"}:
        raise NightlyConfigError(f"{path}: [regression] takes latency (relative, e.g. 0.1), "
                                 "noisy_latency (relative, for figures flagged noisy, e.g. "
                                 "1.0) and ap (absolute, e.g. 0.01)")
    name = data.get("name") or os.path.splitext(os.path.basename(path))[0]
    cfg = NightlyConfig(
        name=str(name), jobs=jobs, log_dir=str(data.get("log_dir", "logs/nightly")),
        db=data.get("db"), reports=data.get("reports"),
        latency_threshold=float(reg.get("latency", 0.10)),
        noisy_latency_threshold=float(reg.get("noisy_latency", 1.0)), ap_threshold=float(reg.get("ap", 0.01)),
        lease_s=float(data.get("lease_s", 600.0)), source=os.path.abspath(path),
    )
    if (cfg.latency_threshold <= 0 or cfg.noisy_latency_threshold <= 0
            or cfg.ap_threshold < 0 or cfg.lease_s < 30):
        raise NightlyConfigError(f"{path}: regression thresholds must be positive and "
                                 "lease_s >= 30")
    # the work a night does (not where this worker keeps its files): workers with their
    # own log_dir or --db join the same night
    work = {k: v for k, v in cfg.as_dict().items() if k not in ("log_dir", "db", "reports", "lease_s")}
    digest = hashlib.sha256(json.dumps(work, sort_keys=True).encode()).hexdigest()[:12]
    return NightlyConfig(**{**cfg.__dict__, "digest": digest})
