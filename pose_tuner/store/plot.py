"""``tuner pareto --plot``: AP against latency, the Pareto front highlighted (matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence

from pose_tuner.store.records import CandidateRecord


def _label(r: CandidateRecord) -> str:
    name = (f"{r.backend} {r.quant}" if r.backend != "tvm"
            else f"p{r.prune_ratio:.2f} {r.quant} {r.schedule_label}")
    extra = [f"{r.fps:.0f} FPS" if r.fps else "",
             f"{r.peak_memory_mb:.0f} MB" if r.peak_memory_mb is not None else ""]
    return ", ".join([name, *filter(None, extra)])


def plot_front(records: Sequence[CandidateRecord], front: Sequence[CandidateRecord], path: str,
               title: str = "") -> str:
    """Write a PNG (or any format matplotlib knows from the suffix) of ``records`` with
    the ``front`` joined and marked. Records without AP are left out; raises
    ``ValueError`` when none has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in records if r.ok and r.ap is not None and r.latency_median_ms is not None]
    if not pts:
        raise ValueError("no candidate has both a latency and an AP to plot; run `tuner search` "
                         "with accuracy (the default) first")
    front_ids = {r.id for r in front}
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    markers = {"fp32": "o", "fp16": "s", "int8": "^", "bf16": "D"}
    for backend in sorted({r.backend for r in pts}):
        group = [r for r in pts if r.backend == backend]
        for quant in sorted({r.quant for r in group}):
            g = [r for r in group if r.quant == quant]
            ax.scatter([r.latency_median_ms for r in g], [r.ap for r in g],
                       marker=markers.get(quant, "x"), s=40, alpha=0.75,
                       label=f"{backend} {quant}",
                       edgecolors="black",
                       linewidths=[1.3 if r.id in front_ids else 0.0 for r in g])
    fr = sorted((r for r in pts if r.id in front_ids), key=lambda r: r.latency_median_ms)
    if fr:
        ax.step([r.latency_median_ms for r in fr], [r.ap for r in fr], where="post",
                color="crimson", lw=1.5, label="Pareto front")
    for r in pts:
        ax.annotate(_label(r), (r.latency_median_ms, r.ap), fontsize=6, alpha=0.8,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("median latency (ms, log scale); labels: point, FPS, peak memory")
    ax.set_ylabel("OKS AP")
    ax.set_title(title or "accuracy vs latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
