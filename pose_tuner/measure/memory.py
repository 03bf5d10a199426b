"""Peak memory of running an artifact: what deploying it costs in RAM.

The figure is the resident memory the runtime adds by loading the artifact (its weights)
and running inference (activations, workspace, the runtime's arenas): a fresh process
imports the runtime, notes its resident set, loads the artifact, runs it three times,
and reports the highest resident set since minus that base (:func:`peak_memory_mb`).
The process is fresh so that nothing the build or the timing allocated counts.

On a device over RPC the device's session process is measured the same way through
pose-tuner's device server (``pose_tuner.rss``; TVM's plain server cannot say, so the
figure is then unknown). A GPU's memory is not resident memory: unknown there too.

Run as ``python -m pose_tuner.measure.memory BACKEND ARTIFACT SHAPE [CONFIG]``, it prints
``{"peak_memory_mb": ...}``; CONFIG (JSON) is the runtime's compile options where it takes
some (OpenVINO's precision hint and threads, as the timed session used them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from pose_tuner.measure.inputs import structured_input
from pose_tuner.measure.lean import without_torch

#: the runtimes a fresh process can load an artifact of
BACKENDS = ("tvm", "onnxruntime", "openvino")


def rss_bytes() -> int:
    """This process's resident set now."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _runner(backend: str, path: str, config: dict | None = None):
    """A callable running one inference of ``path`` with ``backend``."""
    import numpy as np

    if backend == "tvm":
        import tvm
        from tvm.runtime.vm import VirtualMachine

        dev = tvm.cpu()
        base = rss_bytes()
        vm = VirtualMachine(tvm.runtime.load_module(path), dev)
        return base, lambda x: vm["main"](tvm.runtime.tensor(x, dev))
    if backend == "onnxruntime":
        import onnxruntime as ort

        base = rss_bytes()
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return base, lambda x: sess.run(None, {name: x})
    if backend == "openvino":
        import openvino as ov

        core = ov.Core()
        base = rss_bytes()
        compiled = core.compile_model(core.read_model(path), "CPU", config or {})
        return base, lambda x: compiled(np.asarray(x))
    raise ValueError(f"no memory probe for backend {backend!r} (known: {', '.join(BACKENDS)})")


def measure_here(backend: str, path: str, shape: tuple[int, ...],
                 config: dict | None = None) -> float:
    """The resident memory (MB) loading and running ``path`` adds to this process."""
    base, run = _runner(backend, path, config)
    x = structured_input(tuple(shape))
    peak = rss_bytes()
    for _ in range(3):
        run(x)
        peak = max(peak, rss_bytes())
    return (peak - base) / 1e6


def peak_memory_mb(backend: str, path: str, shape, timeout_s: float = 300.0,
                   config: dict | None = None) -> float | None:
    """:func:`measure_here` in a fresh process (which inherits this one's environment);
    None (and why, on stderr) when it fails."""
    cmd = [sys.executable, "-m", "pose_tuner.measure.memory", backend, path,
           "x".join(str(int(v)) for v in shape)] + ([json.dumps(config)] if config else [])
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=True)
        return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_memory_mb"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, IndexError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        print(f"peak memory of {path} not measured: {str(detail).strip()[-500:]}",
              file=sys.stderr)
        return None


def remote_peak_memory_mb(path: str, rpc_spec, shape) -> float | None:
    """The resident memory loading and running ``path`` adds to a fresh session process on
    a device of the pool (pose-tuner's device server), or None where the device cannot
    say (TVM's plain server, a GPU)."""
    import tvm
    from tvm import relax

    from pose_tuner.measure.rpc import connect

    if rpc_spec.device != "cpu":
        return None
    sess = connect(rpc_spec)
    try:
        rss = sess.get_function("pose_tuner.rss")
    except Exception:  # noqa: BLE001 - TVM's plain server has no such function
        return None
    base = int(rss())
    sess.upload(path)
    dev = rpc_spec.remote_device(sess)
    vm = relax.VirtualMachine(sess.load_module(os.path.basename(path)), dev)
    x = structured_input(tuple(shape))
    peak = base
    for _ in range(3):
        vm["main"](tvm.runtime.tensor(x, dev))
        peak = max(peak, int(rss()))
    return (peak - base) / 1e6


def main(argv: list[str]) -> int:
    without_torch()
    backend, path, shape = argv[:3]
    config = json.loads(argv[3]) if len(argv) > 3 else None
    mb = measure_here(backend, path, tuple(int(v) for v in shape.split("x")), config)
    print(json.dumps({"peak_memory_mb": mb}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
