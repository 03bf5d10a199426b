"""Strategies replayed against a finished grid, on a simulated clock.

A grid search measured every point of a space: :class:`Recorded` keeps its records and
what each step cost (building and measuring a point, making a pruned variant, measuring
a variant's AP). :class:`ReplayRunner` hands a strategy those records as if it measured
them now (:mod:`pose_tuner.search.strategies` lists the interface) and advances its
clock by what each step cost the grid, so strategies (and their seeds) are compared on
the same measurements in seconds: ``benchmarks/search_quality.py``. Nothing is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pose_tuner.failures import ErrorKind
from pose_tuner.search.space import SearchPoint
from pose_tuner.store.pareto import hypervolume, measured
from pose_tuner.store.records import ACCURACY_FIELDS, CandidateRecord


@dataclass(frozen=True)
class Recorded:
    """A grid's measurements and costs (seconds)."""

    #: every point's record, with its variant's AP where it was measured
    records: dict[SearchPoint, CandidateRecord]
    #: building and measuring each point (the variant and its AP not included)
    point_s: dict[SearchPoint, float]
    #: making each pruning ratio's variant (0 for the unpruned model)
    variant_s: dict[float, float] = field(default_factory=dict)
    #: measuring the AP of each (pruning ratio, quantization) variant
    accuracy_s: dict[tuple[float, str], float] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return (sum(self.point_s.values()) + sum(self.variant_s.values())
                + sum(self.accuracy_s.values()))

    def ref_latency_ms(self) -> float:
        """The hypervolume's reference latency: 10% beyond the slowest measured point."""
        return 1.1 * max(r.latency_median_ms for r in measured(list(self.records.values())))


class ReplayRunner:
    """A point runner over :class:`Recorded` measurements. ``timeline`` lists, in clock
    order, ``(seconds, point, record)`` each time a point's record changed (measured,
    given its AP, skipped)."""

    def __init__(self, cfg, recorded: Recorded, say: Callable[[str], None] = lambda m: None):
        self.cfg, self.recorded, self.say = cfg, recorded, say
        self.clock = 0.0
        self.ran = self.reused = 0
        self.done: dict[SearchPoint, CandidateRecord] = {}
        self.timeline: list[tuple[float, SearchPoint, CandidateRecord]] = []
        self._variants: set[float] = set()
        self._scored: set[tuple[float, str]] = set()

    @property
    def records(self) -> list[CandidateRecord]:
        return list(self.done.values())

    def out_of_time(self) -> bool:
        b = self.cfg.time_budget_s
        return b is not None and self.clock > b

    def _set(self, point: SearchPoint, rec: CandidateRecord) -> CandidateRecord:
        self.done[point] = rec
        self.timeline.append((self.clock, point, rec))
        return rec

    def evaluate(self, point: SearchPoint, build: bool = True, force=None):
        if point in self.done:
            return self.done[point]
        if not build or self.out_of_time():
            return None
        if point.prune_ratio not in self._variants:
            self._variants.add(point.prune_ratio)
            self.clock += self.recorded.variant_s.get(point.prune_ratio, 0.0)
        self.clock += self.recorded.point_s[point]
        self.ran += 1
        rec = self.recorded.records[point]
        return self._set(point, replace(rec, **{k: None for k in ACCURACY_FIELDS}))

    def with_accuracy(self, rec: CandidateRecord) -> CandidateRecord:
        point = SearchPoint(rec.prune_ratio, rec.quant, rec.schedule, rec.trials)
        full = self.recorded.records[point]
        if not rec.ok or rec.ap is not None or full.ap is None:
            return rec
        variant = (point.prune_ratio, point.quant)
        if variant not in self._scored:
            self._scored.add(variant)
            self.clock += self.recorded.accuracy_s.get(variant, 0.0)
        return self._set(point, replace(rec, **{k: getattr(full, k) for k in ACCURACY_FIELDS}))

    def skip(self, point: SearchPoint, reason: str) -> CandidateRecord:
        rec = replace(self.recorded.records[point], status="skipped", error=reason,
                      error_kind=ErrorKind.DOMINATED.value, latency_median_ms=None)
        return self._set(point, rec)

    def finish(self) -> None:
        """What ``run_search`` does after a strategy: AP for every measured point."""
        for rec in list(self.done.values()):
            if rec.ok:
                self.with_accuracy(rec)

    def hypervolume_at(self, seconds: float, ref_latency_ms: float) -> float:
        """The (AP, latency) hypervolume of what was known ``seconds`` into the search."""
        known: dict[SearchPoint, CandidateRecord] = {}
        for t, point, rec in self.timeline:
            if t <= seconds:
                known[point] = rec
        return hypervolume([(r.ap, r.latency_median_ms) for r in known.values()
                            if r.ok and r.ap is not None and r.latency_median_ms is not None],
                           ref_latency_ms)
