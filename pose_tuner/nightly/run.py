"""One night of tuning: plan the night's work, take items until none is left, report.

``run_nightly`` is what ``tuner nightly --config FILE`` calls. Every worker (one per
machine or process, all on the same database) runs it with the same configuration and
night; the first creates the night's items, all of them take items until none is left,
and the one that finishes the last item writes the report.

Incremental by construction: a point whose row exists (same model hash, target
configuration, variant) is reused, unless it was measured by another TVM or pose-tuner
version; new points are measured cheapest first, and MetaSchedule reuses the tuning
records of every earlier night (``log_dir/tuning``). A few reused points per job are
re-timed (``remeasure``) so that a device or environment that got slower shows up.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from pose_tuner.search import SearchPoint, SearchSpaceError, load_space, parse_schedule

from pose_tuner import build_version
from pose_tuner.store.db import ParetoDB
from pose_tuner.jobs.executor import run_on_device
from pose_tuner.jobs.specs import RemeasureJob
from pose_tuner.store.pareto import pareto_front
from pose_tuner.store.records import CandidateRecord
from pose_tuner.search.config import SearchConfig
from pose_tuner.search.loop import open_search
from pose_tuner.search.points import PointRunner
from pose_tuner.search.rows import is_stale, tvm_version
from pose_tuner.search.variants import tag_suffix
from pose_tuner.nightly.config import JobConfig, NightlyConfig
from pose_tuner.nightly.queue import Item, NightlyError, Run, WorkQueue

#: exit status of a night that found a regression (cron mails it, CI fails on it)
EXIT_REGRESSION = 3

#: item priorities: reused points first (cheap), then new points (cheapest first), then
#: baselines, re-measurements, and last tuning refinements (what is left of the budget)
_NEW, _BASELINE, _REMEASURE, _REFINE = 1000, 2000, 3000, 4000


@dataclass(frozen=True)
class NightlyOutcome:
    run: Run
    created: bool
    #: this worker wrote the report (it finished the night's last item)
    reported: bool
    report_paths: tuple[str, ...]
    regressions: int
    done_here: int
    seconds: float

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if self.regressions else 0


def tonight() -> str:
    return _dt.datetime.now(_dt.timezone.utc).date().isoformat()


def search_config(job: JobConfig, cfg: NightlyConfig) -> SearchConfig:
    """The search a job runs each night."""
    from pose_tuner.models.source import parse_input_size

    try:
        space = load_space(job.space)
        space = space.with_dimensions(
            prune_ratios=job.prune, quant_modes=job.quant,
            schedules=[parse_schedule(s) for s in job.schedules] if job.schedules else None)
        if job.trials is not None:
            space = space.with_trials(job.trials)
    except SearchSpaceError as exc:
        raise NightlyError(f"job {job.name}: {exc}") from None
    accuracy = None
    if job.accuracy and job.val_images:
        from pose_tuner.accuracy.benchmark import synthetic_val
        from pose_tuner.search.config import check_log_dir

        check_log_dir(cfg.log_dir)
        accuracy = synthetic_val(cfg.log_dir, job.val_images)
    return SearchConfig(
        target=job.target, model=job.model, input_size=parse_input_size(job.input_size),
        output=job.output, space=space, log_dir=cfg.log_dir, timeout_s=job.timeout_s,
        measure_budget_s=job.measure_budget_s, threads=job.threads, tracker=job.tracker,
        rpc_key=job.rpc_key, cuda_arch=job.cuda_arch,
        baselines=job.baselines, accuracy=accuracy,
    )


def _point_payload(p: SearchPoint, force: bool) -> dict:
    return {"prune_ratio": p.prune_ratio, "quant": p.quant, "schedule": p.schedule,
            "trials": p.trials, "force": force}


def plan_job(job: JobConfig, runner: PointRunner, night: str, tvm_ver: str) -> list[dict]:
    """The items of one job for one night (see the module docstring)."""
    items, reusable = [], []
    for idx, point in enumerate(runner.cfg.space.points()):
        key = runner.point_key(point)
        old = runner.db.find(**key)
        stale = old is not None and is_stale(old, tvm_ver)
        items.append(dict(job=job.name, kind="point", key=point.key + tag_suffix(key["variant"]),
                          priority=idx + (_NEW if old is None or stale else 0),
                          payload=_point_payload(point, stale)))
        if old is not None and old.ok and not stale and old.artifact_path \
                and os.path.isfile(old.artifact_path):
            reusable.append((items[-1]["key"], old))
    if job.refine:
        keys = {it["key"] for it in items}
        for it in refine_items(job, runner, tvm_ver):
            if it["key"] not in keys:  # a level the space lists itself, or another chain's
                keys.add(it["key"])
                items.append(it)
    if job.baselines:
        for i, name in enumerate(runner.target.baselines):
            items.append(dict(job=job.name, kind="baseline", key=name, priority=_BASELINE + i,
                              payload={"force": False}))
    if job.remeasure and reusable:
        # re-time the front first (what users deploy), then others, in a nightly order
        front_ids = {r.id for r in pareto_front([r for _, r in reusable])}
        rng = random.Random(f"{night}/{job.name}")
        rng.shuffle(reusable)
        reusable.sort(key=lambda kr: kr[1].id not in front_ids)
        for i, (key, rec) in enumerate(reusable[:job.remeasure]):
            items.append(dict(job=job.name, kind="remeasure", key=key, priority=_REMEASURE + i,
                              payload={"candidate_id": rec.id,
                                       "stored_median_ms": rec.latency_median_ms,
                                       "stored_p90_ms": rec.latency_p90_ms,
                                       "stored_device": rec.device}))
    return items


def refine_items(job: JobConfig, runner: PointRunner, tvm_ver: str) -> list[dict]:
    """Tuning that is not converged yet: for each MetaSchedule point of the space whose
    variant is on the front, the refinements measured on earlier nights (2N, 4N, ...
    trials; reused, so the report follows them) and the next doubling, unless the last
    doubling gained less than ``converged_gain`` or ``max_trials`` is reached."""
    space = runner.cfg.space
    rows = [r for r in runner.db.records(target=runner.target.name,
                                          model_hash=runner.model.model_hash, backends=["tvm"])
            if r.target_config == runner.target_config and r.ok and not is_stale(r, tvm_ver)]
    front_ids = {r.id for r in pareto_front(rows)}
    items = []
    for base in (p for p in space.points() if p.schedule == "metaschedule"):
        tag = space.variant_tag(base)
        levels = {r.trials: r for r in rows
                  if (r.prune_ratio, r.quant, r.variant, r.schedule)
                  == (base.prune_ratio, base.quant, tag, "metaschedule")
                  and r.trials >= base.trials}
        if base.trials not in levels:
            continue  # not measured yet: the point itself is tonight's work
        chain = [base.trials]
        while chain[-1] * 2 in levels:
            chain.append(chain[-1] * 2)
        if not front_ids & {levels[t].id for t in chain}:
            continue
        for t in chain[1:]:
            p = SearchPoint(base.prune_ratio, base.quant, "metaschedule", t)
            items.append(dict(job=job.name, kind="point", key=p.key + tag_suffix(tag),
                              priority=_REFINE - 500 + len(items), payload=_point_payload(p, False)))
        last = levels[chain[-1]].latency_median_ms
        gained = (1 - last / levels[chain[-2]].latency_median_ms) if len(chain) > 1 else None
        nxt = chain[-1] * 2
        if nxt > job.max_trials or (gained is not None and gained < job.converged_gain):
            continue
        p = SearchPoint(base.prune_ratio, base.quant, "metaschedule", nxt)
        items.append(dict(job=job.name, kind="point", key=p.key + tag_suffix(tag),
                          priority=_REFINE + len(items), payload=_point_payload(p, False)))
    return items


def _snapshot(rec: CandidateRecord) -> dict:
    return dict(candidate_id=rec.id, status=rec.status, error=rec.error,
                model_hash=rec.model_hash, latency_median_ms=rec.latency_median_ms,
                latency_p90_ms=rec.latency_p90_ms, ap=rec.ap,
                model_size_bytes=rec.model_size_bytes, tvm_version=rec.tvm_version,
                tuner_version=rec.tuner_version, target_config=rec.target_config,
                device=rec.device, latency_noisy=rec.latency_noisy,
                peak_memory_mb=rec.peak_memory_mb)


class _Night:
    """One worker's part of one night."""

    def __init__(self, cfg: NightlyConfig, db: ParetoDB, queue: WorkQueue,
                 say: Callable[[str], None]):
        self.cfg, self.db, self.queue, self.say = cfg, db, queue, say
        self.runners: dict[str, PointRunner] = {}
        self.jobs = {j.name: j for j in cfg.jobs}
        self.point_counts: dict[str, int] = {}

    def runner(self, job: JobConfig) -> PointRunner:
        if job.name not in self.runners:
            self.say(f"[{job.name}] preparing")
            runner = open_search(search_config(job, self.cfg),
                                 lambda m, n=job.name: self.say(f"[{n}] {m}"), self.db)
            runner.n_points = self.point_counts.get(job.name, runner.n_points)
            self.runners[job.name] = runner
        return self.runners[job.name]

    def count_points(self, run_id: int) -> None:
        """Progress lines count the night's points of each job (refinements included)."""
        counts: dict[str, int] = {}
        for it in self.queue.items(run_id):
            if it["kind"] == "point":
                counts[it["job"]] = counts.get(it["job"], 0) + 1
        self.point_counts = counts
        for name, runner in self.runners.items():
            runner.n_points = counts.get(name, runner.n_points)

    def plan(self, night: str) -> list[dict]:
        tv = tvm_version()
        items = []
        for job in self.cfg.jobs:
            try:
                runner = self.runner(job)
            except Exception as exc:  # noqa: BLE001 - one broken job never stops the others
                msg = f"{exc.__class__.__name__}: {exc}".splitlines()[0][:500]
                self.say(f"[{job.name}] cannot run: {msg}")
                items.append(dict(job=job.name, kind="job", key="prepare", priority=0,
                                  payload={"error": msg}))
                continue
            job_items = plan_job(job, runner, night, tv)
            new = sum(1 for it in job_items if _NEW <= it["priority"] < _BASELINE)
            refine = sum(1 for it in job_items if it["priority"] >= _REFINE)
            self.say(f"[{job.name}] {sum(it['kind'] == 'point' for it in job_items)} points "
                     f"({new} new or stale, {refine} tuning refinement(s)), "
                     f"{sum(it['kind'] == 'baseline' for it in job_items)} baselines, "
                     f"{sum(it['kind'] == 'remeasure' for it in job_items)} re-measurements")
            items += job_items
        return items

    def out_of_budget(self, item: Item) -> str | None:
        budget = self.jobs[item.job].time_budget_min
        if budget is None:
            return None
        started = self.queue.job_started_at(item.run_id, item.job) or time.time()
        if time.time() - started <= budget * 60:
            return None
        return (f"time budget of {budget:g} min spent before this item started; "
                "the next night continues")

    def execute(self, item: Item) -> dict:
        """Do one item; returns its outcome columns."""
        if item.kind == "job":
            return dict(outcome="failed", status="failed", error=item.payload["error"])
        job = self.jobs[item.job]
        runner = self.runner(job)
        if item.kind == "point":
            p = item.payload
            point = SearchPoint(p["prune_ratio"], p["quant"], p["schedule"], p["trials"])
            ran = runner.ran
            rec = runner.evaluate(point, force=p["force"])
            rec = runner.with_accuracy(rec)
            return dict(_snapshot(rec), outcome="measured" if runner.ran > ran else "reused")
        if item.kind == "baseline":
            ran = runner.baselines_ran
            (rec,) = runner.baselines([item.key], force=item.payload.get("force"))
            return dict(_snapshot(rec),
                        outcome="measured" if runner.baselines_ran > ran else "reused")
        if item.kind == "remeasure":
            return self.remeasure(runner, item)
        raise NightlyError(f"unknown work item kind {item.kind!r}")

    def remeasure(self, runner: PointRunner, item: Item) -> dict:
        rec = self.db.get(item.payload["candidate_id"])
        device = runner.provenance["device"]
        stored = item.payload.get("stored_device")
        if stored and stored != device:
            # drift is a change of one device over time; another worker's device is not it
            return dict(outcome="remeasured", status="skipped",
                        error=f"stored latency comes from {stored}, this worker is {device}")
        if rec is None or not rec.artifact_path or not os.path.isfile(rec.artifact_path):
            return dict(outcome="remeasured", status="skipped",
                        error="the point's artifact is not on this worker's disk "
                              f"({rec.artifact_path if rec else 'row gone'})")
        ref = rec.artifact_path[:-3] + ".qdq.onnx" if rec.quant == "int8" else rec.model_path
        head = f"[{item.job}] re-measure {item.key}"
        job = RemeasureJob(
            artifact_path=rec.artifact_path, onnx_path=ref,
            input_shape=tuple(int(v) for v in rec.input_shape.split("x")), quant=rec.quant,
            measure_budget_s=runner.cfg.measure_budget_s, device=runner.target.device,
            # a remote target's point is re-timed on a device of its pool
            rpc=runner.rpc)
        result = run_on_device(
            job, runner.cfg.timeout_s, os.path.join(runner.run_root, f"remeasure-{item.key}.log"),
            on_progress=lambda m: self.say(f"{head}: {m}"), threads=runner.threads,
            on_retry=lambda m: self.say(f"{head}: {m}"))
        snap = _snapshot(rec)
        snap.update(outcome="remeasured", status=result.status, error=result.error,
                    latency_median_ms=result.latency_median_ms,
                    latency_p90_ms=result.latency_p90_ms, latency_noisy=result.latency_noisy,
                    tvm_version=result.tvm_version, tuner_version=build_version(),
                    device=runner.provenance["device"])
        if snap["status"] == "ok":
            self.say(f"{head}: {snap['latency_median_ms']:.3f} ms (stored "
                     f"{item.payload['stored_median_ms']:.3f} ms)")
        return snap


