"""Compiler toolchains the compile backends drive outside TVM (one file per toolchain):
:mod:`~pose_tuner.compile.toolchains.cuda` finds the CUDA compiler and reads the GPU
images a built library carries. The CPU needs none: LLVM is inside TVM.
"""

from __future__ import annotations


def check_toolchain(device: str) -> None:
    """Raise :class:`~pose_tuner.hardware.base.TargetUnavailable` (saying what to
    install) when this machine cannot compile kernels for ``device`` (``Target.device``)."""
    from pose_tuner.compile.toolchains import cuda

    checks = {"cpu": lambda: None, "cuda": cuda.compile_mode}
    try:
        check = checks[device]
    except KeyError:
        raise ValueError(f"no toolchain known for device {device!r} "
                         f"(known: {', '.join(sorted(checks))})") from None
    check()
