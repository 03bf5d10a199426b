"""Can this machine measure on a target now? Checked before any work of a search.

:meth:`Target.check_available` answers from facts a description can read (the host's
ISA, a GPU driver, a configured tracker). What needs TVM or the network is checked here,
from what the target declares rather than its name:

* a target reached over RPC (``rpc_spec()``): the tracker answers, its key has devices,
  the pool is not a mix of emulated and real ones (``may_be_emulated``), and a probe
  built here runs on one of them (:func:`pose_tuner.devices.probe.probe`);
* a local accelerator (``device`` other than ``cpu``): a compiler for its kernels, its
  TVM runtime, a device TVM sees, and one the target's artifacts run on
  (``device_mismatch``).

Every failure is a :class:`TargetUnavailable` whose message says the fix.
"""

from __future__ import annotations

from pose_tuner.hardware.base import Target, TargetUnavailable
from pose_tuner.hardware.remote import RPCError


def check_available(target: Target) -> None:
    """Raise :class:`TargetUnavailable` unless this machine can measure on ``target``."""
    target.check_available()
    spec = target.rpc_spec()
    if spec is not None:
        is_emulated(target)  # devices exist; a mix of real and emulated ones is refused
        try:
            _toolchain(target)
            from pose_tuner.devices.probe import probe

            probe(target, spec)
        except RPCError as exc:
            raise TargetUnavailable(str(exc)) from None
    elif target.device != "cpu":
        _local_device(target)


def pool_devices(target: Target) -> list[str]:
    """The addresses of the devices under the target's key; :class:`TargetUnavailable`
    (with how to attach one) when the tracker does not answer or has none."""
    from pose_tuner.measure.rpc import servers, tracker_summary

    spec = target.rpc_spec()
    try:
        found = servers(tracker_summary(spec), spec.key)
    except RPCError as exc:
        raise TargetUnavailable(f"{exc}; {target.attach_help()}") from None
    if not found:
        raise TargetUnavailable(f"the RPC tracker at {spec.tracker} has no device under key "
                                f"{spec.key!r}; {target.attach_help()}")
    return found


def is_emulated(target: Target) -> bool:
    """True when the target's pool is served from this machine (``tuner device emulate``):
    its latencies are marked and never compete with real devices. Checks that the pool
    has devices; refuses a key that mixes emulated and real ones."""
    if target.rpc_spec() is None:
        return False
    found = pool_devices(target)
    if not target.may_be_emulated:
        return False
    from pose_tuner.measure.rpc import pool_is_emulated

    try:
        return pool_is_emulated(found)
    except RPCError as exc:
        raise TargetUnavailable(str(exc)) from None


def _toolchain(target: Target) -> None:
    """A compiler for the target's device kernels, when its device needs one."""
    from pose_tuner.compile.toolchains import check_toolchain

    check_toolchain(target.device)


def _local_device(target: Target) -> None:
    """This machine's accelerator: compiler, runtime, a device TVM sees, the right one."""
    _toolchain(target)
    from pose_tuner.measure.cuda_runtime import load_runtime

    load_runtime()
    import tvm

    dev = tvm.device(target.device, 0)
    if not dev.exist:
        raise TargetUnavailable(f"the driver answers but TVM sees no {target.device} device "
                                f"(tvm.device({target.device!r}, 0))")
    wrong = target.device_mismatch(dev, f"this GPU ({dev.device_name})")
    if wrong:
        raise TargetUnavailable(wrong)
