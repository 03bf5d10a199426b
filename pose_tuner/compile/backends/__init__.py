"""Compile backends: one per TVM target kind, one file per implementation.

:func:`backend_for` gives the :class:`~pose_tuner.compile.backends.base.Backend` of a TVM
target (the contract is in :mod:`pose_tuner.compile.backends.base`): how the pipeline
prepares a module for the device, the MetaSchedule design space, which tensor intrinsics
need registering and how a module is built.
"""

from __future__ import annotations

from pose_tuner.compile.backends.base import Backend, UnsupportedTargetKind
from pose_tuner.compile.backends.cpu import CPUBackend
from pose_tuner.compile.backends.cuda import CUDABackend

#: the backend of each TVM target kind name
BACKENDS: dict[str, Backend] = {b.kind: b for b in (CPUBackend(), CUDABackend())}


def backend_for(tvm_target) -> Backend:
    """The backend of ``tvm_target`` (a ``tvm.target.Target`` or its JSON dict), by its
    kind; :class:`UnsupportedTargetKind` for a kind no backend serves."""
    kind = tvm_target["kind"] if isinstance(tvm_target, dict) else tvm_target.kind.name
    try:
        return BACKENDS[kind]
    except KeyError:
        raise UnsupportedTargetKind(
            f"pose-tuner cannot compile for TVM target kind {kind!r}: it has compile "
            f"backends for {', '.join(sorted(BACKENDS))} (pose_tuner/compile/backends/)"
        ) from None


__all__ = ["BACKENDS", "Backend", "UnsupportedTargetKind", "backend_for"]
