"""The ``Target`` contract: where and how a candidate is built and measured.

A target names one kind of hardware. It knows

* its TVM target as a JSON dict (``tvm_target()``), usable as ``tvm.target.Target(d)``;
* whether it can be used from this machine right now (``check_available()``), raising
  :class:`TargetUnavailable` with a message that says how to fix it;
* how many threads a measurement uses;
* which baselines (other inference stacks) its users would compare against;
* which quantization modes it runs (``quant_modes``) and, for int8, which integer dot
  product kernel its builds use (``int8_kernel``, a name in :mod:`pose_tuner.compile.kernels`)
  and how many bits its weights may use (``int8_weight_bits``: 7 where the kernel's
  16-bit intermediate sums would saturate with full 8-bit weights). A point it cannot
  run is refused before any work (:meth:`Target.refusal`).

Targets hold no state about a search and never touch the database; the search loop
(``tuner``) asks them questions and hands their answers to builders and runners.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class TargetUnavailable(RuntimeError):
    """The target cannot be used from this machine; the message says how to fix it."""


@dataclass(frozen=True)
class Target:
    """Base class of every hardware target.

    Subclasses set ``name``, ``description`` and implement ``tvm_target``. A target
    whose hardware is not this machine (a Pi over RPC, a GPU) overrides
    ``check_available`` so that a search fails fast, before any work, with a clear
    message. ``remote`` is True when candidates are measured on another machine.
    """

    name: str = ""
    description: str = ""
    remote: bool = False
    #: names in :data:`pose_tuner.baselines.BASELINES` measured beside TVM on this target
    baselines: tuple[str, ...] = ()
    #: quantization modes this target builds and runs
    quant_modes: tuple[str, ...] = ("fp32", "fp16", "int8")
    #: the int8 dot-product kernel (:data:`pose_tuner.compile.kernels.KERNELS`); None: TVM's own
    #: schedule rules for the target, no tensor intrinsic of ours
    int8_kernel: str | None = None
    #: bits of the int8 weights (ONNX Runtime's ``reduce_range`` when 7)
    int8_weight_bits: int = 8

    def refusal(self, quant: str) -> str | None:
        """Why this target cannot run a point in ``quant`` mode, or None if it can."""
        if quant not in self.quant_modes:
            return (f"target {self.name} does not run {quant} (it runs "
                    f"{', '.join(self.quant_modes)})")
        return None

    def tvm_target(self) -> dict:
        """The TVM target as a JSON dict (TVM 0.27 rejects "llvm -mcpu=..." strings)."""
        raise NotImplementedError

    def num_threads(self) -> int:
        """Threads used by the runtime when measuring on this target."""
        return int(os.environ.get("TVM_NUM_THREADS", os.cpu_count() or 1))

    def check_available(self) -> None:
        """Raise :class:`TargetUnavailable` if this machine cannot measure on the target."""

    def rpc_spec(self):
        """Where the devices of a remote target are (:class:`pose_tuner.measure.rpc.RPCSpec`); None
        for a target measured on this machine."""
        return None

    def is_emulated(self) -> bool:
        """True when the measured device is an emulation (its latencies are marked and never
        compete with real devices on the front)."""
        return False

    def device_identity(self) -> str:
        """Which device measurements come from, recorded with every point so that a change
        of hardware can be told from a regression. Local targets: host name and CPU model."""
        import platform

        model = ""
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                model = next((ln.split(":", 1)[1].strip() for ln in f
                              if ln.startswith("model name")), "")
        except OSError:
            pass
        return f"{platform.node()} / {model or platform.processor() or platform.machine()}"

    def describe(self) -> dict:
        """A JSON-able summary (used by ``tuner targets``)."""
        return {
            "name": self.name,
            "description": self.description,
            "remote": self.remote,
            "baselines": list(self.baselines),
            "quant_modes": list(self.quant_modes),
            "int8_kernel": self.int8_kernel,
            "int8_weight_bits": self.int8_weight_bits,
            "tvm_target": self.tvm_target(),
        }
