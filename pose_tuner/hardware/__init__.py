"""Hardware targets: the one registry that maps ``--target NAME`` to a Target.

``x86`` is an alias, not a registered target: it resolves to the best x86 target this
host runs (:func:`pose_tuner.hardware.x86.host_target`), so rows, tuning records and artifacts are
stored under the resolved name (``x86-avx2``, ``x86-vnni``, ...).

Import nothing heavy here: ``tuner targets`` and ``tuner --help`` must stay instant.
"""

from __future__ import annotations

from pose_tuner.hardware.base import Target, TargetUnavailable
from pose_tuner.hardware.cuda import CUDA
from pose_tuner.hardware.rasp4b import Rasp4B
from pose_tuner.hardware.x86 import HOST_ALIAS, host_target, members
# the x86 members register themselves with pose_tuner.hardware.x86 when defined
from pose_tuner.hardware import x86_avx2, x86_avx512, x86_avxvnni, x86_vnni  # noqa: F401

TARGETS: dict[str, type[Target]] = {
    **{cls.name: cls for cls in members()},
    "rasp4b": Rasp4B,
    "cuda": CUDA,
}


class UnknownTarget(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


def get_target(name: str, **options) -> Target:
    """The target registered as ``name`` (options such as ``tracker`` go to its class).

    ``x86`` gives this host's best x86 target, or raises TargetUnavailable where the host
    runs none (or ``PTUNER_HOST_ISA`` is wrong), with the reason.
    """
    if name == HOST_ALIAS:
        return host_target(**options)
    try:
        cls = TARGETS[name]
    except KeyError:
        raise UnknownTarget(
            f"unknown target {name!r}; known targets: {HOST_ALIAS} (this host), "
            f"{', '.join(sorted(TARGETS))} (see `tuner targets`)"
        ) from None
    fields = cls.__dataclass_fields__
    return cls(**{k: v for k, v in options.items() if k in fields and v is not None})


def list_targets() -> list[Target]:
    return [cls() for cls in TARGETS.values()]


def targets_with_option(option: str) -> list[str]:
    """The registered targets whose class takes ``option`` (e.g. ``arch``, ``tracker``)."""
    return [name for name, cls in TARGETS.items() if option in cls.__dataclass_fields__]


__all__ = ["HOST_ALIAS", "TARGETS", "Target", "TargetUnavailable", "UnknownTarget",
           "get_target", "list_targets", "targets_with_option"]
