"""Shared helpers of the conformance tests."""

from __future__ import annotations

import threading


def finishes(fn, timeout_s: float = 20.0):
    """``fn()``'s value (or its exception), failing the test if it has not returned
    within ``timeout_s``: a contract check must never hang (a tracker that does not
    answer, a driver that blocks)."""
    box: dict = {}

    def call():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["exc"] = exc

    th = threading.Thread(target=call, daemon=True)
    th.start()
    th.join(timeout_s)
    assert not th.is_alive(), f"{fn} did not return within {timeout_s} s"
    if "exc" in box:
        raise box["exc"]
    return box.get("value")
