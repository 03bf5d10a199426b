"""Search points and the grid of them.

A :class:`SearchPoint` is one configuration of the joint space: structured pruning
ratio, quantization mode and schedule (TVM's default schedules, or MetaSchedule with a
trial budget per model). Points are frozen and hashable; ``key`` is their stable text
form, used in artifact names and logs.

A :class:`SearchSpace` is declarative: the values of each dimension plus how pruning and
quantization are done (importance, channel rounding, fine-tuning steps, calibration). It
loads from a TOML file (:func:`load_space`); ``pose_tuner/search/default.toml`` is the shipped
default, and users pass their own with ``tuner search --space my_space.toml``.
"""

from __future__ import annotations

import itertools
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

QUANT_MODES = ("fp32", "fp16", "int8")
SCHEDULE_MODES = ("default", "metaschedule")
#: What this version can build; the rest of the space is defined but refused clearly.
SUPPORTED_QUANT = ("fp32", "fp16", "int8")
PRUNE_IMPORTANCE = ("l1", "group_norm")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
RECOVERY_METHODS = ("auto", "finetune", "distill")
DEFAULT_SPACE_FILE = Path(__file__).resolve().parent / "default.toml"


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
class PruningOptions:
    """How a pruning ratio is applied (see :mod:`pose_tuner.models.pruning`)."""

    importance: str = "l1"      # l1 | group_norm
    round_to: int = 8           # kept channels rounded to a multiple of this
    finetune_steps: int = 0     # recovery steps after pruning (0: none)
    #: how those steps recover accuracy: ``finetune`` on the built-in synthetic training
    #: data (what the zoo models were trained on), ``distill`` from the unpruned model on
    #: the user's images (no labels), ``auto``: fine-tune zoo models, distill the others
    recovery: str = "auto"

    def __post_init__(self):
        if self.importance not in PRUNE_IMPORTANCE:
            raise SearchSpaceError(f"unknown pruning importance {self.importance!r}; known: "
                                   f"{', '.join(PRUNE_IMPORTANCE)}")
        if self.round_to < 1:
            raise SearchSpaceError(f"pruning round_to must be >= 1, got {self.round_to}")
        if self.finetune_steps < 0:
            raise SearchSpaceError(f"finetune_steps must be >= 0, got {self.finetune_steps}")
        if self.recovery not in RECOVERY_METHODS:
            raise SearchSpaceError(f"unknown pruning recovery {self.recovery!r}; known: "
                                   f"{', '.join(RECOVERY_METHODS)}")

    def method(self, zoo_model: bool) -> str:
        """``finetune`` or ``distill``: what ``recovery`` means for a zoo model or another."""
        if self.recovery == "auto":
            return "finetune" if zoo_model else "distill"
        return self.recovery

    def tag_for(self, zoo_model: bool) -> str:
        steps = f"{'ft' if self.method(zoo_model) == 'finetune' else 'kd'}{self.finetune_steps}"
        return f"{self.importance}-r{self.round_to}-{steps}"

    @property
    def tag(self) -> str:
        """The tag of a zoo model's variants."""
        return self.tag_for(True)


@dataclass(frozen=True)
class QuantOptions:
    """How int8 points are calibrated (post-training static quantization)."""

    calibration: str = "minmax"   # minmax | percentile | entropy
    calibration_images: int = 32  # person crops from the training data

    def __post_init__(self):
        if self.calibration not in CALIBRATION_METHODS:
            raise SearchSpaceError(f"unknown calibration method {self.calibration!r}; known: "
                                   f"{', '.join(CALIBRATION_METHODS)}")
        if self.calibration_images < 1:
            raise SearchSpaceError("calibration_images must be >= 1")

    @property
    def tag(self) -> str:
        return f"{self.calibration}-n{self.calibration_images}"


