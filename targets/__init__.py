"""Hardware targets: the one registry that maps ``--target NAME`` to a Target.

Import nothing heavy here: ``tuner targets`` and ``tuner --help`` must stay instant.
"""

from __future__ import annotations

from .base import Target, TargetUnavailable
from .cuda import CUDA
from .rasp4b import Rasp4B
from .x86_vnni import X86VNNI

TARGETS: dict[str, type[Target]] = {
    "x86-vnni": X86VNNI,
    "rasp4b": Rasp4B,
    "cuda": CUDA,
}


class UnknownTarget(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


def get_target(name: str, **options) -> Target:
    """The target registered as ``name`` (options such as ``tracker`` go to its class)."""
    try:
        cls = TARGETS[name]
    except KeyError:
        raise UnknownTarget(
            f"unknown target {name!r}; known targets: {', '.join(sorted(TARGETS))} "
            "(see `tuner targets`)"
        ) from None
    fields = cls.__dataclass_fields__
    return cls(**{k: v for k, v in options.items() if k in fields and v is not None})


def list_targets() -> list[Target]:
    return [cls() for cls in TARGETS.values()]


__all__ = ["TARGETS", "Target", "TargetUnavailable", "UnknownTarget", "get_target", "list_targets"]
