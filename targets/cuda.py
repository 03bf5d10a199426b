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
        import shutil

        if shutil.which("nvcc") is None:
            import importlib.util

            if importlib.util.find_spec("cuda.bindings") is None:  # nvrtc
                raise TargetUnavailable(
                    "TVM 0.27 libraries carry CUDA source that is compiled when loaded: install "
                    "the CUDA toolkit (nvcc; then TVM_CUDA_COMPILE_MODE=nvcc) or "
                    "`pip install cuda-bindings` (nvrtc)")


def prepare_cuda_loading() -> None:
    """Before loading a CUDA artifact: TVM 0.27 compiles its CUDA source at load time
    through ``tvm.support.nvcc``; use nvcc when nvrtc (cuda-bindings) is missing."""
    import importlib.util
    import os
    import shutil

    if "TVM_CUDA_COMPILE_MODE" not in os.environ and shutil.which("nvcc") \
            and importlib.util.find_spec("cuda.bindings") is None:
        os.environ["TVM_CUDA_COMPILE_MODE"] = "nvcc"
    import tvm.support.nvcc  # noqa: F401  (registers tvm_callback_cuda_compile)
