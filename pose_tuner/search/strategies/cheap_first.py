"""``--strategy cheap-first``: the cheap points first, then only the tuned points that can
still reach the Pareto front.

Pruning ratio by pruning ratio, smallest first (a pruned variant costs a fine-tuning
before its first point, and the least pruned variants are the most accurate: their
points are the ones that dominate others):

1. Every point of the ratio with TVM's default schedules is built and measured (no
   tuning: seconds each), with its variant's AP. A variant's AP is that of every build of
   it: schedules change speed, not predictions (each build is checked numerically
   against the reference).
2. A tuned point (MetaSchedule) is predicted from its own untuned build and from the
   tuned points measured so far: its latency (and artifact size) is bounded below by its
   untuned figure times the smallest tuned/untuned ratio seen for the same quantization
   mode and schedule, lowered by :data:`MARGIN`; its AP is its variant's. A point whose
   bound is dominated by a measured point cannot reach the front: it is skipped, said,
   and stored as skipped (``ErrorKind.DOMINATED``, with the bound and the point that
   dominates it). A point with no such ratio yet (the first tuned point of a
   quantization mode) or without an untuned build cannot be bounded and is measured.
3. Among the rest, the most promising is measured next: the largest gain in
   hypervolume (AP x latency) of its expected figures (the median ratio instead of the
   smallest), so the points that prune the others come first. Then 2 again, until no
   tuned point of the ratio is left; then the next ratio.

``cfg.n_trials``, when given, caps the new points it measures.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

from pose_tuner.search.space import SearchPoint
from pose_tuner.search.strategies.base import Strategy, register
from pose_tuner.store.pareto import active_objectives, dominates, hypervolume, measured
from pose_tuner.store.records import CandidateRecord

#: how far below the best tuned/untuned ratio seen a bound goes: at a small trial budget
#: MetaSchedule's speed-up varies about 2x between the variants of one model (tuned /
#: untuned 0.22-0.55 for the default model at 128x96 and 1 trial per task), plus noise
MARGIN = 0.5
#: the tuned/untuned latency ratio assumed when ordering points before any is measured
PRIOR_RATIO = 0.5
#: the minimised objectives a bound scales, with their margins (AP is the variant's own;
#: a schedule changes an artifact's size only by its code)
_SCALED = {"latency_median_ms": MARGIN, "model_size_bytes": 0.1}


def _base(point: SearchPoint) -> SearchPoint:
    return SearchPoint(point.prune_ratio, point.quant, "default", 0)


class CheapFirst(Strategy):
    name = "cheap-first"

    def run(self, cfg, points, runner, say):
        ran0 = runner.ran
        spent = (lambda: cfg.n_trials is not None and runner.ran - ran0 >= cfg.n_trials)
        ratios = sorted({p.prune_ratio for p in points})
        for i, ratio in enumerate(ratios):
            later = [p for p in points if p.prune_ratio in ratios[i + 1:]]
            cheap = [p for p in points if p.prune_ratio == ratio and p.schedule == "default"]
            tuned = [p for p in points if p.prune_ratio == ratio and p.schedule != "default"]
            for j, point in enumerate(cheap):
                if spent():
                    return []
                rec = runner.evaluate(point)
                if rec is None:
                    return cheap[j:] + tuned + later
                runner.with_accuracy(rec)
            pending = []
            for point in tuned:  # what the database has counts as measured (resume)
                rec = runner.evaluate(point, build=False)
                if rec is None:
                    pending.append(point)
                else:
                    runner.with_accuracy(rec)
            while pending:
                pending = self._prune(pending, runner, say)
                if not pending:
                    break
                if spent():
                    return []
                point = max(pending, key=lambda p: (self._promise(p, runner), -pending.index(p)))
                rec = runner.evaluate(point)
                if rec is None:
                    return pending + later
                runner.with_accuracy(rec)
                pending.remove(point)
        return []

    # -- predictions ------------------------------------------------------------------

    @staticmethod
    def _ratios(point: SearchPoint, runner, field: str) -> list[float]:
        """Tuned/untuned ``field`` ratios of the measured points like ``point``."""
        out = []
        for p, rec in runner.done.items():
            base = runner.done.get(_base(p))
            if (p.schedule != "default" and (p.quant, p.schedule_label)
                    == (point.quant, point.schedule_label) and _usable(rec) and _usable(base)
                    and getattr(rec, field) and getattr(base, field)):
                out.append(getattr(rec, field) / getattr(base, field))
        return out

    def bound(self, point: SearchPoint, runner) -> CandidateRecord | None:
        """The best figures ``point`` could reach (None: nothing to bound it with)."""
        base = runner.done.get(_base(point))
        if not _usable(base):
            return None
        scaled = {}
        for field, margin in _SCALED.items():
            ratios = self._ratios(point, runner, field)
            if getattr(base, field) is not None and ratios:
                scaled[field] = getattr(base, field) * min(ratios) * (1 - margin)
        if "latency_median_ms" not in scaled:
            return None  # no tuned point of its kind measured yet
        return replace(base, schedule=point.schedule, trials=point.trials, **scaled)

    def _promise(self, point: SearchPoint, runner) -> float:
        """The hypervolume gain of ``point``'s expected figures over the measured front."""
        base = runner.done.get(_base(point))
        if not _usable(base):
            return float("inf")  # nothing known: measure it early
        ratios = (self._ratios(point, runner, "latency_median_ms")
                  or [r for p in runner.done
                      if p.schedule != "default"
                      for r in self._ratios(p, runner, "latency_median_ms")]
                  or [PRIOR_RATIO])
        expected = base.latency_median_ms * statistics.median(ratios)
        known = [(r.ap if r.ap is not None else 1.0, r.latency_median_ms)
                 for r in measured(runner.records)]
        if not known:
            return 0.0
        ref = max(lat for _, lat in known) * 1.1
        ap = base.ap if base.ap is not None else 1.0
        return hypervolume(known + [(ap, expected)], ref) - hypervolume(known, ref)

    def _prune(self, pending: list[SearchPoint], runner, say) -> list[SearchPoint]:
        """``pending`` less the points whose bound is dominated (skipped and said)."""
        known = measured(runner.records)
        objectives = active_objectives(known)
        known = sorted((r for r in known if all(getattr(r, f) is not None for f, _ in objectives)),
                       key=lambda r: r.latency_median_ms)  # the fastest dominating point is named
        keep = []
        for point in pending:
            bound = self.bound(point, runner)
            if bound is not None and any(getattr(bound, f) is None for f, _ in objectives):
                bound = None  # its variant lacks a figure the front compares (a failed AP)
            by = None if bound is None else next(
                (r for r in known if dominates(r, bound, objectives)), None)
            if by is None:
                keep.append(point)
                continue
            reason = (f"cannot reach the front: at best {_figures(bound)} (its untuned build "
                      f"times the best tuning ratio seen, less {MARGIN:.0%}), dominated by "
                      f"{_label(by)} ({_figures(by)})")
            say(f"{point.key}: skipped: {reason}")
            runner.skip(point, reason)
        return keep


def _usable(rec: CandidateRecord | None) -> bool:
    return rec is not None and rec.ok and rec.latency_median_ms is not None


def _label(rec: CandidateRecord) -> str:
    return SearchPoint(rec.prune_ratio, rec.quant, rec.schedule, rec.trials).key


def _figures(rec: CandidateRecord) -> str:
    ap = f", AP {rec.ap:.3f}" if rec.ap is not None else ""
    return f"{rec.latency_median_ms:.2f} ms{ap}"


register(CheapFirst())
