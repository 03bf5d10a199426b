"""What a search is asked to do (:class:`SearchConfig`) and what it found."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pose_tuner.models.source import PreparedModel
from pose_tuner.search.space import SearchSpace, load_space
from pose_tuner.search.strategies.base import DEFAULT_STRATEGY
from pose_tuner.store.records import CandidateRecord

if TYPE_CHECKING:
    from pose_tuner.accuracy.benchmark import AccuracySpec

DEFAULT_SPACE = load_space()


class SearchError(RuntimeError):
    """The search cannot start; the message says why and how to fix it."""


@dataclass(frozen=True)
class SearchConfig:
    target: str = "x86"
    model: str = "shufflenetv2_fpn"
    input_size: tuple[int, int] | None = None
    #: the ONNX output(s) that are the pose head, where several outputs could be
    output: str | None = None
    space: SearchSpace = field(default=DEFAULT_SPACE)
    log_dir: str = "logs"
    db_url: str | None = None
    force: bool = False
    timeout_s: float = 3600.0
    measure_budget_s: float = 10.0
    threads: int | None = None
    tracker: str | None = None
    #: the RPC key of a remote target's device pool (None: the target's default)
    rpc_key: str | None = None
    #: the GPU architecture of the cuda target, e.g. "sm_86" (None: the target's sm_90)
    cuda_arch: str | None = None
    baselines: bool = True
    #: data accuracy is measured on (None: latency only)
    accuracy: "AccuracySpec | None" = None
    #: stop starting candidates after this many seconds (None: no limit)
    time_budget_s: float | None = None
    #: cheap-first (the untuned points, then the tuned ones that can reach the front) |
    #: grid (every point, cheapest first) | nsga2 | tpe (Optuna multi-objective samplers)
    strategy: str = DEFAULT_STRATEGY
    #: points an Optuna strategy builds and measures (None: half of the grid, at least 4)
    n_trials: int | None = None
    #: seed of the Optuna sampler
    seed: int = 0
    #: what an Optuna strategy optimises: ap and latency, plus size if listed
    objectives: tuple[str, ...] = ("ap", "latency")


@dataclass(frozen=True)
class SearchOutcome:
    model: PreparedModel
    records: list[CandidateRecord]
    front: list[CandidateRecord]
    ran: int
    reused: int
    seconds: float


def check_log_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise SearchError(f"cannot create log directory {path}: {exc.strerror}; "
                          "pass --log-dir with a writable place") from None
    if not os.access(path, os.W_OK):
        raise SearchError(f"log directory {path} is not writable; pass --log-dir with a writable place")
