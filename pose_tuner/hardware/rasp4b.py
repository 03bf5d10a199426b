"""Raspberry Pi 4B (Cortex-A72, aarch64, NEON), measured over TVM RPC."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pose_tuner.hardware.base import Target, TargetUnavailable

def attach_help(key: str = "rasp4b") -> str:
    """How to attach a Pi under ``key`` (the steps of the README)."""
    return (
        "attach a Raspberry Pi: run `python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190` "
        "on this machine, copy `tuner device server-script --out pose_tuner_device_server.py` "
        f"to the Pi and run `python3 pose_tuner_device_server.py --tracker HOST:9190 --key {key}` "
        "there (TVM's plain `python -m tvm.exec.rpc_server` works too, without ONNX Runtime "
        "baselines on the Pi), then pass `--tracker HOST:9190` (or set TVM_TRACKER_HOST and "
        "TVM_TRACKER_PORT)" + ("" if key == "rasp4b" else f" and `--rpc-key {key}`")
    )


def tracker_from_env() -> str | None:
    host = os.environ.get("TVM_TRACKER_HOST")
    port = os.environ.get("TVM_TRACKER_PORT", "9190")
    return f"{host}:{port}" if host else None


@dataclass(frozen=True)
class Rasp4B(Target):
    name: str = "rasp4b"
    description: str = "Raspberry Pi 4B, Cortex-A72 aarch64 NEON, 4 cores, over TVM RPC"
    baselines: tuple[str, ...] = ("onnxruntime-fp32", "onnxruntime-int8")
    remote: bool = True
    rpc_key: str = "rasp4b"
    tracker: str | None = None

    def tvm_target(self) -> dict:
        return {
            "kind": "llvm",
            "mtriple": "aarch64-linux-gnu",
            "mcpu": "cortex-a72",
            "mattr": ["+neon"],
            "num-cores": 4,
        }

    def num_threads(self) -> int:
        return 4

    def rpc_spec(self):
        from pose_tuner.measure.rpc import RPCSpec

        tracker = self.tracker or tracker_from_env()
        if not tracker:
            raise TargetUnavailable("no Raspberry Pi is attached for target rasp4b; "
                                    + attach_help(self.rpc_key))
        return RPCSpec.parse(tracker, self.rpc_key)

    def _devices(self) -> list[str]:
        from pose_tuner.measure.rpc import RPCError, servers, tracker_summary

        spec = self.rpc_spec()
        try:
            found = servers(tracker_summary(spec), self.rpc_key)
        except RPCError as exc:
            raise TargetUnavailable(f"{exc}; {attach_help(self.rpc_key)}") from None
        if not found:
            raise TargetUnavailable(
                f"the RPC tracker at {spec.tracker} has no device under key {self.rpc_key!r}; "
                f"{attach_help(self.rpc_key)} (or `tuner device emulate rasp4b"
                + ("" if self.rpc_key == "rasp4b" else f" --key {self.rpc_key}")
                + "` for an emulated Pi)")
        return found

    def is_emulated(self) -> bool:
        from pose_tuner.measure.rpc import RPCError, pool_is_emulated

        try:
            return pool_is_emulated(self._devices())
        except RPCError as exc:
            raise TargetUnavailable(str(exc)) from None

    def device_identity(self) -> str:
        spec = self.rpc_spec()
        kind = "emulated Pi (qemu)" if self.is_emulated() else "Raspberry Pi"
        return f"{kind}, rpc key {self.rpc_key} at {spec.tracker}"

    def check_available(self) -> None:
        """Tracker reachable, devices under the key, and a probe module built here runs on
        one of them (the device's TVM runtime matches this host's)."""
        from pose_tuner.measure.rpc import RPCError, probe

        self.is_emulated()  # devices exist; a mix of real and emulated ones is refused
        try:
            probe(self.rpc_spec(), self.tvm_target())
        except RPCError as exc:
            raise TargetUnavailable(str(exc)) from None
