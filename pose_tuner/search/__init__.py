"""The search: what the tuner varies and how it walks that space.

* :mod:`~pose_tuner.search.space` – search points and the declarative space
  (``default.toml``): pruning ratio x quantization mode x schedule tuning;
* :mod:`~pose_tuner.search.strategies` – the strategies (cheap-first, the grid, Optuna's
  samplers), and :mod:`~pose_tuner.search.replay` to compare them on recorded measurements;
* :mod:`~pose_tuner.search.loop` – a search: the target checked, the model prepared, each
  point run as a job, its record stored, the baselines beside it, the front.

This package's ``__init__`` re-exports the space's names (it imports no heavy module).
"""

from pose_tuner.search.space import (
    DEFAULT_SPACE_FILE,
    QUANT_MODES,
    PruningOptions,
    QuantOptions,
    SCHEDULE_MODES,
    SearchPoint,
    SearchSpace,
    SearchSpaceError,
    load_space,
    parse_schedule,
)

__all__ = [
    "DEFAULT_SPACE_FILE",
    "QUANT_MODES",
    "PruningOptions",
    "QuantOptions",
    "SCHEDULE_MODES",
    "SearchPoint",
    "SearchSpace",
    "SearchSpaceError",
    "load_space",
    "parse_schedule",
]
