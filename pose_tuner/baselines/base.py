"""The ``Baseline`` contract: another inference stack, measured like a TVM candidate.

A baseline is one (backend, precision) pair, e.g. ONNX Runtime INT8. It

* says whether it can run here (``check_available`` raises :class:`BaselineUnavailable`
  with the reason: package missing, no GPU, wrong target, no way to hold it to a target
  whose CPUs have less than this host's...). A skipped baseline is recorded with that
  reason, never given a number;
* turns the reference ONNX file into a runnable session (``prepare``), quantizing with
  the calibration inputs it is given where its precision needs them;
* declares how its outputs are checked against the FP32 reference (``numerics``):
  ``exact`` for FP32 stacks, ``approx`` for reduced precision (bf16, fp16, int8), whose
  accuracy is then judged by the evaluator, not by bit-closeness.

Sessions expose ``run(x) -> heatmaps``, ``latency(x, ...) -> LatencyStats`` (the shared
:func:`pose_tuner.measure.runner.time_callable` harness, or the device's clock with the same sizing
rule for a remote device), ``accuracy_run(x)`` (what the accuracy evaluator calls: ``run``
itself, or a host run of the same model file for a remote device) and ``artifact_path`` /
``size_bytes``. ``prepare`` gets ``rpc`` (a :class:`pose_tuner.measure.rpc.RPCSpec`) for a remote
target: the session then runs on a device of that pool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from pose_tuner.measure.runner import LatencyStats, Timing, time_callable


class BaselineUnavailable(RuntimeError):
    """The baseline cannot run here; the message says why."""


class Session:
    """A prepared baseline: call ``run`` for outputs, ``latency`` for timings."""

    artifact_path: str = ""
    #: the runtime's compile options a fresh process needs to load the artifact as this
    #: session did (OpenVINO's precision hint and threads), for the peak-memory probe
    config: dict | None = None
    #: for a session held to an ISA (``prepare``'s ``isa_cap``): the kernels that still
    #: run wider, as "layer type: kernels" (a stack's own data-movement kernels that
    #: ignore the cap); empty when every kernel is held
    wider_kernels: tuple[str, ...] = ()

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def accuracy_run(self, x: np.ndarray) -> np.ndarray:
        """What the accuracy evaluator runs (the session's own outputs by default)."""
        return self.run(x)

    def _call(self, x: np.ndarray):
        """The cheapest call that runs inference once (used for timing)."""
        return self.run(x)

    def latency(self, x: np.ndarray, timing: Timing = Timing()) -> LatencyStats:
        return time_callable(lambda: self._call(x), timing)

    @property
    def size_bytes(self) -> int:
        paths = [self.artifact_path]
        if self.artifact_path.endswith(".xml"):
            paths.append(self.artifact_path[:-4] + ".bin")
        return sum(os.path.getsize(p) for p in paths if p and os.path.exists(p))


@dataclass(frozen=True)
class Baseline:
    backend: str = ""
    quant: str = "fp32"

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.quant}"

    @property
    def numerics(self) -> str:
        return "exact" if self.quant == "fp32" else "approx"

    def check_available(self, target) -> None:
        """Raise :class:`BaselineUnavailable` when this baseline cannot run for ``target``:
        the target does not list it (``Target.baselines``), or :meth:`check_here` says so."""
        if self.name not in target.baselines:
            from pose_tuner.hardware import list_targets

            runs = [t.name for t in list_targets() if self.name in t.baselines]
            raise BaselineUnavailable(
                f"{self.name} is not a baseline of target {target.name} (targets that run "
                f"it: {', '.join(runs) or 'none'})")
        self.check_here(target)

    def check_here(self, target) -> None:
        """Raise :class:`BaselineUnavailable` when this machine (or the target's devices)
        cannot run the baseline now: its library missing, a device without it, ..."""

    def prepare(self, onnx_path: str, work_dir: str, calib: np.ndarray, threads: int,
                rpc=None, isa_cap: str | None = None, int8_weight_bits: int = 8) -> Session:
        """A runnable session of the model. ``isa_cap`` is the target's
        :meth:`~pose_tuner.hardware.base.Target.isa_below_host`: when set, the session must
        run its compute (convolutions, matrix products) on no ISA wider than that level
        (or raise :class:`BaselineUnavailable`) and list any other kernel that runs wider
        in ``wider_kernels``; a stack that cannot be held to it refuses in
        :meth:`check_here`. ``int8_weight_bits`` is the target's
        (:attr:`~pose_tuner.hardware.base.Target.int8_weight_bits`): 7 on CPUs whose u8 x s8
        products go through saturating 16-bit pair sums (``vpmaddubsw`` without VNNI). A
        stack whose quantized model we write and whose kernels then multiply u8 x s8 as
        they are (ONNX Runtime) quantizes its weights to that many bits, as its own
        documentation advises for such CPUs; a stack that guards against the saturation
        itself may ignore it."""
        raise NotImplementedError
