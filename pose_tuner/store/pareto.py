"""Pareto front and constrained selection over candidate records."""

from __future__ import annotations

from collections.abc import Sequence

from pose_tuner.store.records import CandidateRecord

#: (field, sense): +1 maximise, -1 minimise.
OBJECTIVES = (("latency_median_ms", -1), ("ap", +1), ("model_size_bytes", -1))


def active_objectives(records: Sequence[CandidateRecord]) -> list[tuple[str, int]]:
    """The objectives that some record has a value for (AP is absent until measured)."""
    return [
        (f, s) for f, s in OBJECTIVES
        if records and any(getattr(r, f) is not None for r in records)
    ]


def dominates(a: CandidateRecord, b: CandidateRecord, objectives) -> bool:
    better = False
    for f, s in objectives:
        va, vb = s * getattr(a, f), s * getattr(b, f)
        if va < vb:
            return False
        if va > vb:
            better = True
    return better


def measured(records: Sequence[CandidateRecord]) -> list[CandidateRecord]:
    """The successful records with a latency, emulated ones only where no real one exists.

    Latencies measured under emulation never compete with real ones.
    """
    ok = [r for r in records if r.ok and r.latency_median_ms is not None]
    if any(not r.emulated for r in ok):
        ok = [r for r in ok if not r.emulated]
    return ok


def pareto_front(records: Sequence[CandidateRecord]) -> list[CandidateRecord]:
    """Successful, non-dominated records of :func:`measured`, fastest first."""
    ok = measured(records)
    objectives = active_objectives(ok)
    # a record lacking a measured objective (AP of a latency-only run) cannot be compared
    # on it: the front is over the records that have them all
    ok = [r for r in ok if all(getattr(r, f) is not None for f, _ in objectives)]
    front = [r for r in ok if not any(dominates(o, r, objectives) for o in ok if o is not r)]
    return sorted(front, key=lambda r: r.latency_median_ms)


class NoCandidate(LookupError):
    pass


def best_under(records: Sequence[CandidateRecord], max_latency_ms: float | None = None,
               min_ap: float | None = None, max_size_mb: float | None = None,
               max_memory_mb: float | None = None) -> CandidateRecord:
    """The best successful record within the constraints.

    With a latency cap, the most accurate (then fastest) record under it; otherwise the
    fastest record meeting the accuracy/size floors. Like the front, it picks among real
    devices' records when there are any (:func:`measured`). Raises :class:`NoCandidate`
    with the reason when nothing qualifies.
    """
    ok = measured(records)
    if not ok:
        raise NoCandidate("no successful candidate in the database for this query; run `tuner search` first")
    if min_ap is not None and all(r.ap is None for r in ok):
        raise NoCandidate("no candidate has a measured accuracy (AP) yet, so --min-ap cannot be met")
    pool = ok
    if max_latency_ms is not None:
        pool = [r for r in pool if r.latency_median_ms <= max_latency_ms]
    if min_ap is not None:
        pool = [r for r in pool if r.ap is not None and r.ap >= min_ap]
    if max_size_mb is not None:
        pool = [r for r in pool if r.model_size_bytes is not None
                and r.model_size_bytes <= max_size_mb * 1e6]
    if max_memory_mb is not None:
        if all(r.peak_memory_mb is None for r in ok):
            raise NoCandidate("no candidate has a measured peak memory yet (measured since "
                              "pose-tuner 0.3), so --max-memory-mb cannot be met; search again "
                              "with --force")
        pool = [r for r in pool if r.peak_memory_mb is not None
                and r.peak_memory_mb <= max_memory_mb]
    if not pool:
        fastest = min(ok, key=lambda r: r.latency_median_ms)
        raise NoCandidate(
            "no candidate meets the constraints; the fastest has "
            f"{fastest.latency_median_ms:.2f} ms"
            + (f" and AP {fastest.ap:.3f}" if fastest.ap is not None else "")
        )
    if max_latency_ms is not None and any(r.ap is not None for r in pool):
        return max(pool, key=lambda r: (r.ap if r.ap is not None else -1.0, -r.latency_median_ms))
    return min(pool, key=lambda r: r.latency_median_ms)


def hypervolume(points: Sequence[tuple[float, float]], ref_latency_ms: float,
                ref_ap: float = 0.0) -> float:
    """The area of the (AP, latency) plane that ``points`` dominate (AP up, latency
    down), bounded by the reference point ``(ref_ap, ref_latency_ms)``; points at or
    beyond the reference add nothing. In AP x ms."""
    pts = sorted((lat, ap) for ap, lat in points if ap > ref_ap and lat < ref_latency_ms)
    area, best = 0.0, ref_ap
    for i, (lat, ap) in enumerate(pts):
        best = max(best, ap)
        nxt = pts[i + 1][0] if i + 1 < len(pts) else ref_latency_ms
        area += (nxt - lat) * (best - ref_ap)
    return area
