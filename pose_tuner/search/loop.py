"""The search loop: every point of the space, built and measured, stored in the database.

For each point of the search space (cheapest first): reuse its row if the database has
it (unless ``force``), else run the candidate in a child process with a timeout
(:mod:`pose_tuner.jobs.executor`), and store what came back, failed or not. One failed candidate
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

from pose_tuner.search import SearchPoint, SearchSpace, load_space
from pose_tuner.devices import availability
from pose_tuner.hardware import get_target

from pose_tuner import build_version
from pose_tuner.store.db import ParetoDB
from pose_tuner.failures import MEASURE_AGAIN, ErrorKind, kind_of
from pose_tuner.jobs.executor import run_in_child, run_on_device
from pose_tuner.jobs.specs import (AccuracyJob, BaselineJob, CandidateJob, JobResult,
                                   VariantJob)
from pose_tuner.models.source import PreparedModel, prepare_model
from pose_tuner.store.pareto import pareto_front
from pose_tuner.store.records import ACCURACY_FIELDS, CandidateRecord
from pose_tuner.store.report import fmt_seconds

if TYPE_CHECKING:
    from pose_tuner.accuracy.benchmark import AccuracySpec

DEFAULT_SPACE = load_space()


class SearchError(RuntimeError):
    """The search cannot start; the message says why and how to fix it."""


@dataclass(frozen=True)
class SearchConfig:
    target: str = "x86"
    model: str = "shufflenetv2_fpn"
    input_size: tuple[int, int] | None = None
    #: the ONNX output(s) that are the pose head, where several outputs could be
    output: str | None = None
    space: SearchSpace = field(default=DEFAULT_SPACE)
    log_dir: str = "logs"
    db_url: str | None = None
    force: bool = False
    timeout_s: float = 3600.0
    measure_budget_s: float = 10.0
    threads: int | None = None
    tracker: str | None = None
    #: the RPC key of a remote target's device pool (None: the target's default)
    rpc_key: str | None = None
    #: the GPU architecture of the cuda target, e.g. "sm_86" (None: the target's sm_90)
    cuda_arch: str | None = None
    baselines: bool = True
    #: data accuracy is measured on (None: latency only)
    accuracy: "AccuracySpec | None" = None
    #: stop starting candidates after this many seconds (None: no limit)
    time_budget_s: float | None = None
    #: grid (every point, cheapest first) | nsga2 | tpe (Optuna multi-objective samplers)
    strategy: str = "grid"
    #: points an Optuna strategy builds and measures (None: half of the grid, at least 4)
    n_trials: int | None = None
    #: seed of the Optuna sampler
    seed: int = 0
    #: what an Optuna strategy optimises: ap and latency, plus size if listed
    objectives: tuple[str, ...] = ("ap", "latency")


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


@dataclass(frozen=True)
class ModelVariant:
    """The fp32 model one pruning ratio builds from: the model itself at ratio 0, else its
    pruned (and maybe fine-tuned) export; ``error`` says why it could not be made."""

    prune_ratio: float
    tag: str
    onnx_path: str | None
    param_count: int | None
    flops: float | None
    finetune_steps: int | None
    error: str | None = None

    @classmethod
    def unpruned(cls, model: PreparedModel) -> "ModelVariant":
        return cls(0.0, "", model.onnx_path, model.param_count, model.flops, None)


def make_variant(cfg: SearchConfig, model: PreparedModel, ratio: float,
                 say: Callable[[str], None], run_root: str) -> ModelVariant:
    """The variant of ``model`` at pruning ``ratio``: pruned in a child process (torch-
    pruning), exported to ONNX under ``log_dir/models`` and reused from there next time."""
    if ratio == 0:
        return ModelVariant.unpruned(model)
    opts = cfg.space.pruning
    zoo = model.source == "zoo"
    tag, method = opts.tag_for(zoo), opts.method(zoo)
    base = os.path.join(cfg.log_dir, "models",
                        f"{model.name}-{model.model_hash}-p{ratio:.2f}-{tag}")
    info_path = base + ".json"
    if os.path.exists(info_path) and os.path.exists(base + ".onnx") and not cfg.force:
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
        return ModelVariant(ratio, tag, base + ".onnx", info["param_count"], info["flops"],
                            info["finetune_steps"])
    head = f"[variant p{ratio:.2f}]"
    if model.source == "onnx":
        return ModelVariant(ratio, tag, None, None, None, None,
                            "pruning needs the PyTorch model (a zoo name or module:factory); an "
                            "ONNX file can only be searched at pruning ratio 0")
    say(f"{head}: start")
    h, w = model.input_shape[2:]
    acc = cfg.accuracy
    job = VariantJob(
        model=cfg.model, input_size=(h, w), prune_ratio=ratio, importance=opts.importance,
        round_to=opts.round_to, finetune_steps=opts.finetune_steps, recovery=method,
        # distillation learns on, and AP before / after recovery is measured on, the
        # accuracy data (the user's --coco-ann / --coco-images, else the synthetic split)
        eval_ann=acc.ann_path if acc else None, eval_images=acc.images_dir if acc else None,
        eval_max_people=acc.max_people if acc else None,
        data_dir=os.path.join(cfg.log_dir, "data", "synthetic"), out_path=base + ".onnx")
    result = run_in_child(
        job, cfg.timeout_s, os.path.join(run_root, f"variant-p{ratio:.2f}-{tag}.log"),
        on_progress=lambda m: say(f"{head}: {m}"), threads=cfg.threads or os.cpu_count() or 1)
    if not result.ok:
        say(f"{head}: FAILED: {result.error}")
        return ModelVariant(ratio, tag, None, None, None, None, result.error or "failed")
    info = {"param_count": result.param_count, "flops": result.flops,
            "finetune_steps": result.finetune_steps}
    with open(info_path, "w", encoding="utf-8") as f:
        json.dump({**info, "recovery": method, "ap_unpruned": result.ap_unpruned,
                   "ap_pruned": result.ap_pruned, "ap_recovered": result.ap_recovered}, f)
    return ModelVariant(ratio, tag, base + ".onnx", **info)


def provenance(target, tvm_target: dict) -> dict:
    """What every record says about where it was built and measured."""
    return {"target_json": json.dumps(tvm_target, sort_keys=True),
            "device": availability.device_identity(target),
            "emulated": availability.is_emulated(target)}


def _record(key: dict, model: PreparedModel, result: JobResult, t0: float,
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
        **{k: getattr(r, k) for k in ACCURACY_FIELDS},
        model_size_bytes=r.model_size_bytes, param_count=variant.param_count,
        flops=variant.flops,
        artifact_path=os.path.abspath(r.artifact_path) if r.artifact_path else None,
        tune_trials_run=r.tune_trials_run, tune_seconds=r.tune_seconds,
        build_seconds=r.build_seconds, wall_seconds=time.time() - t0,
        tvm_version=r.tvm_version, tuner_version=build_version(), host=platform.node(),
    )


def accuracy_pass(cfg: SearchConfig, model: PreparedModel, db: ParetoDB,
                  records: list[CandidateRecord], threads: int, say: Callable[[str], None],
                  run_root: str, device: str) -> list[CandidateRecord]:
    """Measure AP/PCK once per (pruning, quantization) variant on its fastest TVM build and
    give it to every schedule point of that variant: schedules change speed, not
    predictions (the numerical check guards that). ``device`` is where the target's
    artifacts run (``Target.device``). A failed evaluation fails the variant's
    points with the reason."""
    from dataclasses import replace

    ident = cfg.accuracy.identity
    groups: dict[tuple, list[CandidateRecord]] = {}
    for r in records:
        if r.ok and r.backend == "tvm":
            groups.setdefault((r.prune_ratio, r.quant, r.variant), []).append(r)
    updated = {}
    for (prune, quant, _variant), recs in groups.items():
        if not cfg.force and all(r.accuracy_dataset == ident and r.ap is not None for r in recs):
            continue
        done = next((r for r in recs if r.accuracy_dataset == ident and r.ap is not None), None)
        head = f"[accuracy] p{prune:.2f}-{quant}"
        if done is not None and not cfg.force:
            result = JobResult(status="ok", **{k: getattr(done, k) for k in ACCURACY_FIELDS})
        else:
            from pose_tuner.jobs.worker import host_artifact

            fastest = min(recs, key=lambda r: r.latency_median_ms)
            # a remote device's candidate is scored on its host build (same variant)
            path = fastest.artifact_path
            if path and os.path.isfile(host_artifact(path)):
                path = host_artifact(path)
            say(f"{head}: evaluating {fastest.schedule_label} build on {ident}")
            t0 = time.time()
            job = AccuracyJob(
                artifact_path=path, input_shape=model.input_shape, accuracy=cfg.accuracy,
                # the artifact runs where its target does; a host build on the CPU
                device=device if path == fastest.artifact_path else "cpu")
            result = run_in_child(
                job, cfg.timeout_s, os.path.join(run_root, f"accuracy-p{prune:.2f}-{quant}.log"),
                on_progress=lambda m, h=head: say(f"{h}: {m}"), threads=threads)
            if result.ok:
                say(f"{head}: AP {result.ap:.3f}, PCK {result.pck:.3f} "
                    f"({result.accuracy_people} people, {fmt_seconds(time.time() - t0)})")
            else:
                say(f"{head}: FAILED: {result.error}")
        for r in recs:
            if result.ok:
                new = replace(r, **{k: getattr(result, k) for k in ACCURACY_FIELDS})
            else:
                new = replace(r, status="failed", error=result.error,
                              error_kind=result.error_kind.value)
            updated[r.id] = db.upsert(new)
    return [updated.get(r.id, r) for r in records]


class _PointRunner:
    """Builds and measures search points one at a time (reusing database rows), keeping
    what it did; shared by the grid and the Optuna strategies."""

    def __init__(self, cfg, db, model, target, tvm_target, threads, tun_dir, run_root, art_root,
                 say, t_start, n_points):
        self.cfg, self.db, self.model, self.target = cfg, db, model, target
        self.tvm_target, self.threads, self.tun_dir = tvm_target, threads, tun_dir
        self.run_root, self.art_root, self.say = run_root, art_root, say
        self.t_start, self.n_points = t_start, n_points
        self.target_config = target_digest(tvm_target)
        self.provenance = provenance(target, tvm_target)
        #: where a remote target's devices are (None: measured on this machine)
        self.rpc = target.rpc_spec()
        self.ran = self.reused = self.baselines_ran = 0
        self.run_times: list[float] = []
        self.variants: dict[float, ModelVariant] = {}
        self.done: dict[SearchPoint, CandidateRecord] = {}

    @property
    def records(self) -> list[CandidateRecord]:
        """Every point evaluated so far, in evaluation order."""
        return list(self.done.values())

    def out_of_time(self) -> bool:
        b = self.cfg.time_budget_s
        return b is not None and time.time() - self.t_start > b

    def point_key(self, point: SearchPoint) -> dict:
        """The database key of ``point`` for this model and target configuration."""
        return dict(model_hash=self.model.model_hash, target=self.target.name, backend="tvm",
                    prune_ratio=point.prune_ratio, quant=point.quant, schedule=point.schedule,
                    trials=point.trials,
                    variant=self.cfg.space.variant_tag(point, self.model.source == "zoo"),
                    target_config=self.target_config)

    def evaluate(self, point: SearchPoint, build: bool = True,
                 force: bool | None = None) -> CandidateRecord | None:
        """The point's record: from the database, else built and measured now; None when
        the time budget is spent (the point was not started), or when ``build`` is False
        and the database does not have it. ``force`` overrides ``cfg.force``."""
        force = self.cfg.force if force is None else force
        if point in self.done and not force:
            return self.done[point]
        cfg, model, say = self.cfg, self.model, self.say
        head = f"[{len(self.done) + 1}/{self.n_points}] {point.key}"
        key = self.point_key(point)
        tag = key["variant"]
        old = self.db.find(**key)
        if old is not None and not force and lost_device(old):
            say(f"{head}: its device dropped last time: measuring again")
        elif old is not None and not force and is_stale(old):
            say(f"{head}: stored by pose-tuner {old.tuner_version or '?'} / TVM "
                f"{old.tvm_version or '?'}: measuring again")
        elif old is not None and not force:
            say(f"{head}: reused from the database ({old.status}"
                + (f", {old.latency_median_ms:.2f} ms" if old.latency_median_ms else "") + ")")
            self.reused += 1
            self.done[point] = old
            return old
        if not build or self.out_of_time():
            return None
        refusal = self.target.refusal(point.quant)
        if refusal:  # refused before any work
            rec = self.db.upsert(_record(
                key, model, JobResult("skipped", refusal, ErrorKind.REFUSED), time.time(),
                prov=self.provenance))
            self.done[point] = rec
            say(f"{head}: skipped: {refusal}")
            return rec
        t0 = time.time()
        remaining = self.n_points - len(self.done)
        eta = (sum(self.run_times) / len(self.run_times) * remaining) if self.run_times else None
        say(f"{head}: start (elapsed {fmt_seconds(t0 - self.t_start)}"
            + (f", eta {fmt_seconds(eta)}" if eta is not None else "") + ")")
        if point.prune_ratio not in self.variants:
            self.variants[point.prune_ratio] = make_variant(cfg, model, point.prune_ratio, say,
                                                            self.run_root)
        variant = self.variants[point.prune_ratio]
        if variant.error:
            result = JobResult.failure(ErrorKind.VARIANT, f"pruning: {variant.error}")
        else:
            name = f"{point.key}{_tag_suffix(tag)}"
            int8 = point.quant == "int8"
            job = CandidateJob(
                onnx_path=variant.onnx_path, input_shape=model.input_shape,
                tvm_target=self.tvm_target, prune_ratio=point.prune_ratio, quant=point.quant,
                schedule=point.schedule, trials=point.trials, tuning_dir=self.tun_dir,
                artifact_path=os.path.join(self.art_root, f"{name}.so"),
                measure_budget_s=cfg.measure_budget_s, int8_kernel=self.target.int8_kernel,
                int8_weight_bits=self.target.int8_weight_bits,
                calib_npy=_calibration_file(cfg, model, self.run_root) if int8 else None,
                calibration=cfg.space.quantization.calibration, device=self.target.device,
                rpc=self.rpc)
            result = run_on_device(
                job, cfg.timeout_s, os.path.join(self.run_root, f"{name}.log"),
                on_progress=lambda m, h=head, t=t0: say(f"{h}: {m} [{fmt_seconds(time.time() - t)}]"),
                threads=self.threads, on_retry=lambda m, h=head: say(f"{h}: {m}"),
            )
        rec = self.db.upsert(_record(key, model, result, t0, variant, self.provenance))
        self.ran += 1
        self.run_times.append(time.time() - t0)
        self.done[point] = rec
        if rec.ok:
            say(f"{head}: ok, median {rec.latency_median_ms:.2f} ms, p90 {rec.latency_p90_ms:.2f} ms "
                f"({fmt_seconds(time.time() - t0)})")
        else:
            say(f"{head}: FAILED: {rec.error}")
        return rec

    def baselines(self, names: list[str] | None = None,
                  force: bool | None = None) -> list[CandidateRecord]:
        """The target's baselines (or ``names``) measured for this model with the same
        harness, or reused from the database; skipped ones keep their reason and are
        checked again next time. ``force`` overrides ``cfg.force``. Counts what it
        measured (or checked) in ``baselines_ran``."""
        from pose_tuner.baselines import BaselineUnavailable, get_baseline

        cfg, target, model, db = self.cfg, self.target, self.model, self.db
        config, prov = self.target_config, self.provenance
        force = cfg.force if force is None else force
        records = []
        names = list(target.baselines) if names is None else names
        for i, name in enumerate(names, 1):
            bl = get_baseline(name)
            head = f"[baseline {i}/{len(names)}] {name}"
            key = dict(model_hash=model.model_hash, target=target.name, backend=bl.backend,
                       prune_ratio=0.0, quant=bl.quant, schedule="vendor", trials=0,
                       target_config=config)
            old = db.find(**key)
            # a skipped baseline is checked again (cheap): the package or device may be there
            # now; one stored by another pose-tuner release is measured again
            if old is not None and not force and old.status != "skipped" and not is_stale(old) and (
                    cfg.accuracy is None or old.status != "ok"
                    or old.accuracy_dataset == cfg.accuracy.identity):
                self.say(f"{head}: reused from the database ({old.status})")
                records.append(old)
                continue
            t0 = time.time()
            self.baselines_ran += 1
            try:
                bl.check_available(target)
            except BaselineUnavailable as exc:
                self.say(f"{head}: skipped: {exc}")
                records.append(db.upsert(_record(
                    key, model, JobResult("skipped", str(exc), ErrorKind.UNAVAILABLE), t0,
                    prov=prov)))
                continue
            calib_path = _calibration_file(cfg, model, self.run_root) if bl.quant == "int8" else None
            job = BaselineJob(
                baseline=name, target=target.name, onnx_path=model.onnx_path,
                input_shape=model.input_shape, work_dir=os.path.join(self.art_root, name),
                calib_npy=calib_path, threads=self.threads,
                measure_budget_s=cfg.measure_budget_s, accuracy=cfg.accuracy, rpc=self.rpc)
            self.say(f"{head}: start")
            result = run_on_device(
                job, cfg.timeout_s, os.path.join(self.run_root, f"{name}.log"),
                on_progress=lambda m, h=head, t=t0: self.say(
                    f"{h}: {m} [{fmt_seconds(time.time() - t)}]"),
                threads=self.threads, on_retry=lambda m, h=head: self.say(f"{h}: {m}"),
            )
            rec = db.upsert(_record(key, model, result, t0, prov=prov))
            records.append(rec)
            if rec.ok:
                self.say(f"{head}: ok, median {rec.latency_median_ms:.2f} ms, "
                         f"p90 {rec.latency_p90_ms:.2f} ms")
            else:
                self.say(f"{head}: FAILED: {rec.error}")
        return records

    def with_accuracy(self, rec: CandidateRecord) -> CandidateRecord:
        """``rec`` with AP/PCK (measured now on this build if its variant has none yet)."""
        if self.cfg.accuracy is None or not rec.ok or rec.ap is not None:
            return rec
        same = [r for r in self.db.records(target=rec.target, model_hash=rec.model_hash,
                                           backends=["tvm"])
                if r.ok and (r.prune_ratio, r.quant, r.variant) == (rec.prune_ratio, rec.quant,
                                                                     rec.variant)]
        # measure on this build unless another build of the variant has AP already
        measured = [r for r in same if r.ap is not None and r.id != rec.id]
        (new,) = [r for r in accuracy_pass(self.cfg, self.model, self.db, [rec] + measured,
                                           self.threads, self.say, self.run_root,
                                           self.target.device)
                  if r.id == rec.id]
        for p, r in self.done.items():
            if r.id == new.id:
                self.done[p] = new
        return new


def _tag_suffix(tag: str) -> str:
    """A file-name suffix for a variant tag ('' for the plain model)."""
    return "-" + tag.replace("/", "-") if tag else ""


def _calibration_file(cfg: SearchConfig, model: PreparedModel, run_root: str) -> str:
    """The int8 calibration crops (.npy), made once per run folder and size."""
    import numpy as np

    from pose_tuner.accuracy.calibration import calibration_crops

    n = cfg.space.quantization.calibration_images
    pre = cfg.accuracy.preprocess if cfg.accuracy is not None else None
    digest = hashlib.sha256(repr(pre).encode()).hexdigest()[:8]
    path = os.path.join(run_root, f"calibration-crops-n{n}-{digest}.npy")
    if not os.path.exists(path):
        os.makedirs(run_root, exist_ok=True)
        np.save(path, calibration_crops(tuple(model.input_shape[2:]), n, cfg.log_dir, pre))
    return path


def open_search(cfg: SearchConfig, say: Callable[[str], None] = print,
                db: ParetoDB | None = None, n_points: int | None = None,
                t_start: float | None = None) -> "_PointRunner":
    """Everything a search of ``cfg`` needs before its first point: the target (checked),
    the database, the model (exported and checked) and a point runner over them."""
    t_start = time.time() if t_start is None else t_start
    target = get_target(cfg.target, tracker=cfg.tracker, rpc_key=cfg.rpc_key, arch=cfg.cuda_arch)
    availability.check_available(target)  # fails fast, before any work, for an unattached device
    check_log_dir(cfg.log_dir)
    from pose_tuner.store.db import default_url

    db = db or ParetoDB(cfg.db_url or default_url(cfg.log_dir))
    n_points = len(cfg.space.points()) if n_points is None else n_points
    tvm_target = target.tvm_target()
    threads = cfg.threads or target.num_threads()
    if "num-cores" in tvm_target:
        tvm_target = {**tvm_target, "num-cores": threads}

    say(f"model {cfg.model}: exporting and checking")
    model = prepare_model(cfg.model, cfg.input_size, os.path.join(cfg.log_dir, "models"),
                          output=cfg.output)
    say(f"model {model.name}: {model.cleanup} (hash {model.cleaned_hash})")
    say(f"model {model.name} ({model.source}, {model.model_hash}), input {model.input_shape_text}, "
        f"output {model.output_shape}; target {target.name} {json.dumps(tvm_target)}; "
        f"{n_points} candidates")

    tun_dir = tuning_dir(cfg.log_dir, target.name, tvm_target)
    run_root = os.path.join(cfg.log_dir, "runs", target.name, f"{model.name}-{model.model_hash}")
    art_root = os.path.join(cfg.log_dir, "artifacts", target.name, f"{model.name}-{model.model_hash}")
    return _PointRunner(cfg, db, model, target, tvm_target, threads, tun_dir, run_root,
                        art_root, say, t_start, n_points)


def runnable_points(points: list[SearchPoint], target, say: Callable[[str], None] = print
                    ) -> list[SearchPoint]:
    """The points ``target`` can run; the others are dropped, and said so once per mode."""
    keep, dropped = [], {}
    for point in points:
        reason = target.refusal(point.quant)
        if reason:
            dropped.setdefault(reason, []).append(point.key)
        else:
            keep.append(point)
    for reason, keys in dropped.items():
        say(f"search space: {len(keys)} candidate(s) dropped: {reason}")
    return keep


def run_search(cfg: SearchConfig, say: Callable[[str], None] = print,
               db: ParetoDB | None = None) -> SearchOutcome:
    t_start = time.time()
    points = cfg.space.points()
    runner = open_search(cfg, say, db, len(points), t_start)
    db, model, target = runner.db, runner.model, runner.target
    points = runnable_points(points, target, say)
    runner.n_points = len(points)
    skipped: list[SearchPoint] = []
    if cfg.strategy == "grid":
        for point in points:
            if runner.evaluate(point) is None:
                skipped.append(point)
    else:
        from pose_tuner.search.strategy import optuna_search

        skipped = optuna_search(cfg, points, runner, say)
    records, ran, reused = runner.records, runner.ran, runner.reused
    if skipped:
        say(f"time budget spent: {len(skipped)} candidate(s) not started "
            f"({', '.join(p.key for p in skipped)}); run again to continue")
    if cfg.accuracy is not None:
        records = accuracy_pass(cfg, model, db, records, runner.threads, say, runner.run_root,
                                runner.target.device)
    if cfg.baselines:
        records += runner.baselines()
    front = pareto_front(db.records(target=target.name, model_hash=model.model_hash))
    return SearchOutcome(model, records, front, ran, reused, time.time() - t_start)
