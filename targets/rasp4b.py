"""Raspberry Pi 4B (Cortex-A72, aarch64, NEON), measured over TVM RPC."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .base import Target, TargetUnavailable

ATTACH_HELP = (
    "attach a Raspberry Pi: run `python -m tvm.exec.rpc_tracker --host 0.0.0.0 --port 9190` "
    "on this machine, run `python -m tvm.exec.rpc_server --tracker HOST:9190 --key rasp4b` "
    "on the Pi, then pass `--tracker HOST:9190` (or set TVM_TRACKER_HOST and "
    "TVM_TRACKER_PORT)"
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

    def device_identity(self) -> str:
        return f"rpc key {self.rpc_key} at {self.tracker or tracker_from_env() or '(no tracker)'}"

    def check_available(self) -> None:
        tracker = self.tracker or tracker_from_env()
        if not tracker:
            raise TargetUnavailable(f"no Raspberry Pi is attached for target rasp4b; {ATTACH_HELP}")
        host, _, port = tracker.rpartition(":")
        try:
            import socket

            # TVM's client retries for a minute; probe the port first to fail fast.
            socket.create_connection((host, int(port)), timeout=5).close()
            from tvm import rpc

            client = rpc.connect_tracker(host, int(port))
            summary = client.summary()
        except Exception as exc:  # noqa: BLE001 - any failure means unreachable
            raise TargetUnavailable(
                f"cannot reach the RPC tracker at {tracker} ({exc}); {ATTACH_HELP}"
            ) from None
        keys = {str(k).split(":")[0] for k in summary.get("queue_info", {})}
        if self.rpc_key not in keys:
            raise TargetUnavailable(
                f"the RPC tracker at {tracker} has no device under key {self.rpc_key!r} "
                f"(keys: {sorted(keys) or 'none'}); {ATTACH_HELP}"
            )
        raise TargetUnavailable(
            f"a device is registered under {self.rpc_key!r} at {tracker}, but measuring over "
            "RPC is not built yet in this version of pose-tuner (remote targets: issue 6)"
        )
