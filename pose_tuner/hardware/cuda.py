"""An NVIDIA GPU through CUDA: the ``CUDA`` target and the facts about GPU architectures.

A description: whether a real NVIDIA driver answers here (:func:`cuda_driver_present`),
which arch names TVM accepts (:func:`valid_arch`) and which built arch runs on which GPU
(:func:`runs_on`, :func:`arch_mismatch`). Compiling kernels (nvcc / nvrtc, TVM's CUDA
runtime, a placeholder driver where there is none) is the compile layer's CUDA toolchain,
:mod:`pose_tuner.compile.toolchains.cuda`.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from pose_tuner.hardware.base import Target, TargetUnavailable
from pose_tuner.hardware.remote import RPCError, RPCSpec


def cuda_driver_present() -> bool:
    """True when a real NVIDIA driver answers (not a stub ``libcuda.so.1``: neither the
    placeholder of :func:`pose_tuner.measure.cuda_runtime.stub_libcuda` nor the
    toolkit's). Creates no CUDA context, so forked children can still use the GPU."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        get_version = lib.cuDriverGetVersion
    except (OSError, AttributeError):
        return False
    version = ctypes.c_int(0)
    return get_version(ctypes.byref(version)) == 0 and version.value > 0


@dataclass(frozen=True)
class CUDA(Target):
    """This machine's GPU, or with ``tracker`` the GPUs of an RPC pool: x86-64 machines
    with an NVIDIA GPU, each running TVM's RPC server (or pose-tuner's device server)
    with ``--tracker HOST:PORT --key cuda``. Libraries are built and linked here (host
    code with ``cross_cc``), uploaded and timed on the remote GPU."""

    name: str = "cuda"
    device: str = "cuda"
    description: str = ("NVIDIA GPU through CUDA (sm_90 by default), on this machine or "
                        "over TVM RPC (--tracker)")
    baselines: tuple[str, ...] = ("tensorrt-fp16", "tensorrt-int8")
    arch: str = "sm_90"
    tracker: str | None = None
    rpc_key: str = "cuda"
    #: links the host side of libraries for remote GPU machines (x86-64 Linux)
    cross_cc: str = "g++"

    def __post_init__(self):
        object.__setattr__(self, "remote", self.tracker is not None)

    def tvm_target(self) -> dict:
        # the per-block limits of sm_90 (TVM's nvidia/nvidia-h100 tag; H200 is the same
        # chip): MetaSchedule's GPU rules need them, "arch" alone leaves them unset
        return {"kind": "cuda", "arch": self.arch, "max_threads_per_block": 1024,
                "max_shared_memory_per_block": 49152, "registers_per_block": 65536,
                "thread_warp_size": 32, "host": {"kind": "llvm"}}

    def num_threads(self) -> int:
        return 1

    def rpc_spec(self):
        if self.tracker is None:
            return None
        try:
            return RPCSpec.parse(self.tracker, self.rpc_key, cross_cc=self.cross_cc,
                                 device="cuda")
        except RPCError as exc:
            raise TargetUnavailable(str(exc)) from None

    def attach_help(self) -> str:
        spec = self.rpc_spec()
        if spec is None:
            return ""
        return (f"on each GPU machine run `python -m tvm.exec.rpc_server --tracker "
                f"{spec.tracker} --key {spec.key}` (the same TVM as here)")

    def device_mismatch(self, dev, which: str) -> str | None:
        return arch_mismatch(self.arch, dev, which)

    def device_identity(self, emulated: bool = False) -> str:
        if self.tracker is None:
            return super().device_identity()
        return f"GPU over RPC, key {self.rpc_key} at {self.tracker}"

    def check_available(self) -> None:
        """A GPU driver answers here (local), or a tracker address parses (over RPC)."""
        if self.tracker is not None:
            self.rpc_spec()
            return
        if not cuda_driver_present():
            raise TargetUnavailable(
                "target cuda needs an NVIDIA GPU with its driver (no driver libcuda.so.1 "
                "answers on this machine); run the search on a machine with a GPU, or only "
                "compile here with `tuner build --target cuda`"
            )


def valid_arch(text: str) -> bool:
    """Whether ``text`` names a GPU architecture the way TVM's cuda target does (sm_86)."""
    import re

    return re.fullmatch(r"sm_\d{2,3}[a-z]?", text) is not None


def runs_on(built: str, gpu: str) -> bool:
    """Whether a cubin for ``built`` (e.g. ``sm_86``) runs on a ``gpu`` of that arch: same
    major version, a minor version at least as high (``sm_90a`` code only on sm_90)."""
    def parse(arch: str) -> tuple[int, int, str]:
        digits = arch[3:].rstrip("abcdefghijklmnopqrstuvwxyz")
        return int(digits[:-1]), int(digits[-1]), arch[3 + len(digits):]

    b, g = parse(built), parse(gpu)
    if b[2]:  # arch-specific features
        return b[:2] == g[:2]
    return b[0] == g[0] and g[1] >= b[1]


def arch_mismatch(built: str, dev, which: str) -> str | None:
    """Why kernels built for ``built`` cannot run on GPU ``dev`` (a local or an RPC
    device, named ``which`` in the message), with the flag to pass; None when they can."""
    have = "sm_" + dev.compute_version.replace(".", "")
    if runs_on(built, have):
        return None
    return f"{which} is {have}; kernels built for {built} do not run on it: pass --cuda-arch {have}"
