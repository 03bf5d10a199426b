"""The ``Target`` contract: what a kind of hardware is and what it supports.

A target names one kind of hardware. It is a description: this layer imports nothing of
TVM nor of the other layers of pose-tuner. It knows

* its TVM target as a JSON dict (``tvm_target()``), usable as ``tvm.target.Target(d)``,
  and the device kind its artifacts run on (``device``: ``cpu`` or ``cuda``);
* the facts of this machine it needs, checked without TVM (``check_available()``: the
  host's ISA, a GPU driver, a configured tracker), raising :class:`TargetUnavailable`
  with a message that says how to fix it. What needs TVM or the network (a pool's
  devices, a probe run there, a GPU's runtime) is checked by
  :func:`pose_tuner.devices.availability.check_available`, which calls this first;
* how its devices are reached (``rpc_spec()``, None for this machine), how to attach one
  (``attach_help()``) and whether a pool of it may be an emulation (``may_be_emulated``);
* how many threads a measurement uses;
* which baselines (other inference stacks) its users would compare against;
* which quantization modes it runs (``quant_modes``) and, for int8, which integer dot
  product kernel its builds use (``int8_kernel``, a name in
  :mod:`pose_tuner.compile.kernels`) and how many bits its weights may use
  (``int8_weight_bits``: 7 where the kernel's 16-bit intermediate sums would saturate with
  full 8-bit weights). A point it cannot run is refused before any work
  (:meth:`Target.refusal`).

Targets hold no state about a search and never touch the database; the search loop
asks them questions and hands their answers to builders and runners.
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
    #: the device kind artifacts run on (TVM's name): ``cpu`` or ``cuda``
    device: str = "cpu"
    #: whether a pool of this target served from this machine is an emulation (its
    #: latencies are marked and never compete with real devices)
    may_be_emulated: bool = False
    #: names in :data:`pose_tuner.baselines.BASELINES` measured beside TVM on this target
    baselines: tuple[str, ...] = ()
    #: quantization modes this target builds and runs
    quant_modes: tuple[str, ...] = ("fp32", "fp16", "int8")
    #: the int8 dot-product kernel (:data:`pose_tuner.compile.kernels.KERNELS`); None: TVM's own
    #: schedule rules for the target, no tensor intrinsic of ours
    int8_kernel: str | None = None
    #: bits of the int8 weights (ONNX Runtime's ``reduce_range`` when 7)
    int8_weight_bits: int = 8
    #: the linker of the shared libraries a remote target's devices load (None: local)
    cross_cc: str | None = None

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
        """Raise :class:`TargetUnavailable` if a fact of this machine, checked without TVM
        or the network, rules the target out (see the module's docstring)."""

    def isa_below_host(self) -> str | None:
        """The ISA level (of :mod:`pose_tuner.hardware.cpu_isa`) that other stacks measured
        beside TVM must be held to, when this machine's CPU offers more than the target's
        CPUs do (``x86-avx2`` measured on an AVX-512 machine, for instance as
        ``PTUNER_HOST_ISA=avx2``); None when measurements run on the target's own kind of
        hardware. TVM's builds need no such cap: their ``mcpu`` is the target's."""
        return None

    def rpc_spec(self):
        """Where the devices of a remote target are (:class:`pose_tuner.hardware.remote.RPCSpec`);
        None for a target measured on this machine. Raises :class:`TargetUnavailable` when
        a remote target has no tracker configured."""
        return None

    def attach_help(self) -> str:
        """How to put a device of this target under its key (for a remote target's errors)."""
        return ""

    def device_mismatch(self, dev, which: str) -> str | None:
        """Why this target's artifacts cannot run on device ``dev`` (an object with TVM's
        device attributes, local or over RPC, named ``which`` in the message); None when
        they can."""
        return None

    def device_identity(self, emulated: bool = False) -> str:
        """Which device measurements come from, recorded with every point so that a change
        of hardware can be told from a regression. Local targets: host name and CPU model.
        ``emulated``: the pool is an emulation (:func:`pose_tuner.devices.availability.is_emulated`)."""
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
            "device": self.device,
            "baselines": list(self.baselines),
            "quant_modes": list(self.quant_modes),
            "int8_kernel": self.int8_kernel,
            "int8_weight_bits": self.int8_weight_bits,
            "tvm_target": self.tvm_target(),
        }
