"""The CUDA toolchain: how TVM compiles CUDA kernels on this machine, GPU or not.

Artifacts carry compiled kernels, so a GPU machine needs only the NVIDIA driver and
TVM to run them. TVM compiles the kernels while it builds the library: with nvcc into
a fatbin, or with nvrtc (``pip install cuda-bindings``) into a cubin (:func:`compile_mode`).
It does that only when its CUDA runtime (``libtvm_runtime_cuda.so`` in the TVM wheel) is
loaded (:func:`~pose_tuner.measure.cuda_runtime.load_runtime`), and that library needs ``libcuda.so.1``, which only a
machine with a driver has. Without a GPU, :func:`enable_codegen` loads it against a
placeholder ``libcuda.so.1`` (:mod:`pose_tuner.measure.cuda_runtime`). Nothing runs a
kernel in such a process; without that
runtime, TVM 0.27 would store the CUDA source instead, to be compiled when a GPU machine
loads the library. :func:`fatbin_images` lists the GPU images a built library carries.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

from pose_tuner.hardware.base import TargetUnavailable
from pose_tuner.measure.cuda_runtime import load_runtime

def compile_mode() -> str:
    """How TVM compiles CUDA kernels here: ``nvcc`` (a fatbin) or ``nvrtc`` (a cubin).

    ``TVM_CUDA_COMPILE_MODE`` decides when set; otherwise nvcc when it is on PATH, else
    nvrtc when cuda-bindings is installed.
    """
    mode = os.environ.get("TVM_CUDA_COMPILE_MODE")
    if mode:
        return mode.lower()
    if shutil.which("nvcc"):
        return "nvcc"
    try:
        if importlib.util.find_spec("cuda.bindings") is not None:
            return "nvrtc"
    except ModuleNotFoundError:  # no "cuda" package at all
        pass
    raise TargetUnavailable(
        "compiling for cuda needs a CUDA compiler: the CUDA toolkit's nvcc on PATH, or "
        "`pip install cuda-bindings` (nvrtc)")


def enable_codegen() -> str:
    """Make ``tvm.compile`` put compiled kernels into CUDA libraries; returns the compile
    mode (``nvcc`` or ``nvrtc``). Call it before building for a CUDA target, and build
    inside ``with target:`` so the kernels are compiled for the target's ``arch``."""
    mode = compile_mode()
    os.environ["TVM_CUDA_COMPILE_MODE"] = mode
    import tvm.support.nvcc  # noqa: F401  (registers tvm_callback_cuda_compile)

    load_runtime()
    return mode


def fatbin_images(data: bytes) -> list[str]:
    """The GPU images in the fatbins embedded in ``data`` (a library's bytes), e.g.
    ``["sm_90 cubin"]``, or ``["sm_90 ptx"]`` for PTX the driver compiles when loading.
    Empty when the library carries none (CUDA source, or no kernels)."""
    import struct

    images: list[str] = []
    at = data.find(_FATBIN_MAGIC)
    while at >= 0 and at + 16 <= len(data):
        _, _, header, size = struct.unpack_from("<IHHQ", data, at)
        pos, end = at + header, min(at + header + size, len(data))
        while pos + 32 <= end:
            kind, _, entry_header, entry_size = struct.unpack_from("<HHIQ", data, pos)
            arch = struct.unpack_from("<I", data, pos + 28)[0]
            if kind not in (1, 2) or entry_header < 32:
                break
            images.append(f"sm_{arch} {'ptx' if kind == 1 else 'cubin'}")
            pos += entry_header + entry_size
        at = data.find(_FATBIN_MAGIC, max(end, at + 1))
    return images


_FATBIN_MAGIC = (0xBA55ED50).to_bytes(4, "little")
