"""ONNX Runtime on the CPU: FP32, and static INT8 in QDQ form (u8 activations, s8
per-channel weights of the target's ``int8_weight_bits``: 7 where its U8S8 kernels would
saturate; min-max calibration; see :func:`pose_tuner.compile.int8.quantize.quantize_qdq`).

On a remote target (a Pi over TVM RPC) the model file is prepared here, uploaded, and run
and timed on the device by pose-tuner's device server (:mod:`pose_tuner.devices.device_server`),
like TVM's artifacts; a device that runs TVM's plain server, or has no onnxruntime, makes
the baseline skipped with the reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from pose_tuner.baselines.base import Baseline, BaselineUnavailable, Session


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


class RemoteORTSession(Session):
    """The model run by ONNX Runtime on a device of an RPC pool. Outputs come from the
    device; latency from the device's clock (same warm-up and repeat sizing as every
    backend). Accuracy is scored on this host's ONNX Runtime with the same file, as TVM
    candidates score theirs on a host build, after the device's outputs passed the same
    numerical check."""

    def __init__(self, path: str, rpc_spec, threads: int):
        import tvm

        from pose_tuner.measure.rpc import connect, helper_info

        self.tvm = tvm
        self.artifact_path = path
        self.sess = connect(rpc_spec)
        info = helper_info(self.sess)
        if not info.get("onnxruntime"):
            raise BaselineUnavailable("onnxruntime is not installed on the device "
                                      "(on the device: pip install onnxruntime)")
        self.device_info = info
        self.sess.upload(path)
        self.file = self.sess.get_function("pose_tuner.ort_load")(os.path.basename(path),
                                                                  int(threads))
        self._run = self.sess.get_function("pose_tuner.ort_run")
        self._time = self.sess.get_function("pose_tuner.ort_time")
        self._host = None

    def run(self, x):
        return self._run(self.file, self.tvm.runtime.tensor(x, self.sess.cpu())).numpy()

    def latency(self, x, timing=None):
        import json

        from pose_tuner.measure.runner import Timing, latency_stats

        arg = self.tvm.runtime.tensor(x, self.sess.cpu())
        repeat = (timing or Timing()).repeats(lambda: self._time(self.file, arg, 1, 1))
        return latency_stats(json.loads(self._time(self.file, arg, 1, repeat)))

    def accuracy_run(self, x):
        if self._host is None:
            self._host = ORTBaselineSession(self.artifact_path, os.cpu_count() or 1)
        return self._host.run(x)


def quantize_qdq(onnx_path: str, out_path: str, calib: np.ndarray, weight_bits: int = 8) -> str:
    """Static INT8 QDQ model of ``onnx_path`` calibrated on ``calib`` (N, C, H, W), min-max,
    its weights quantized to ``weight_bits`` (7: ONNX Runtime's ``reduce_range``).

    The one implementation is :func:`pose_tuner.compile.int8.quantize.quantize_qdq` (note
    its argument order).
    """
    from pose_tuner.compile.int8.quantize import quantize_qdq as _quantize_qdq

    return _quantize_qdq(onnx_path, calib, out_path, method="minmax", weight_bits=weight_bits)


def _uncappable(cap: str, whose: str) -> BaselineUnavailable:
    return BaselineUnavailable(
        f"ONNX Runtime picks its kernels from this CPU's own flags and has no switch to hold "
        f"them to {cap}, the ISA of {whose}: here it would run wider kernels than they have "
        "(measure it on such a CPU)")


@dataclass(frozen=True)
class ONNXRuntimeBaseline(Baseline):
    backend: str = "onnxruntime"

    def check_here(self, target) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise BaselineUnavailable("onnxruntime is not installed") from None
        if target.remote:
            self._check_device(target)
        if self.quant not in ("fp32", "int8"):
            raise BaselineUnavailable(f"ONNX Runtime baseline has no {self.quant} mode")
        cap = target.isa_below_host()
        if cap:
            raise _uncappable(cap, f"{target.name}'s CPUs")

    @staticmethod
    def _check_device(target) -> None:
        """A device of the pool runs pose-tuner's device server with onnxruntime."""
        from pose_tuner.hardware.base import TargetUnavailable
        from pose_tuner.measure.rpc import RPCError, connect, helper_info

        try:
            sess = connect(target.rpc_spec(), timeout_s=60)
            info = helper_info(sess)
        except (RPCError, TargetUnavailable) as exc:
            raise BaselineUnavailable(f"ONNX Runtime on {target.name}: {exc}") from None
        if not info.get("onnxruntime"):
            raise BaselineUnavailable(f"onnxruntime is not installed on the {target.name} "
                                      "device (on the device: pip install onnxruntime)")

    def prepare(self, onnx_path, work_dir, calib, threads, rpc=None, isa_cap=None,
                int8_weight_bits=8):
        if isa_cap:
            raise _uncappable(isa_cap, "the target's CPUs")
        path = onnx_path
        if self.quant == "int8":
            # its U8S8 kernels use vpmaddubsw on CPUs without VNNI, whose pair sums saturate
            # with 8-bit weights: 7 bits there (the target says), as its documentation advises
            os.makedirs(work_dir, exist_ok=True)
            path = quantize_qdq(onnx_path, os.path.join(work_dir, "model.qdq.onnx"), calib,
                                weight_bits=int8_weight_bits)
        if rpc is not None:
            return RemoteORTSession(path, rpc, threads)
        return ORTBaselineSession(path, threads)
