"""An NVIDIA GPU through CUDA.

Artifacts carry compiled kernels, so a GPU machine needs only the NVIDIA driver and
TVM to run them. TVM compiles the kernels while it builds the library: with nvcc into
a fatbin, or with nvrtc (``pip install cuda-bindings``) into a cubin. It does that
only when its CUDA runtime (``libtvm_runtime_cuda.so`` in the TVM wheel) is loaded,
and that library needs ``libcuda.so.1``, which only a machine with a driver has.
Without a GPU, :func:`enable_codegen` loads it against a placeholder ``libcuda.so.1``
that pose-tuner compiles once (the role of the CUDA toolkit's own ``stubs/libcuda.so``:
every driver function returns ``CUDA_ERROR_STUB_LIBRARY``). Nothing runs a kernel in
such a process; without that runtime, TVM 0.27 would store the CUDA source instead,
to be compiled when a GPU machine loads the library.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pose_tuner.hardware.base import Target, TargetUnavailable

#: what every driver function of the placeholder returns, as NVIDIA's stub does
CUDA_ERROR_STUB_LIBRARY = 34


def cuda_driver_present() -> bool:
    """True when a real NVIDIA driver answers (not a stub ``libcuda.so.1``: neither the
    placeholder of :func:`stub_libcuda` nor the toolkit's). Creates no CUDA context, so
    forked children can still use the GPU."""
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
        from pose_tuner.measure.rpc import RPCSpec

        return RPCSpec.parse(self.tracker, self.rpc_key, cross_cc=self.cross_cc, device="cuda")

    def device_identity(self) -> str:
        if self.tracker is None:
            return super().device_identity()
        return f"GPU over RPC, key {self.rpc_key} at {self.tracker}"

    def check_available(self) -> None:
        if self.tracker is not None:
            self._check_pool()
            return
        if not cuda_driver_present():
            raise TargetUnavailable(
                "target cuda needs an NVIDIA GPU with its driver (no driver libcuda.so.1 "
                "answers on this machine); run the search on a machine with a GPU, or only "
                "compile here with `tuner build --target cuda`"
            )
        compile_mode()
        load_runtime()
        import tvm

        dev = tvm.cuda(0)
        if not dev.exist:
            raise TargetUnavailable("the NVIDIA driver answers but TVM sees no GPU (tvm.cuda(0))")
        wrong = arch_mismatch(self.arch, dev, f"this GPU ({dev.device_name})")
        if wrong:
            raise TargetUnavailable(wrong)

    def _check_pool(self) -> None:
        """Tracker reachable, GPUs under the key, and a probe built here runs on one."""
        from pose_tuner.measure.rpc import RPCError, probe, servers, tracker_summary

        spec = self.rpc_spec()
        try:
            if not servers(tracker_summary(spec), spec.key):
                raise RPCError(
                    f"the RPC tracker at {spec.tracker} has no device under key {spec.key!r}; on "
                    f"each GPU machine run `python -m tvm.exec.rpc_server --tracker "
                    f"{spec.tracker} --key {spec.key}` (the same TVM as here)")
            compile_mode()
            probe(spec, self.tvm_target())
        except RPCError as exc:
            raise TargetUnavailable(str(exc)) from None


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


def _runtime_library() -> Path:
    from tvm.base import _LOADED_LIBS

    return Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent / "libtvm_runtime_cuda.so"


def _runtime_loaded() -> bool:
    import tvm_ffi

    return tvm_ffi.get_global_func("ffi.Module.create.cuda", allow_missing=True) is not None


def load_runtime() -> None:
    """Load TVM's CUDA runtime if ``import tvm`` could not (it skips it silently).

    With no driver on this machine it is loaded against the placeholder
    ``libcuda.so.1`` (:func:`stub_libcuda`): enough to compile and save kernels, never
    to run one. A missing ``libcudart`` is looked up in the CUDA toolkit and in the
    ``nvidia-cuda-runtime`` wheel. Raises :class:`TargetUnavailable` with the loader's
    reason when it still fails.
    """
    if _runtime_loaded():
        return
    lib = _runtime_library()
    if not lib.exists():
        raise TargetUnavailable(f"this TVM has no CUDA runtime ({lib} is missing)")
    if not cuda_driver_present():
        ctypes.CDLL(str(stub_libcuda(lib)), mode=ctypes.RTLD_GLOBAL)
    try:
        ctypes.CDLL(str(lib))
    except OSError as exc:
        if "libcudart" not in str(exc) or not _preload_cudart(str(exc)):
            raise TargetUnavailable(f"TVM's CUDA runtime does not load: {exc}"
                                    + _CUDART_HINT * ("libcudart" in str(exc))) from None
        try:
            ctypes.CDLL(str(lib))
        except OSError as exc2:
            raise TargetUnavailable(f"TVM's CUDA runtime does not load: {exc2}") from None
    if not _runtime_loaded():
        raise TargetUnavailable(f"{lib} loaded but registered no CUDA module factory")


_CUDART_HINT = ("; install the CUDA runtime it was built against, e.g. "
                "`pip install 'nvidia-cuda-runtime==13.*'` for libcudart.so.13")


def _preload_cudart(error: str) -> bool:
    """Load the ``libcudart.so.N`` named in ``error`` from a CUDA toolkit (``CUDA_PATH``,
    ``CUDA_HOME``, beside nvcc, ``/usr/local/cuda*``) or the nvidia-cuda-runtime wheel."""
    import re

    m = re.search(r"(libcudart\.so\.\d+)", error)
    if not m:
        return False
    name = m.group(1)
    roots = [Path(os.environ[v]) for v in ("CUDA_PATH", "CUDA_HOME") if os.environ.get(v)]
    nvcc = shutil.which("nvcc")
    if nvcc:  # may be a wrapper script elsewhere: the usual install places follow
        roots.append(Path(nvcc).resolve().parent.parent)
    roots += [Path("/usr/local/cuda")] + sorted(Path("/usr/local").glob("cuda-*"), reverse=True)
    dirs = [r / sub for r in roots for sub in ("lib64", "lib", "targets/x86_64-linux/lib")]
    try:
        spec = importlib.util.find_spec("nvidia")
    except ModuleNotFoundError:
        spec = None
    for base in (spec.submodule_search_locations or []) if spec else []:
        dirs += sorted(Path(base).glob("cu*/lib")) + sorted(Path(base).glob("cuda_runtime/lib"))
    for d in dirs:
        if (d / name).exists():
            ctypes.CDLL(str(d / name), mode=ctypes.RTLD_GLOBAL)
            return True
    return False


def stub_libcuda(runtime_lib: Path) -> Path:
    """A placeholder ``libcuda.so.1`` defining the driver functions ``runtime_lib`` imports,
    each returning ``CUDA_ERROR_STUB_LIBRARY``; compiled once with the C compiler and
    cached under ``~/.cache/pose-tuner/cuda-stub``."""
    try:
        out = subprocess.run(["nm", "-D", "--undefined-only", str(runtime_lib)],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise TargetUnavailable(
            f"cannot list the driver functions of {runtime_lib} (binutils' nm): {exc}") from None
    names = sorted({line.split()[-1].split("@")[0] for line in out.splitlines()
                    if line.split() and line.split()[-1][:2] == "cu"
                    and line.split()[-1][2:3].isupper()})
    source = "".join(f"int {n}(void) {{ return {CUDA_ERROR_STUB_LIBRARY}; }}\n" for n in names)
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pose-tuner" \
        / "cuda-stub" / key
    path = folder / "libcuda.so.1"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stub.c").write_text(source)
    cc = os.environ.get("CC", "cc")
    tmp = folder / f"libcuda.so.1.{os.getpid()}"
    try:
        subprocess.run([cc, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(tmp),
                        str(folder / "stub.c")], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise TargetUnavailable(
            f"cannot compile the placeholder libcuda.so.1 with {cc}: {detail}") from None
    os.replace(tmp, path)
    return path


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
