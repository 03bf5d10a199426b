"""ONNX Runtime on the CPU: FP32, and static INT8 in QDQ form (u8 activations, s8
per-channel weights, min-max calibration; see :func:`targets.int8.quantize_qdq`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .base import Baseline, BaselineUnavailable, Session


class ORTBaselineSession(Session):
    def __init__(self, path: str, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.artifact_path = path
        self.sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.sess.get_inputs()[0].name

    def run(self, x):
        return self.sess.run(None, {self.input_name: x})[0]


def quantize_qdq(onnx_path: str, out_path: str, calib: np.ndarray) -> str:
    """Static INT8 QDQ model of ``onnx_path`` calibrated on ``calib`` (N, C, H, W), min-max.

    The one implementation is :func:`targets.int8.quantize_qdq` (note its argument order).
    """
    from ..int8 import quantize_qdq as _quantize_qdq

    return _quantize_qdq(onnx_path, calib, out_path, method="minmax")


@dataclass(frozen=True)
class ONNXRuntimeBaseline(Baseline):
    backend: str = "onnxruntime"

    def check_available(self, target) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise BaselineUnavailable("onnxruntime is not installed") from None
        if target.remote:
            raise BaselineUnavailable(
                f"ONNX Runtime on {target.name} needs the remote runner (not built yet)")
        if self.quant not in ("fp32", "int8"):
            raise BaselineUnavailable(f"ONNX Runtime baseline has no {self.quant} mode")

    def prepare(self, onnx_path, work_dir, calib, threads):
        path = onnx_path
        if self.quant == "int8":
            os.makedirs(work_dir, exist_ok=True)
            path = quantize_qdq(onnx_path, os.path.join(work_dir, "model.qdq.onnx"), calib)
        return ORTBaselineSession(path, threads)
