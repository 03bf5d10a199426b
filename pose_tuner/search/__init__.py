"""What the tuner varies: pruning ratio x quantization mode x schedule tuning.

This package imports neither ``tuner`` nor ``targets``.
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
