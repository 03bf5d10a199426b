"""What the tuner varies: pruning ratio x quantization mode x schedule tuning.

This package imports neither ``tuner`` nor ``targets``.
"""

from .space import (
    QUANT_MODES,
    SCHEDULE_MODES,
    SearchPoint,
    SearchSpace,
    SearchSpaceError,
    parse_schedule,
)

__all__ = [
    "QUANT_MODES",
    "SCHEDULE_MODES",
    "SearchPoint",
    "SearchSpace",
    "SearchSpaceError",
    "parse_schedule",
]
