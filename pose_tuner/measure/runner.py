"""Time anything the same way, and load and run compiled artifacts (local or remote).

One timing rule (:class:`Timing`) for every backend: warm-up runs, then one run per
repeat, as many repeats as fit a time budget (between ``min_repeat`` and
``max_repeat``), reported as median / p90 / mean / std / min in milliseconds. Two clocks:
this host's (:func:`time_callable`, for CPUs here and for every vendor stack) and the
device's own (:func:`device_time`, TVM's ``time_evaluator``, for GPUs and remote devices:
no launch queue or network in the figure). Both hold the machine's timing lock.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from pose_tuner.measure.timing_lock import timing_lock


@dataclass(frozen=True)
class LatencyStats:
    median_ms: float
    p90_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    runs: int

    def as_dict(self) -> dict:
        return asdict(self)


def latency_stats(seconds: list[float]) -> LatencyStats:
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return LatencyStats(
        median_ms=float(np.median(ms)),
        p90_ms=float(np.percentile(ms, 90)),
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std()),
        min_ms=float(ms.min()),
        runs=int(ms.size),
    )


@dataclass(frozen=True)
class Timing:
    """How a latency is measured: ``warmup`` runs, then as many timed repeats as fit
    ``budget_s`` seconds, at least ``min_repeat`` and at most ``max_repeat``."""

    budget_s: float = 10.0
    min_repeat: int = 5
    max_repeat: int = 50
    warmup: int = 3

    def repeats(self, once) -> int:
        """Run ``once()`` (one synchronised inference) timed, then the rest of the warm-up
        runs, and return how many timed repeats fit the budget: the sizing rule every
        backend's timing shares, whichever clock then times the repeats."""
        t = time.perf_counter()
        once()
        first = time.perf_counter() - t
        for _ in range(max(0, self.warmup - 1) if first < self.budget_s / 10 else 0):
            once()
        return int(min(self.max_repeat,
                       max(self.min_repeat, self.budget_s / max(first, 1e-6))))


def time_callable(fn, timing: Timing = Timing()) -> LatencyStats:
    """Time ``fn()`` on this host's clock, the same way for every backend (TVM, ONNX
    Runtime, ...), holding the machine's timing lock (:mod:`pose_tuner.measure.timing_lock`)."""
    samples = []
    with timing_lock():
        for _ in range(timing.repeats(fn)):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
    return latency_stats(samples)


def interleaved(fns: dict, rounds: int, timing: Timing, progress=None) -> dict[str, list[float]]:
    """Time each of ``fns`` (name -> callable running one inference) in ``rounds``
    interleaved rounds, so that machine noise hits them alike: name -> each round's median
    in ms. ``progress(round)`` is called after each round."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    with timing_lock():  # all rounds: another process's timing would hit them unevenly
        for r in range(rounds):
            for name, fn in fns.items():
                samples[name].append(time_callable(fn, timing).median_ms)
            if progress is not None:
                progress(r + 1)
    return samples


class _VM:
    """A loaded Relax VM (``self.vm`` on device ``self.dev``): runs ``main`` on an input."""

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self.vm["main"](self.tvm.runtime.tensor(x, self.dev))
        if not hasattr(out, "numpy"):  # a tuple of outputs: the first is the heatmap
            out = out[0]
        return out.numpy()


class LocalVM(_VM):
    """A Relax VM executable loaded on this machine's CPU (or its GPU: ``device="cuda"``)."""

    def __init__(self, artifact_path: str, device: str = "cpu"):
        import tvm
        from tvm.runtime.vm import VirtualMachine  # not tvm.relax: a runtime-only TVM has it

        self.tvm = tvm
        if device == "cuda":
            from pose_tuner.measure.cuda_runtime import load_runtime

            load_runtime()
        self.on_gpu = device == "cuda"
        self.dev = tvm.cuda(0) if self.on_gpu else tvm.cpu()
        self.vm = VirtualMachine(tvm.runtime.load_module(artifact_path), self.dev)

    def latency(self, x: np.ndarray, timing: Timing = Timing()) -> LatencyStats:
        arg = self.tvm.runtime.tensor(x, self.dev)
        fn = self.vm["main"]
        if self.on_gpu:
            # a GPU runs asynchronously: time on the device, synchronised per run
            with timing_lock(f"cuda{self.dev.index}"):
                return device_time(self.vm, self.dev, arg, timing)
        return time_callable(lambda: fn(arg), timing)


def device_time(vm, dev, arg, timing: Timing = Timing()) -> LatencyStats:
    """Time ``main`` with the device's own timer (``time_evaluator``): no host, network or
    launch queue in the figure. Used for remote devices and GPUs."""
    def once():
        vm["main"](arg)
        dev.sync()

    repeat = timing.repeats(once)
    vm.set_input("main", arg)
    timer = vm.time_evaluator("invoke_stateful", dev, number=1, repeat=repeat)
    return latency_stats(list(timer("main").results))


class RemoteVM(_VM):
    """A Relax VM executable (a cross-linked shared library) uploaded to a device of an
    RPC pool and run there; latency comes from the device's own timer, so the network
    is not in the figure."""

    def __init__(self, artifact_path: str, rpc_spec):
        import os

        import tvm
        from tvm import relax

        from pose_tuner.measure.rpc import connect

        self.tvm = tvm
        self.sess = connect(rpc_spec)
        self.sess.upload(artifact_path)
        self.dev = rpc_spec.remote_device(self.sess)
        rmod = self.sess.load_module(os.path.basename(artifact_path))
        self.vm = relax.VirtualMachine(rmod, self.dev)

    def latency(self, x: np.ndarray, timing: Timing = Timing()) -> LatencyStats:
        arg = self.tvm.runtime.tensor(x, self.dev)
        return device_time(self.vm, self.dev, arg, timing)

    def close(self) -> None:
        """End the session: its device goes back to the pool (a pool of one device would
        otherwise make the next session wait for it)."""
        import gc

        self.vm = self.dev = self.sess = None
        gc.collect()
