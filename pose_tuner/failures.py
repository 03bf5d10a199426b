"""Why something failed, as data: the kinds every layer shares.

A failed build, measurement or baseline carries an :class:`ErrorKind` beside its
message; the database stores it (column ``error_kind``), and the rules that decide what
to do next read the kind, never the message: a point whose device went away is retried
once on another device and measured again by a later search
(:data:`MEASURE_AGAIN`); a point that failed for what it is (a wrong kernel, a crash of
TVM) is not. This module imports nothing, so any layer may use it.
"""

from __future__ import annotations

from enum import Enum


class ErrorKind(str, Enum):
    """What went wrong. The values are what the database stores."""

    #: the child process ran past its time limit
    TIMEOUT = "timeout"
    #: the child process died (a signal, a non-zero exit, no result written)
    CRASH = "crash"
    #: import, quantization, compilation or export raised
    BUILD = "build"
    #: MetaSchedule tuning measured none of its trials
    TUNING = "tuning"
    #: the artifact's outputs differ from the reference: its latency never counts
    MISMATCH = "numerical_mismatch"
    #: the artifact (or a baseline's session) raised while running or being timed
    RUN = "run"
    #: the remote device or its session went away mid-run
    DEVICE_LOST = "device_lost"
    #: the backend or device cannot run here (a package, a GPU, a device server missing)
    UNAVAILABLE = "unavailable"
    #: the target does not run this point (declared by the target, before any work)
    REFUSED = "refused"
    #: a search strategy left the point out: a bound on what it could measure is
    #: dominated by points already measured (a later search that asks for it measures it)
    DOMINATED = "dominated"
    #: the pruned variant the point is built from could not be made
    VARIANT = "variant"
    #: accuracy could not be measured (bad data, no ground truth)
    ACCURACY = "accuracy"
    #: a bad input or option the user can fix
    INPUT = "input"
    #: anything else
    ERROR = "error"


#: failures that say nothing about the point: a run is retried once on another device of
#: the pool, and a later search or night measures the point again
MEASURE_AGAIN = frozenset({ErrorKind.DEVICE_LOST})

#: failures that are a reason to skip, not an error of the tool or the point
SKIPS = frozenset({ErrorKind.UNAVAILABLE, ErrorKind.REFUSED, ErrorKind.DOMINATED})


def kind_of(value: str | ErrorKind | None) -> ErrorKind | None:
    """The kind a stored value names (None stays None; an unknown value is ``ERROR``)."""
    if value is None or isinstance(value, ErrorKind):
        return value
    try:
        return ErrorKind(value)
    except ValueError:
        return ErrorKind.ERROR
