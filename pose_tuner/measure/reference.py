"""ONNX Runtime on this machine's CPU: the numerical reference and a latency peer."""

from __future__ import annotations

import numpy as np

from pose_tuner.measure.runner import LatencyStats, Timing, time_callable


class ORTSession:
    def __init__(self, onnx_path: str, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.sess.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {self.input_name: x})[0]

    def latency(self, x: np.ndarray, timing: Timing = Timing()) -> LatencyStats:
        feed = {self.input_name: x}
        return time_callable(lambda: self.sess.run(None, feed), timing)
