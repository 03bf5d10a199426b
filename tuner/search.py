"""The search loop: every point of the space, built and measured, stored in the database.

For each point of the search space (cheapest first): reuse its row if the database has
it (unless ``force``), else run the candidate in a child process with a timeout
(:mod:`tuner.executor`), and store what came back, failed or not. One failed candidate
never stops the search.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from search_space import SearchSpace
from targets import get_target

from . import __version__
from .db import ParetoDB
from .executor import run_in_child
from .model_source import PreparedModel, prepare_model
from .pareto import pareto_front
from .records import ACCURACY_FIELDS, CandidateRecord
from .report import fmt_seconds

if TYPE_CHECKING:
    from .accuracy.benchmark import AccuracySpec

DEFAULT_SPACE = SearchSpace(schedules=(("default", 0), ("metaschedule", 64)))


class SearchError(RuntimeError):
    """The search cannot start; the message says why and how to fix it."""


@dataclass(frozen=True)
class SearchConfig:
    target: str = "x86-vnni"
    model: str = "mobilenetv2_deconv"
    input_size: tuple[int, int] | None = None
    space: SearchSpace = field(default=DEFAULT_SPACE)
    log_dir: str = "logs"
    db_url: str | None = None
    force: bool = False
    timeout_s: float = 3600.0
    measure_budget_s: float = 10.0
    threads: int | None = None
    tracker: str | None = None
    baselines: bool = True
    #: data accuracy is measured on (None: latency only)
    accuracy: "AccuracySpec | None" = None


@dataclass(frozen=True)
class SearchOutcome:
    model: PreparedModel
    records: list[CandidateRecord]
    front: list[CandidateRecord]
    ran: int
    reused: int
    seconds: float


def check_log_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise SearchError(f"cannot create log directory {path}: {exc.strerror}; "
                          "pass --log-dir with a writable place") from None
    if not os.access(path, os.W_OK):
        raise SearchError(f"log directory {path} is not writable; pass --log-dir with a writable place")


def tuning_dir(log_dir: str, target_name: str, tvm_target: dict) -> str:
    digest = hashlib.sha256(json.dumps(tvm_target, sort_keys=True).encode()).hexdigest()[:8]
    return os.path.join(log_dir, "tuning", f"{target_name}-{digest}")


def _record(key: dict, model: PreparedModel, result: dict, t0: float) -> CandidateRecord:
    """A database record from a child's result dict (failed or not)."""
    return CandidateRecord(
        **key, model_name=model.name, status=result.get("status", "failed"),
        error=result.get("error"), input_shape=model.input_shape_text,
        model_path=model.onnx_path,
        latency_median_ms=result.get("latency_median_ms"),
        latency_p90_ms=result.get("latency_p90_ms"),
        latency_mean_ms=result.get("latency_mean_ms"),
        latency_std_ms=result.get("latency_std_ms"), latency_runs=result.get("latency_runs"),
        max_abs_err=result.get("max_abs_err"), rel_err=result.get("rel_err"),
        **{k: result.get(k) for k in ACCURACY_FIELDS},
        model_size_bytes=result.get("model_size_bytes"), param_count=model.param_count,
        flops=model.flops,
        artifact_path=os.path.abspath(result["artifact_path"]) if result.get("artifact_path") else None,
        tune_trials_run=result.get("tune_trials_run"), tune_seconds=result.get("tune_seconds"),
        build_seconds=result.get("build_seconds"), wall_seconds=time.time() - t0,
        tvm_version=result.get("tvm_version"), tuner_version=__version__, host=platform.node(),
    )


