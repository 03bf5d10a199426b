"""Baselines: the stacks users would otherwise deploy with, measured by the same harness.

``BASELINES`` is the one registry of names (``backend-precision``) to baselines; each
target lists the ones its users would pick (``Target.baselines``).
"""

from __future__ import annotations

from pose_tuner.baselines.base import Baseline, BaselineUnavailable, Session
from pose_tuner.baselines.onnxruntime import ONNXRuntimeBaseline
from pose_tuner.baselines.openvino import OpenVINOBaseline
from pose_tuner.baselines.tensorrt import TensorRTBaseline

BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        ONNXRuntimeBaseline(quant="fp32"),
        ONNXRuntimeBaseline(quant="int8"),
        OpenVINOBaseline(quant="fp32"),
        OpenVINOBaseline(quant="bf16"),
        OpenVINOBaseline(quant="int8"),
        TensorRTBaseline(quant="fp16"),
        TensorRTBaseline(quant="int8"),
    )
}


def get_baseline(name: str) -> Baseline:
    try:
        return BASELINES[name]
    except KeyError:
        raise KeyError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}") from None


__all__ = ["BASELINES", "Baseline", "BaselineUnavailable", "Session", "get_baseline"]
