"""Plain-text tables of candidate records."""

from __future__ import annotations

from collections.abc import Sequence

from pose_tuner.store.records import CandidateRecord


def _fmt(v, spec: str = "") -> str:
    if v is None:
        return "-"
    return format(v, spec) if spec else str(v)


def table(records: Sequence[CandidateRecord], front: Sequence[CandidateRecord] = ()) -> str:
    front_ids = {r.id for r in front}
    headers = ["id", "model", "backend", "prune", "quant", "schedule", "status", "median ms",
               "p90 ms", "FPS", "AP", "PCK", "size MB", "mem MB", "rel err", "front"]
    emulated = any(r.emulated for r in records)
    if emulated:  # their latencies say nothing about a real device's: say which they are
        headers.append("device")
    rows = []
    for r in records:
        rows.append([
            _fmt(r.id), r.model_name, r.backend, f"{r.prune_ratio:.2f}", r.quant,
            r.schedule_label, r.status,
            _fmt(r.latency_median_ms, ".2f") + ("!" if r.latency_noisy else ""),
            _fmt(r.latency_p90_ms, ".2f"), _fmt(r.fps, ".1f"), _fmt(r.ap, ".3f"),
            _fmt(r.pck, ".3f"),
            _fmt(r.model_size_bytes / 1e6 if r.model_size_bytes else None, ".2f"),
            _fmt(r.peak_memory_mb, ".1f"),
            _fmt(r.rel_err, ".1e"), "*" if r.id in front_ids else "",
        ] + (["emulated" if r.emulated else "real"] if emulated else []))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    if any(r.latency_noisy for r in records):
        lines.append("  ! timed on a busy machine, twice: the figure is kept but flagged noisy "
                     "(see its timing_conditions)")
    errors = [r for r in records if not r.ok and r.error]
    for r in errors:
        lines.append(f"  #{r.id} {r.backend} {r.quant} {r.status}: {r.error}")
    return "\n".join(lines)


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
