"""TVM's CUDA runtime in this process: what running (and compiling) for a GPU needs.

``import tvm`` skips its CUDA runtime (``libtvm_runtime_cuda.so``) silently when it does
not load; :func:`load_runtime` loads it or says why not. That library needs
``libcuda.so.1``, which only a machine with the NVIDIA driver has: without one it is
loaded against a placeholder that pose-tuner compiles once (:func:`stub_libcuda`, the
role of the CUDA toolkit's own ``stubs/libcuda.so``: every driver function returns
``CUDA_ERROR_STUB_LIBRARY``), enough to compile and save kernels, never to run one.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from pose_tuner.hardware.base import TargetUnavailable
from pose_tuner.hardware.cuda import cuda_driver_present

#: what every driver function of the placeholder returns, as NVIDIA's stub does
CUDA_ERROR_STUB_LIBRARY = 34


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
