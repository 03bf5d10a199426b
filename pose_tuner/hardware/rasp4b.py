"""Raspberry Pi 4B (Cortex-A72, aarch64, NEON), measured over TVM RPC."""

from __future__ import annotations

from dataclasses import dataclass

from pose_tuner.hardware.base import Target, TargetUnavailable
from pose_tuner.hardware.remote import CROSS_CC, RPCError, RPCSpec, tracker_from_env


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

    may_be_emulated: bool = True
    cross_cc: str | None = CROSS_CC

    def rpc_spec(self):
        tracker = self.tracker or tracker_from_env()
        if not tracker:
            raise TargetUnavailable("no Raspberry Pi is attached for target rasp4b; "
                                    + attach_help(self.rpc_key))
        try:
            return RPCSpec.parse(tracker, self.rpc_key, cross_cc=self.cross_cc)
        except RPCError as exc:
            raise TargetUnavailable(str(exc)) from None

    def attach_help(self) -> str:
        return (f"{attach_help(self.rpc_key)} (or `tuner device emulate rasp4b"
                + ("" if self.rpc_key == "rasp4b" else f" --key {self.rpc_key}")
                + "` for an emulated Pi)")

    def device_identity(self, emulated: bool = False) -> str:
        kind = "emulated Pi (qemu)" if emulated else "Raspberry Pi"
        return f"{kind}, rpc key {self.rpc_key} at {self.rpc_spec().tracker}"

    def check_available(self) -> None:
        """A tracker is configured (the pool itself: :mod:`pose_tuner.devices.availability`)."""
        self.rpc_spec()
