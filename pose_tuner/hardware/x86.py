"""The x86-64 CPU family: one target per ISA level, measured on this machine.

Every member is an LLVM target for one fixed ``mcpu`` (so that one tuning database serves
every machine of its level, and so that its int8 code was checked with that ``mcpu``),
with its own int8 kernel. ``--target x86`` is not a member but an alias: the best member
this host runs (:func:`host_target`), shown by ``tuner targets`` with the reason.

A member this host cannot run still builds (``tuner build --target x86-vnni`` on an AVX2
machine gives a library for a VNNI machine); measuring on it is refused by
:meth:`X86Target.check_available`, which names the member that does run here.
"""

from __future__ import annotations

from dataclasses import dataclass

from pose_tuner.hardware.base import Target, TargetUnavailable
from pose_tuner.hardware.cpu_isa import (
    LEVEL_NAMES, PREFERENCE, HostISAError, host_features, host_isa, levels_of,
)

#: the alias that resolves to this host's best x86 target
HOST_ALIAS = "x86"

X86_BASELINES = ("onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32", "openvino-bf16",
                 "openvino-int8")


@dataclass(frozen=True)
class X86Target(Target):
    """Base class of the x86-64 members: subclasses set ``name``, ``description``,
    ``isa`` (a level of :mod:`pose_tuner.hardware.cpu_isa`), ``mcpu`` (and ``mattr`` if the CPU
    name lacks a feature), ``int8_kernel`` and ``int8_weight_bits``.

    Contract: ``tvm_target()`` is an LLVM target for a CPU name whose features the CPUs of
    the level have (``haswell`` for AVX2, ``cascadelake`` for VNNI, ...), so its builds run
    on all of them; ``check_available()`` passes iff this host (as ``PTUNER_HOST_ISA``
    shows it) has the level; the int8 kernel is exact for ``int8_weight_bits``.
    """

    isa: str = ""
    mcpu: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _MEMBERS.append(cls)

    mattr: tuple[str, ...] = ()
    baselines: tuple[str, ...] = X86_BASELINES

    def tvm_target(self) -> dict:
        target = {"kind": "llvm", "mcpu": self.mcpu, "num-cores": self.num_threads()}
        if self.mattr:
            target["mattr"] = list(self.mattr)
        return target

    def check_available(self) -> None:
        try:
            host = host_isa()
        except HostISAError as exc:
            raise TargetUnavailable(str(exc)) from None
        if host.has(self.isa):
            return
        runs = _member_for(host.best)
        here = (f"use --target {runs.name} (or --target {HOST_ALIAS}), which runs here"
                if runs else "this host has no AVX2, so no x86 target runs here")
        raise TargetUnavailable(
            f"target {self.name} needs a CPU with {self.isa_name}, and this one lacks it "
            f"({host.explain()}); {here}. `tuner build --target {self.name}` still compiles "
            "for it"
        )

    def isa_below_host(self) -> str | None:
        """This member's level when the CPU's own flags (not ``PTUNER_HOST_ISA``) offer a
        wider one: a vendor stack picks its kernels from those flags, so it must be held
        to the level to be measured as this member's CPUs would run it."""
        real = levels_of(host_features())
        return self.isa if self.isa in real and real[0] != self.isa else None

    @property
    def isa_name(self) -> str:
        return LEVEL_NAMES[self.isa]

    def describe(self) -> dict:
        return {**super().describe(), "isa": self.isa}


#: the members, each added when its class is defined (``x86_*.py``, imported by the
#: registry in :mod:`pose_tuner.hardware`)
_MEMBERS: list[type[X86Target]] = []


def members() -> list[type[X86Target]]:
    """The x86 targets, best level first (:data:`pose_tuner.hardware.cpu_isa.PREFERENCE`)."""
    return sorted(_MEMBERS, key=lambda cls: PREFERENCE.index(cls.isa))


def _member_for(level: str | None) -> X86Target | None:
    for cls in members():
        if cls.isa == level:
            return cls()
    return None


def host_target(**options) -> X86Target:
    """The best x86 target this host runs (``--target x86``); TargetUnavailable if none."""
    try:
        host = host_isa()
    except HostISAError as exc:
        raise TargetUnavailable(str(exc)) from None
    for cls in members():
        if host.has(cls.isa):
            fields = cls.__dataclass_fields__
            return cls(**{k: v for k, v in options.items() if k in fields and v is not None})
    raise TargetUnavailable(
        f"--target {HOST_ALIAS} needs an x86-64 CPU with AVX2 and FMA, and this host has none "
        f"({host.explain()}); use --target rasp4b or cuda with a device, or `tuner build`"
    )


def explain_host() -> str:
    """What ``--target x86`` resolves to here, and why (for ``tuner targets``)."""
    try:
        target = host_target()
    except TargetUnavailable as exc:
        return f"{HOST_ALIAS} -> (none): {exc}"
    return f"{HOST_ALIAS} -> {target.name}: this host is {host_isa().explain()}"