def run_baselines(cfg: SearchConfig, target, model: PreparedModel, db: ParetoDB, threads: int,
                  say: Callable[[str], None], run_root: str, art_root: str) -> list[CandidateRecord]:
    """Measure the target's baselines with the same harness; skipped ones keep their reason."""
    import numpy as np

    from targets.baselines import BaselineUnavailable, get_baseline

    from .calibration import calibration_inputs

    records = []
    names = list(target.baselines)
    calib_path = os.path.join(run_root, "calibration.npy")
    for i, name in enumerate(names, 1):
        bl = get_baseline(name)
        head = f"[baseline {i}/{len(names)}] {name}"
        key = dict(model_hash=model.model_hash, target=target.name, backend=bl.backend,
                   prune_ratio=0.0, quant=bl.quant, schedule="vendor", trials=0)
        old = db.find(**key)
        if old is not None and not cfg.force and (
                cfg.accuracy is None or old.status != "ok"
                or old.accuracy_dataset == cfg.accuracy.identity):
            say(f"{head}: reused from the database ({old.status})")
            records.append(old)
            continue
        t0 = time.time()
        try:
            bl.check_available(target)
        except BaselineUnavailable as exc:
            say(f"{head}: skipped: {exc}")
            records.append(db.upsert(_record(key, model, {"status": "skipped", "error": str(exc)}, t0)))
            continue
        if not os.path.exists(calib_path):
            os.makedirs(run_root, exist_ok=True)
            np.save(calib_path, calibration_inputs(model))
        spec = {
            "kind": "baseline", "baseline": name, "target": target.name,
            "onnx_path": model.onnx_path, "input_shape": list(model.input_shape),
            "work_dir": os.path.join(art_root, name), "calib_npy": calib_path,
            "threads": threads, "measure_budget_s": cfg.measure_budget_s,
            "accuracy": cfg.accuracy.as_dict() if cfg.accuracy else None,
        }
        say(f"{head}: start")
        result = run_in_child(
            spec, cfg.timeout_s, os.path.join(run_root, f"{name}.log"),
            on_progress=lambda m, h=head, t=t0: say(f"{h}: {m} [{fmt_seconds(time.time() - t)}]"),
            threads=threads,
        )
        rec = db.upsert(_record(key, model, result, t0))
        records.append(rec)
        if rec.ok:
            say(f"{head}: ok, median {rec.latency_median_ms:.2f} ms, p90 {rec.latency_p90_ms:.2f} ms")
        else:
            say(f"{head}: FAILED: {rec.error}")
    return records


def accuracy_pass(cfg: SearchConfig, model: PreparedModel, db: ParetoDB,
                  records: list[CandidateRecord], threads: int, say: Callable[[str], None],
                  run_root: str) -> list[CandidateRecord]:
    """Measure AP/PCK once per (pruning, quantization) variant on its fastest TVM build and
    give it to every schedule point of that variant: schedules change speed, not
    predictions (the numerical check guards that). A failed evaluation fails the variant's
    points with the reason."""
    from dataclasses import replace

    ident = cfg.accuracy.identity
    groups: dict[tuple, list[CandidateRecord]] = {}
    for r in records:
        if r.ok and r.backend == "tvm":
            groups.setdefault((r.prune_ratio, r.quant), []).append(r)
    updated = {}
    for (prune, quant), recs in groups.items():
        if not cfg.force and all(r.accuracy_dataset == ident and r.ap is not None for r in recs):
            continue
        done = next((r for r in recs if r.accuracy_dataset == ident and r.ap is not None), None)
        head = f"[accuracy] p{prune:.2f}-{quant}"
        if done is not None and not cfg.force:
            result = {k: getattr(done, k) for k in ACCURACY_FIELDS}
        else:
            fastest = min(recs, key=lambda r: r.latency_median_ms)
            say(f"{head}: evaluating {fastest.schedule_label} build on {ident}")
            t0 = time.time()
            result = run_in_child(
                {"kind": "accuracy", "artifact_path": fastest.artifact_path,
                 "input_shape": list(model.input_shape), "accuracy": cfg.accuracy.as_dict()},
                cfg.timeout_s, os.path.join(run_root, f"accuracy-p{prune:.2f}-{quant}.log"),
                on_progress=lambda m, h=head: say(f"{h}: {m}"), threads=threads)
            if result.get("status") == "ok":
                say(f"{head}: AP {result['ap']:.3f}, PCK {result['pck']:.3f} "
                    f"({result['accuracy_people']} people, {fmt_seconds(time.time() - t0)})")
            else:
                say(f"{head}: FAILED: {result.get('error')}")
        for r in recs:
            if result.get("status", "ok") == "ok":
                new = replace(r, **{k: result[k] for k in ACCURACY_FIELDS})
            else:
                new = replace(r, status="failed", error=result.get("error"))
            updated[r.id] = db.upsert(new)
    return [updated.get(r.id, r) for r in records]


