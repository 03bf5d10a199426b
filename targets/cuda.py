"""An NVIDIA GPU through CUDA."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from .base import Target, TargetUnavailable


def cuda_driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class CUDA(Target):
    name: str = "cuda"
    description: str = "NVIDIA GPU through CUDA (sm_90 by default), measured locally"
    baselines: tuple[str, ...] = ("tensorrt-fp16", "tensorrt-int8")
    arch: str = "sm_90"

    def tvm_target(self) -> dict:
        return {"kind": "cuda", "arch": self.arch, "host": {"kind": "llvm"}}

    def num_threads(self) -> int:
        return 1

    def check_available(self) -> None:
        if not cuda_driver_present():
            raise TargetUnavailable(
                "target cuda needs an NVIDIA GPU with its driver (libcuda.so.1 not found on "
                "this machine); run the search on a machine with a GPU"
            )
        raise TargetUnavailable(
            "a CUDA driver is present, but building and measuring on CUDA is not built yet "
            "in this version of pose-tuner (remote targets: issue 6)"
        )
