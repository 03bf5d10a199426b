"""Building and measuring points one at a time, reusing the database's rows.

:class:`PointRunner` is what every strategy drives (the grid walks the space with it, the
Optuna samplers ask it for the points they pick); :func:`accuracy_pass` gives each
variant its AP, measured once on its fastest build.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from pose_tuner.failures import ErrorKind, kind_of
from pose_tuner.jobs.executor import run_in_child, run_on_device
from pose_tuner.jobs.specs import AccuracyJob, BaselineJob, CandidateJob, JobResult
from pose_tuner.models.source import PreparedModel
from pose_tuner.search.config import SearchConfig
from pose_tuner.search.rows import (is_stale, lost_device, provenance, record_from,
                                    target_digest)
from pose_tuner.search.space import SearchPoint
from pose_tuner.search.variants import (ModelVariant, calibration_file, make_variant,
                                        tag_suffix)
from pose_tuner.store.db import ParetoDB
from pose_tuner.store.records import ACCURACY_FIELDS, CandidateRecord
from pose_tuner.store.report import fmt_seconds

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


class PointRunner:
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
        if self._reusable(old, head, force):
            self.reused += 1
            self.done[point] = old
            return old
        if not build or self.out_of_time():
            return None
        refusal = self.target.refusal(point.quant)
        if refusal:  # refused before any work
            rec = self._store(key, JobResult("skipped", refusal, ErrorKind.REFUSED), time.time(),
                              head)
            self.done[point] = rec
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
            name = f"{point.key}{tag_suffix(tag)}"
            int8 = point.quant == "int8"
            job = CandidateJob(
                onnx_path=variant.onnx_path, input_shape=model.input_shape,
                tvm_target=self.tvm_target, prune_ratio=point.prune_ratio, quant=point.quant,
                schedule=point.schedule, trials=point.trials, tuning_dir=self.tun_dir,
                artifact_path=os.path.join(self.art_root, f"{name}.so"),
                measure_budget_s=cfg.measure_budget_s, int8_kernel=self.target.int8_kernel,
                int8_weight_bits=self.target.int8_weight_bits,
                calib_npy=calibration_file(cfg, model, self.run_root) if int8 else None,
                calibration=cfg.space.quantization.calibration, device=self.target.device,
                rpc=self.rpc)
            result = self._run(job, name, head, t0)
        rec = self._store(key, result, t0, head, variant)
        self.ran += 1
        self.run_times.append(time.time() - t0)
        self.done[point] = rec
        return rec

    def skip(self, point: SearchPoint, reason: str) -> CandidateRecord:
        """Store ``point`` as skipped because it cannot reach the front (a strategy's
        choice, said by the strategy): a later search that asks for it measures it."""
        rec = self.db.upsert(record_from(self.point_key(point), self.model,
                                         JobResult("skipped", reason, ErrorKind.DOMINATED),
                                         time.time(), self.variants.get(point.prune_ratio),
                                         self.provenance))
        self.done[point] = rec
        return rec

    def _reusable(self, old: CandidateRecord | None, head: str, force: bool,
                  recheck_skipped: bool = False) -> bool:
        """Whether the stored row ``old`` stands for its point (and say so), or the point
        is measured again: ``force``, a failure that says nothing about the point (its
        device went away), a row of another release, a skipped or unavailable row when
        ``recheck_skipped`` (a missing package or device may be there now), or an AP
        measured on other data than this search's."""
        if old is None or force:
            return False
        acc = self.cfg.accuracy
        if kind_of(old.error_kind) is ErrorKind.DOMINATED:
            pass  # a strategy's choice, not a measurement: asked for now, it is measured
        elif lost_device(old):
            self.say(f"{head}: its device dropped last time: measuring again")
        elif is_stale(old):
            self.say(f"{head}: stored by pose-tuner {old.tuner_version or '?'} / TVM "
                     f"{old.tvm_version or '?'}: measuring again")
        elif recheck_skipped and (old.status == "skipped"
                                  or kind_of(old.error_kind) is ErrorKind.UNAVAILABLE):
            pass  # unavailable when prepared (a stack that could not be held to the ISA)
        elif old.ok and old.backend != "tvm" and acc is not None and (
                old.accuracy_dataset != acc.identity):
            pass  # TVM points get AP afterwards (accuracy_pass); a baseline's comes with it
        else:
            self.say(f"{head}: reused from the database ({old.status}"
                     + (f", {old.latency_median_ms:.2f} ms" if old.latency_median_ms else "")
                     + ")")
            return True
        return False

    def _run(self, job, name: str, head: str, t0: float) -> JobResult:
        """``job`` in a child process on a device of the target, its progress said."""
        say = self.say
        return run_on_device(
            job, self.cfg.timeout_s, os.path.join(self.run_root, f"{name}.log"),
            on_progress=lambda m: say(f"{head}: {m} [{fmt_seconds(time.time() - t0)}]"),
            threads=self.threads, on_retry=lambda m: say(f"{head}: {m}"))

    def _store(self, key: dict, result: JobResult, t0: float, head: str,
               variant: ModelVariant | None = None) -> CandidateRecord:
        """The job's record in the database, and its outcome said."""
        rec = self.db.upsert(record_from(key, self.model, result, t0, variant, self.provenance))
        if rec.ok:
            self.say(f"{head}: ok, median {rec.latency_median_ms:.2f} ms, p90 "
                     f"{rec.latency_p90_ms:.2f} ms ({fmt_seconds(time.time() - t0)})")
        elif rec.status == "skipped":
            self.say(f"{head}: skipped: {rec.error}")
        else:
            self.say(f"{head}: FAILED: {rec.error}")
        return rec

    def baselines(self, names: list[str] | None = None,
                  force: bool | None = None) -> list[CandidateRecord]:
        """The target's baselines (or ``names``) measured for this model with the same
        harness, or reused from the database; skipped ones keep their reason and are
        checked again next time. ``force`` overrides ``cfg.force``. Counts what it
        measured (or checked) in ``baselines_ran``."""
        from pose_tuner.baselines import BaselineUnavailable, get_baseline

        cfg, target, model, db = self.cfg, self.target, self.model, self.db
        config = self.target_config
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
            if self._reusable(old, head, force, recheck_skipped=True):
                records.append(old)
                continue
            t0 = time.time()
            self.baselines_ran += 1
            try:
                bl.check_available(target)
            except BaselineUnavailable as exc:
                records.append(self._store(
                    key, JobResult("skipped", str(exc), ErrorKind.UNAVAILABLE), t0, head))
                continue
            calib_path = calibration_file(cfg, model, self.run_root) if bl.quant == "int8" else None
            job = BaselineJob(
                baseline=name, target=target.name, onnx_path=model.onnx_path,
                input_shape=model.input_shape, work_dir=os.path.join(self.art_root, name),
                calib_npy=calib_path, threads=self.threads,
                measure_budget_s=cfg.measure_budget_s, accuracy=cfg.accuracy, rpc=self.rpc)
            self.say(f"{head}: start")
            records.append(self._store(key, self._run(job, name, head, t0), t0, head))
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