def run_search(cfg: SearchConfig, say: Callable[[str], None] = print,
               db: ParetoDB | None = None) -> SearchOutcome:
    t_start = time.time()
    target = get_target(cfg.target, tracker=cfg.tracker)
    target.check_available()  # fails fast, before any work, for an unattached device
    check_log_dir(cfg.log_dir)
    from .db import default_url

    db = db or ParetoDB(cfg.db_url or default_url(cfg.log_dir))
    points = cfg.space.points()
    tvm_target = target.tvm_target()
    threads = cfg.threads or target.num_threads()
    if "num-cores" in tvm_target:
        tvm_target = {**tvm_target, "num-cores": threads}

    say(f"model {cfg.model}: exporting and checking")
    model = prepare_model(cfg.model, cfg.input_size, os.path.join(cfg.log_dir, "models"))
    say(f"model {model.name} ({model.source}, {model.model_hash}), input {model.input_shape_text}, "
        f"heatmaps {model.output_shape}; target {target.name} {json.dumps(tvm_target)}; "
        f"{len(points)} candidates")

    tun_dir = tuning_dir(cfg.log_dir, target.name, tvm_target)
    run_root = os.path.join(cfg.log_dir, "runs", target.name, f"{model.name}-{model.model_hash}")
    art_root = os.path.join(cfg.log_dir, "artifacts", target.name, f"{model.name}-{model.model_hash}")
    records: list[CandidateRecord] = []
    ran = reused = 0
    run_times: list[float] = []
    for i, point in enumerate(points, 1):
        head = f"[{i}/{len(points)}] {point.key}"
        key = dict(model_hash=model.model_hash, target=target.name, backend="tvm",
                   prune_ratio=point.prune_ratio, quant=point.quant, schedule=point.schedule,
                   trials=point.trials)
        old = db.find(**key)
        if old is not None and not cfg.force:
            say(f"{head}: reused from the database ({old.status}"
                + (f", {old.latency_median_ms:.2f} ms" if old.latency_median_ms else "") + ")")
            records.append(old)
            reused += 1
            continue
        t0 = time.time()
        remaining = len(points) - i + 1
        eta = (sum(run_times) / len(run_times) * remaining) if run_times else None
        say(f"{head}: start (elapsed {fmt_seconds(t0 - t_start)}"
            + (f", eta {fmt_seconds(eta)}" if eta is not None else "") + ")")
        spec = {
            "onnx_path": model.onnx_path, "input_shape": list(model.input_shape),
            "tvm_target": tvm_target,
            "point": {"prune_ratio": point.prune_ratio, "quant": point.quant,
                      "schedule": point.schedule, "trials": point.trials},
            "tuning_dir": tun_dir, "artifact_path": os.path.join(art_root, f"{point.key}.so"),
            "measure_budget_s": cfg.measure_budget_s,
        }
        result = run_in_child(
            spec, cfg.timeout_s, os.path.join(run_root, f"{point.key}.log"),
            on_progress=lambda m, h=head, t=t0: say(f"{h}: {m} [{fmt_seconds(time.time() - t)}]"),
            threads=threads,
        )
        rec = _record(key, model, result, t0)
        rec = db.upsert(rec)
        records.append(rec)
        ran += 1
        run_times.append(time.time() - t0)
        if rec.ok:
            say(f"{head}: ok, median {rec.latency_median_ms:.2f} ms, p90 {rec.latency_p90_ms:.2f} ms "
                f"({fmt_seconds(time.time() - t0)})")
        else:
            say(f"{head}: FAILED: {rec.error}")
    if cfg.accuracy is not None:
        records = accuracy_pass(cfg, model, db, records, threads, say, run_root)
    if cfg.baselines:
        records += run_baselines(cfg, target, model, db, threads, say, run_root, art_root)
    front = pareto_front(db.records(target=target.name, model_hash=model.model_hash))
    return SearchOutcome(model, records, front, ran, reused, time.time() - t_start)
