"""TVM RPC for remote targets: the tracker, device sessions, cross-linked artifacts.

The user runs TVM's tracker (``python -m tvm.exec.rpc_tracker``) and, on each device,
pose-tuner's device server (:mod:`pose_tuner.devices.device_server`: TVM's RPC server plus ONNX
Runtime baselines) or TVM's plain ``python -m tvm.exec.rpc_server``, with
``--tracker HOST:PORT --key KEY``. Every device under one
key forms a pool: each session is requested from the tracker, which hands out a free
device, so MetaSchedule measurements and candidate runs spread over the pool.

Artifacts for a device are linked here with a cross compiler into a shared library that
needs only libc on the device (the device's RPC server has no compiler to link a tar).
"""

from __future__ import annotations

import socket

from pose_tuner.hardware.remote import CROSS_CC, RPCError, RPCSpec  # noqa: F401 (the pool's API)

#: the version of pose-tuner's device server (:mod:`pose_tuner.devices.device_server`)
#: this host needs
HELPER_VERSION = 1


def tracker_summary(spec: RPCSpec, timeout_s: float = 5.0) -> dict:
    """The tracker's summary (queue and servers); :class:`RPCError` if unreachable."""
    try:
        # TVM's client retries for a minute; probe the port first to fail fast
        socket.create_connection((spec.tracker_host, spec.tracker_port), timeout=timeout_s).close()
        from tvm import rpc

        return rpc.connect_tracker(spec.tracker_host, spec.tracker_port).summary()
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        raise RPCError(f"cannot reach the RPC tracker at {spec.tracker} ({exc})") from None


def servers(summary: dict, key: str) -> list[str]:
    """Addresses of the devices registered under ``key``."""
    out = []
    for info in summary.get("server_info", []):
        if str(info.get("key", "")).split(":")[-1] == key:
            addr = info.get("addr")
            out.append(str(addr[0]) if isinstance(addr, (list, tuple)) and addr else str(addr))
    return out


def local_addresses() -> set[str]:
    names = {"127.0.0.1", "::1", "localhost", socket.gethostname()}
    try:
        names |= {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None)}
    except OSError:
        pass
    return names


def pool_is_emulated(addresses: list[str]) -> bool:
    """True when every device of the pool runs on this machine: a Pi served from this x86
    host is an emulated one (``tuner device emulate``). Mixing real and emulated devices
    under one key is refused, since their latencies do not compare."""
    local = local_addresses()
    here = [a for a in addresses if a in local or a.startswith("127.")]
    if here and len(here) != len(addresses):
        raise RPCError(f"the key mixes emulated devices on this machine ({len(here)}) and real "
                       f"ones ({len(addresses) - len(here)}); give the emulated ones another key")
    return bool(addresses) and len(here) == len(addresses)


def pool_devices(spec: RPCSpec) -> list[str]:
    """The devices of the pool, busy or free; :class:`RPCError` when it has none (TVM's
    tracker would make a request on an empty pool wait forever)."""
    found = servers(tracker_summary(spec), spec.key)
    if not found:
        raise RPCError(f"no device under key {spec.key!r} at {spec.tracker}: the pool is "
                       "empty (did its devices go down?)")
    return found


def connect(spec: RPCSpec, timeout_s: float | None = None):
    """A session on a free device of the pool (waits while all are busy; fails at once
    when the pool has none: :func:`pool_devices`)."""
    pool_devices(spec)
    try:
        from tvm import rpc

        tracker = rpc.connect_tracker(spec.tracker_host, spec.tracker_port)
        return tracker.request(spec.key, priority=1,
                               session_timeout=timeout_s or spec.session_timeout_s)
    except Exception as exc:  # noqa: BLE001
        what = f"{exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0]}"
        raise RPCError(f"no session on a device of key {spec.key!r} at {spec.tracker}: "
                       f"{what}") from None


class NoHelper(RPCError):
    """The device runs TVM's plain RPC server, without pose-tuner's functions."""


def helper_info(sess) -> dict:
    """What pose-tuner's device server reports about the device of session ``sess``
    (:mod:`pose_tuner.devices.device_server`); :class:`NoHelper` if the device runs TVM's plain
    server or an older helper."""
    import json

    try:
        info = json.loads(sess.get_function("pose_tuner.info")())
    except Exception:  # noqa: BLE001 - a missing remote function is any error here
        raise NoHelper("the device runs TVM's plain RPC server; for ONNX Runtime on the device "
                       "run pose-tuner's instead (`tuner device server-script --out "
                       "pose_tuner_device_server.py`, then on the device: python3 "
                       "pose_tuner_device_server.py --tracker HOST:PORT --key KEY)") from None
    if int(info.get("helper", 0)) < HELPER_VERSION:
        raise NoHelper(f"the device runs an older pose-tuner device server (v{info.get('helper')}"
                       f", need v{HELPER_VERSION}): copy it again (`tuner device server-script`)")
    return info


def export_cross(executable, path: str, cross_cc: str) -> str:
    """Export a compiled module as a shared library for the device."""
    import shutil

    from tvm.support import cc

    if shutil.which(cross_cc) is None:
        hint = " (Debian: apt-get install g++-aarch64-linux-gnu)" if cross_cc == CROSS_CC else ""
        raise RPCError(f"the linker {cross_cc} for the device's libraries is not installed{hint}")
    executable.export_library(path, fcompile=cc.cross_compiler(cross_cc))
    return path
