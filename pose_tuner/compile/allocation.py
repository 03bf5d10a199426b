"""How a tuning budget is split over a module's tasks (:func:`pose_tuner.compile.tuning.tune`
runs two passes: :func:`allocate_trials` by FLOPs, then :func:`allocate_by_latency` by the
latency the first pass measured). Plain arithmetic on per-task figures: no TVM here."""

from __future__ import annotations

import math


def allocate_trials(flops: list[float], max_trials: int) -> list[int]:
    """Split ``max_trials`` over tasks: a floor each, the rest by the square root of FLOPs.

    The floor is ``max_trials / (2 n)`` trials per task, capped at 16 (at least 1). The
    remainder follows each task's share of sqrt(FLOPs): the deconvolution head of a
    SimpleBaseline model holds ~80% of the FLOPs and gets the most, but linear shares
    left mid-sized convs with 4 trials (their latency then dominated). Budgets are
    rounded to powers of two so that tasks can be tuned in a few groups of equal budget.
    """
    n = len(flops)
    if n == 0:
        return []
    base = max(1, min(16, max_trials // (2 * n)))
    rest = max(0, max_trials - base * n)
    weights = [math.sqrt(max(f, 0.0)) for f in flops]
    total = sum(weights) or 1.0
    out = []
    for w in weights:
        b = base + rest * w / total
        out.append(1 << max(0, round(math.log2(max(1.0, b)))))
    return out


def allocate_by_latency(latencies: list[float | None], trials: int) -> list[int]:
    """Split ``trials`` over tasks by their share of the measured latency (each task's best
    time times its number of calls; None for a task without a measured schedule, which
    gets none). Shares are rounded to powers of two (tasks are tuned in groups of equal
    budget); a share under half a trial gets none.

    FLOPs misjudge where time goes: the input quantizer of an int8 model has almost none
    (one trial by FLOPs) and took 1.5% of a MobileNetV2 build, and the small convs of a
    backbone's last stages run at a seventh of the speed of its deconvolution head's.
    """
    known = [max(0.0, lat) for lat in latencies if lat is not None]
    total = sum(known)
    if trials <= 0 or total <= 0:
        return [0] * len(latencies)
    out = []
    for lat in latencies:
        e = trials * (lat or 0.0) / total
        out.append(0 if e < 0.5 else 1 << max(0, round(math.log2(max(1.0, e)))))
    return out