@dataclass(frozen=True)
class SearchSpace:
    """The grid of points to search (every combination of the three dimensions) and how
    pruning and quantization are done."""

    prune_ratios: tuple[float, ...] = (0.0,)
    quant_modes: tuple[str, ...] = ("fp32",)
    schedules: tuple[tuple[str, int], ...] = field(default=(("metaschedule", 64),))
    pruning: PruningOptions = field(default_factory=PruningOptions)
    quantization: QuantOptions = field(default_factory=QuantOptions)

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

    def variant_tag(self, point: SearchPoint, zoo_model: bool = True) -> str:
        """What, beyond the point itself, decides the built model: the pruning options for
        a pruned point (their recovery as it applies to a zoo model or another), the
        calibration for an int8 point ('' for the plain model)."""
        parts = []
        if point.prune_ratio > 0:
            parts.append(self.pruning.tag_for(zoo_model))
        if point.quant == "int8":
            parts.append(self.quantization.tag)
        return "/".join(parts)

    def with_dimensions(self, prune_ratios=None, quant_modes=None, schedules=None) -> "SearchSpace":
        """A copy with some dimensions replaced (command-line overrides of a space file)."""
        kw = {k: tuple(v) for k, v in (("prune_ratios", prune_ratios), ("quant_modes", quant_modes),
                                       ("schedules", schedules)) if v is not None}
        return replace(self, **kw)

    def with_trials(self, trials: int) -> "SearchSpace":
        """A copy whose MetaSchedule entries are replaced by one with ``trials`` trials."""
        if trials <= 0:
            raise SearchSpaceError(f"trials must be > 0, got {trials} "
                                   "(use the schedule 'default' for no tuning)")
        return replace(self, schedules=tuple(s for s in self.schedules if s[0] != "metaschedule")
                       + (("metaschedule", int(trials)),))

    @classmethod
    def from_dict(cls, data: dict, source: str = "search space") -> "SearchSpace":
        """From the TOML layout: ``[pruning] ratios``, ``[quantization] modes``,
        ``[schedule] options`` (``default`` / ``metaschedule:N``) plus the options."""
        known = {"pruning", "quantization", "schedule"}
        extra = set(data) - known
        if extra:
            raise SearchSpaceError(f"{source}: unknown section(s) {', '.join(sorted(extra))}; "
                                   f"known: {', '.join(sorted(known))}")
        pr = dict(data.get("pruning", {}))
        qu = dict(data.get("quantization", {}))
        sc = dict(data.get("schedule", {}))
        try:
            ratios = tuple(float(r) for r in pr.pop("ratios", [0.0]))
            modes = tuple(str(m) for m in qu.pop("modes", ["fp32"]))
            schedules = tuple(parse_schedule(str(o)) for o in sc.pop("options", ["metaschedule:256"]))
        except (TypeError, ValueError) as exc:  # SearchSpaceError is a ValueError
            raise SearchSpaceError(f"{source}: {exc}") from None
        for sec, rest, opt_cls in (("pruning", pr, PruningOptions),
                                   ("quantization", qu, QuantOptions), ("schedule", sc, None)):
            allowed = {f.name for f in fields(opt_cls)} if opt_cls else set()
            bad = set(rest) - allowed
            if bad:
                raise SearchSpaceError(f"{source}: unknown key(s) in [{sec}]: {', '.join(sorted(bad))}")
        try:
            return cls(prune_ratios=ratios, quant_modes=modes, schedules=schedules,
                       pruning=PruningOptions(**pr), quantization=QuantOptions(**qu))
        except SearchSpaceError as exc:
            raise SearchSpaceError(f"{source}: {exc}") from None

    def to_dict(self) -> dict:
        return {
            "pruning": {"ratios": list(self.prune_ratios), "importance": self.pruning.importance,
                        "round_to": self.pruning.round_to,
                        "finetune_steps": self.pruning.finetune_steps,
                        "recovery": self.pruning.recovery},
            "quantization": {"modes": list(self.quant_modes),
                             "calibration": self.quantization.calibration,
                             "calibration_images": self.quantization.calibration_images},
            "schedule": {"options": ["default" if m == "default" else f"metaschedule:{t}"
                                     for m, t in self.schedules]},
        }


def load_space(path: str | os.PathLike | None = None) -> SearchSpace:
    """The search space in a TOML file (None: the shipped ``default.toml``)."""
    path = Path(path) if path is not None else DEFAULT_SPACE_FILE
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SearchSpaceError(f"search space file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise SearchSpaceError(f"search space file {path} is not valid TOML: {exc}") from None
    return SearchSpace.from_dict(data, source=str(path))