def rewrite_report(cfg: NightlyConfig, night: str, db_url: str | None = None,
                   say: Callable[[str], None] = print) -> NightlyOutcome:
    """Write a finished night's report again (after changing thresholds, say)."""
    from pose_tuner.nightly.report import write_report

    t0 = time.time()
    db = ParetoDB(db_url or cfg.db_url)
    queue = WorkQueue(db, None, cfg.lease_s)
    run = queue.find_run(cfg.name, night)
    if run is None or run.status != "finished":
        raise NightlyError(f"night {night!r} of {cfg.name!r} is "
                           f"{'not in the database' if run is None else 'not finished'}; "
                           "run it first")
    report = write_report(cfg, db, queue, run)
    queue.set_report(run.id, len(report.regressions), report.html_path)
    say(report.summary)
    return NightlyOutcome(queue.find_run(cfg.name, night), False, True,
                          (report.html_path, report.md_path), len(report.regressions), 0,
                          time.time() - t0)


def run_nightly(cfg: NightlyConfig, night: str | None = None, worker: str | None = None,
                say: Callable[[str], None] = print, db_url: str | None = None) -> NightlyOutcome:
    """Run (or join, or resume) ``night`` of ``cfg`` as one worker; see the module docstring."""
    from pose_tuner.nightly.report import write_report

    t0 = time.time()
    night = night or tonight()
    if cfg.db is None:
        from pose_tuner.search.config import check_log_dir

        check_log_dir(cfg.log_dir)
    db = ParetoDB(db_url or cfg.db_url)
    queue = WorkQueue(db, worker, cfg.lease_s)
    work = _Night(cfg, db, queue, say)
    versions = {"tuner_version": build_version(), "tvm_version": tvm_version()}
    run, created = queue.open_run(cfg.name, night, cfg.digest,
                                  json.dumps(cfg.as_dict(), sort_keys=True),
                                  lambda: work.plan(night), versions)
    counts = queue.counts(run.id)
    total = sum(counts.values())
    work.count_points(run.id)
    if run.status == "finished":
        say(f"night {night} of {cfg.name} is already finished ({run.regressions or 0} "
            f"regression(s)); report: {run.report_path}. Pass --night to run another.")
        return NightlyOutcome(run, False, False, (run.report_path,) if run.report_path else (),
                              run.regressions or 0, 0, time.time() - t0)
    say(f"night {night} of {cfg.name}: run {run.id} "
        f"{'created' if created else 'joined'} by worker {queue.worker}; {total} items, "
        f"{counts.get('pending', 0)} pending")
    done_here = 0
    queue.start_heartbeat()
    try:
        while (item := queue.claim(run.id)) is not None:
            left = queue.counts(run.id).get("pending", 0)
            say(f"[{item.job}] {item.kind} {item.key} (attempt {item.attempts}, "
                f"{left} pending)")
            reason = work.out_of_budget(item)
            if reason:
                n = queue.skip_pending(run.id, item.job, reason)
                queue.complete(item, state="skipped", error=reason)
                say(f"[{item.job}] {reason}: {n + 1} item(s) skipped")
                continue
            try:
                outcome = work.execute(item)
            except KeyboardInterrupt:  # Ctrl-C / SIGTERM: give the item back, untouched
                queue.release(item)
                raise
            except Exception as exc:  # noqa: BLE001 - failures are data
                outcome = dict(outcome="failed", status="failed",
                               error=f"{exc.__class__.__name__}: {exc}".splitlines()[0][:500])
                say(f"[{item.job}] {item.kind} {item.key}: FAILED: {outcome['error']}")
            queue.complete(item, **outcome)
            done_here += 1
    finally:
        queue.stop_heartbeat()
    reported, paths, regressions = False, (), 0
    if queue.finish_run(run.id):
        run = queue.find_run(cfg.name, night)
        report = write_report(cfg, db, queue, run)
        queue.set_report(run.id, len(report.regressions), report.html_path)
        reported, paths, regressions = True, (report.html_path, report.md_path), len(report.regressions)
        say(report.summary)
    else:
        c = queue.counts(run.id)
        say(f"no pending items left; {c.get('claimed', 0)} still running on other workers: "
            "the worker that finishes the last one writes the report")
    return NightlyOutcome(queue.find_run(cfg.name, night), created, reported, paths, regressions,
                          done_here, time.time() - t0)
