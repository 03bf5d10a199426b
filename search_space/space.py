"""Search points and the grid of them.

A :class:`SearchPoint` is one configuration of the joint space: structured pruning
ratio, quantization mode and schedule (TVM's default schedules, or MetaSchedule with a
trial budget per model). Points are frozen and hashable; ``key`` is their stable text
form, used in artifact names and logs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

QUANT_MODES = ("fp32", "fp16", "int8")
SCHEDULE_MODES = ("default", "metaschedule")
#: What this version can build; the rest of the space is defined but refused clearly.
SUPPORTED_QUANT = ("fp32",)
SUPPORTED_PRUNE = (0.0,)


class SearchSpaceError(ValueError):
    """A search space or point that cannot be searched; the message says why."""


@dataclass(frozen=True, order=True)
class SearchPoint:
    prune_ratio: float = 0.0
    quant: str = "fp32"
    schedule: str = "metaschedule"
    trials: int = 0

    def __post_init__(self):
        if not 0.0 <= self.prune_ratio < 1.0:
            raise SearchSpaceError(f"pruning ratio must be in [0, 1), got {self.prune_ratio}")
        if self.quant not in QUANT_MODES:
            raise SearchSpaceError(
                f"unknown quantization mode {self.quant!r}; known: {', '.join(QUANT_MODES)}"
            )
        if self.schedule not in SCHEDULE_MODES:
            raise SearchSpaceError(
                f"unknown schedule mode {self.schedule!r}; known: {', '.join(SCHEDULE_MODES)}"
            )
        if self.schedule == "default" and self.trials != 0:
            raise SearchSpaceError("the default schedule takes no tuning trials")
        if self.schedule == "metaschedule" and self.trials <= 0:
            raise SearchSpaceError(
                f"metaschedule needs a trial budget > 0, got {self.trials} "
                "(use the `default` schedule for no tuning)"
            )

    @property
    def key(self) -> str:
        sched = "default" if self.schedule == "default" else f"ms{self.trials}"
        return f"p{self.prune_ratio:.2f}-{self.quant}-{sched}"

    @property
    def schedule_label(self) -> str:
        return "default" if self.schedule == "default" else f"metaschedule:{self.trials}"


def parse_schedule(text: str) -> tuple[str, int]:
    """``default`` -> ("default", 0); ``metaschedule:64`` or ``ms:64`` -> ("metaschedule", 64)."""
    text = text.strip().lower()
    if text == "default":
        return "default", 0
    name, _, n = text.partition(":")
    if name in ("metaschedule", "ms"):
        try:
            trials = int(n)
        except ValueError:
            raise SearchSpaceError(
                f"bad schedule {text!r}: write metaschedule:N with N trials per model"
            ) from None
        if trials <= 0:
            raise SearchSpaceError(
                f"bad schedule {text!r}: the trial budget must be > 0 "
                "(use `default` for no tuning)"
            )
        return "metaschedule", trials
    raise SearchSpaceError(f"unknown schedule {text!r}; write `default` or `metaschedule:N`")


@dataclass(frozen=True)
class SearchSpace:
    """The grid of points to search: every combination of the three dimensions."""

    prune_ratios: tuple[float, ...] = (0.0,)
    quant_modes: tuple[str, ...] = ("fp32",)
    schedules: tuple[tuple[str, int], ...] = field(default=(("metaschedule", 64),))

    def __post_init__(self):
        for name, values in (
            ("pruning ratios", self.prune_ratios),
            ("quantization modes", self.quant_modes),
            ("schedules", self.schedules),
        ):
            if not values:
                raise SearchSpaceError(f"the search space has no {name}")
        for q in self.quant_modes:
            if q in QUANT_MODES and q not in SUPPORTED_QUANT:
                raise SearchSpaceError(
                    f"quantization mode {q!r} is not supported yet (supported: "
                    f"{', '.join(SUPPORTED_QUANT)})"
                )
        for p in self.prune_ratios:
            if p not in SUPPORTED_PRUNE:
                raise SearchSpaceError(
                    f"pruning ratio {p} is not supported yet (supported: "
                    f"{', '.join(map(str, SUPPORTED_PRUNE))})"
                )
        self.points()  # validates every point

    def points(self) -> list[SearchPoint]:
        """All points, cheapest first (default schedules, then by trial budget)."""
        pts = [
            SearchPoint(p, q, mode, trials)
            for p, q, (mode, trials) in itertools.product(
                self.prune_ratios, self.quant_modes, self.schedules
            )
        ]
        return sorted(dict.fromkeys(pts), key=lambda s: (s.trials, s.prune_ratio, s.quant))
