"""Is a latency trustworthy? The conditions of a timing, and a check of them.

Around each timing on this machine the check records:

* the spread of the timed repeats, ``(p90 - median) / median``;
* how much of this machine's CPU other processes used while it timed
  (``others_cpu``: busy CPU time of the whole machine minus this process's, over the
  wall time and cores), the direct sign of contention;
* a fixed reference kernel (a numpy workload that takes the same time on an idle machine)
  timed just before and just after: a relative change (``reference_drift``) says the
  machine changed speed meanwhile (contention, frequency scaling);
* the 1-minute load average, for the record.

A timing whose conditions exceed :data:`LIMITS` is noisy: :func:`checked_latency` times
it again, and a figure still noisy after that is kept but flagged; the flag and the
conditions are stored with it, and the nightly regression rule ignores flagged figures.
A device over RPC is another machine: there only the spread is known.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

#: a timing is noisy when any of these is exceeded
LIMITS = {"spread": 0.25, "others_cpu": 0.15, "reference_drift": 0.20}


@dataclass(frozen=True)
class Conditions:
    """What the machine was doing while a latency was timed."""

    spread: float
    others_cpu: float | None = None
    reference_drift: float | None = None
    load_1m: float | None = None
    #: how many timings it took (a noisy one is timed again once)
    attempts: int = 1

    @property
    def reasons(self) -> list[str]:
        """Which limits the timing exceeded ([] for a clean one)."""
        out = []
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            if value is not None and value > limit:
                out.append(f"{name} {value:.2f} > {limit}")
        return out

    @property
    def noisy(self) -> bool:
        return bool(self.reasons)

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "noisy": self.noisy}, sort_keys=True)


def reference_kernel_ms(repeats: int = 5) -> float:
    """The median time of a fixed workload on one core: a 192x192 float64 matrix product
    and a pass over 2 MB, the same inputs every time."""
    a = np.linspace(0.0, 1.0, 192 * 192).reshape(192, 192)
    b = np.linspace(0.0, 1.0, 256 * 1024)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        (a @ a).sum()
        b.sum()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


class _CPUWatch:
    """CPU time of the whole machine and of this process over a window."""

    def __init__(self):
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()

    def _busy(self) -> float:
        t = self.psutil.cpu_times()
        return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) \
            + getattr(t, "softirq", 0.0)

    def _own(self) -> float:
        t = self.me.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def start(self) -> None:
        self.wall, self.busy, self.own = time.monotonic(), self._busy(), self._own()

    def others_share(self) -> float:
        """The share of the machine's CPU other processes used since :meth:`start`."""
        wall = max(time.monotonic() - self.wall, 1e-6)
        others = (self._busy() - self.busy) - (self._own() - self.own)
        return max(0.0, others / (wall * (os.cpu_count() or 1)))


def spread(stats) -> float:
    return (stats.p90_ms - stats.median_ms) / max(stats.median_ms, 1e-9)


def checked_latency(time_it, local: bool = True, attempts: int = 2):
    """``time_it()`` (a :class:`~pose_tuner.measure.runner.LatencyStats`) with the
    conditions it was timed under, timed again while noisy, ``attempts`` times at most:
    ``(stats, conditions)`` of the last timing. ``local``: the timing ran on this machine
    (else only the spread is judged)."""
    watch = _CPUWatch() if local else None
    for attempt in range(1, attempts + 1):
        before = reference_kernel_ms() if local else None
        if watch is not None:
            watch.start()
        stats = time_it()
        others = watch.others_share() if watch is not None else None
        drift = None
        if local:
            after = reference_kernel_ms()
            drift = abs(after - before) / max(min(after, before), 1e-9)
        cond = Conditions(spread=spread(stats), others_cpu=others, reference_drift=drift,
                          load_1m=os.getloadavg()[0], attempts=attempt)
        if not cond.noisy:
            break
    return stats, cond
