"""The best TVM point against each baseline, at matched accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from pose_tuner.store.records import CandidateRecord


@dataclass(frozen=True)
class Comparison:
    model_name: str
    baseline: str
    baseline_ms: float
    baseline_ap: float | None
    tvm_point: str | None
    tvm_ms: float | None
    tvm_ap: float | None
    latency_ratio: float | None  # TVM / baseline: < 1 means TVM is faster
    size_ratio: float | None  # TVM artifact / baseline artifact
    matched_by: str

    def as_dict(self) -> dict:
        return asdict(self)


def _label(r: CandidateRecord) -> str:
    return f"p{r.prune_ratio:.2f} {r.quant} {r.schedule_label}"


def compare_to_baselines(records: Sequence[CandidateRecord],
                         ap_tolerance: float = 0.01) -> list[Comparison]:
    """One row per successful baseline: the fastest TVM point of the same model whose
    accuracy matches it. Accuracy matches when both have AP and TVM's is at least the
    baseline's minus ``ap_tolerance``; without AP, an FP32 baseline matches any TVM FP32
    point (both agree numerically with the same reference), and a reduced-precision
    baseline is compared with the fastest TVM point, flagged as unmatched. Emulated
    devices are compared only with emulated ones, and say so."""
    rows = []
    ok = [r for r in records if r.ok and r.latency_median_ms is not None]
    for b in (r for r in ok if r.backend != "tvm"):
        tvm = [r for r in ok if r.backend == "tvm" and r.model_hash == b.model_hash
               and r.emulated == b.emulated]
        if b.ap is not None and all(r.ap is not None for r in tvm):
            pool = [r for r in tvm if r.ap >= b.ap - ap_tolerance]
            how = f"AP within {ap_tolerance:g}"
        elif b.quant == "fp32":
            pool = [r for r in tvm if r.quant == "fp32"]
            how = "fp32 numerics (AP not measured)"
        else:
            pool = tvm
            how = "unmatched: AP not measured"
        best = min(pool, key=lambda r: r.latency_median_ms) if pool else None
        rows.append(Comparison(
            model_name=b.model_name, baseline=f"{b.backend}-{b.quant}",
            baseline_ms=b.latency_median_ms, baseline_ap=b.ap,
            tvm_point=_label(best) if best else None,
            tvm_ms=best.latency_median_ms if best else None, tvm_ap=best.ap if best else None,
            latency_ratio=best.latency_median_ms / b.latency_median_ms if best else None,
            size_ratio=(best.model_size_bytes / b.model_size_bytes
                        if best and best.model_size_bytes and b.model_size_bytes else None),
            matched_by=(how if best else "no TVM point matches")
            + (" (emulated device: latencies say nothing about the real one)" if b.emulated else ""),
        ))
    return rows


def compare_table(rows: Sequence[Comparison]) -> str:
    if not rows:
        return "no measured baselines; run `tuner search` (baselines are measured by default)"
    out = ["| model | baseline | baseline ms | best TVM point | TVM ms | TVM/baseline latency "
           "| TVM/baseline size | matched by |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = (lambda v, spec: format(v, spec) if v is not None else "-")
        out.append(f"| {r.model_name} | {r.baseline} | {r.baseline_ms:.2f} | {r.tvm_point or '-'} "
                   f"| {f(r.tvm_ms, '.2f')} | {f(r.latency_ratio, '.2f')}x | "
                   f"{f(r.size_ratio, '.2f')}x | {r.matched_by} |")
    return "\n".join(out)
