"""How a remote target's devices are reached: a TVM RPC tracker and a key.

A description only (no TVM import): :mod:`pose_tuner.measure.rpc` opens sessions and
queries the tracker from an :class:`RPCSpec`, :mod:`pose_tuner.devices.availability`
checks the pool before a search.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

#: the linker for aarch64 devices' shared libraries (Debian: g++-aarch64-linux-gnu)
CROSS_CC = "aarch64-linux-gnu-g++"


class RPCError(RuntimeError):
    """The device pool cannot be used; the message says which part failed and the fix."""


@dataclass(frozen=True)
class RPCSpec:
    """Where a remote target's devices are: tracker, key, and session limits."""

    tracker_host: str
    tracker_port: int
    key: str
    #: seconds one session may last (a whole candidate's check and timing)
    session_timeout_s: float = 900.0
    #: the linker for the device's shared libraries
    cross_cc: str = CROSS_CC
    #: where artifacts run on the device: ``cpu`` or ``cuda`` (its first GPU)
    device: str = "cpu"

    @classmethod
    def parse(cls, tracker: str, key: str, **kw) -> "RPCSpec":
        host, _, port = tracker.rpartition(":")
        if not host or not port.isdigit():
            raise RPCError(f"bad tracker address {tracker!r}: write HOST:PORT, e.g. 127.0.0.1:9190")
        return cls(host, int(port), key, **kw)

    @property
    def tracker(self) -> str:
        return f"{self.tracker_host}:{self.tracker_port}"

    def as_dict(self) -> dict:
        return asdict(self)

    def remote_device(self, sess):
        """The device of RPC session ``sess`` that artifacts of this pool run on."""
        return sess.cuda(0) if self.device == "cuda" else sess.cpu()


def tracker_from_env() -> str | None:
    """The tracker named by ``TVM_TRACKER_HOST`` / ``TVM_TRACKER_PORT`` (TVM's variables)."""
    host = os.environ.get("TVM_TRACKER_HOST")
    port = os.environ.get("TVM_TRACKER_PORT", "9190")
    return f"{host}:{port}" if host else None
