"""TensorRT on the CUDA target: FP16, and INT8 by explicit quantization (an ONNX Runtime
QDQ model, since TensorRT's implicit calibrators are deprecated). Engines are built with
a timing cache kept beside them. Device buffers come from torch.cuda.

Not verified on a GPU in this repository's CI (there is none): without TensorRT or a
CUDA driver the baseline is skipped with that reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from pose_tuner.baselines.base import Baseline, BaselineUnavailable, Session


class TRTSession(Session):
    def __init__(self, engine_bytes: bytes, path: str, in_shape, out_shape):
        import tensorrt as trt
        import torch

        self.torch = torch
        self.artifact_path = path
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.in_name = next(n for n in names
                            if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.out_name = next(n for n in names
                             if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        self.inp = torch.empty(tuple(in_shape), dtype=torch.float32, device="cuda")
        self.out = torch.empty(tuple(out_shape), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(self.in_name, self.inp.data_ptr())
        self.context.set_tensor_address(self.out_name, self.out.data_ptr())
        self.stream = torch.cuda.Stream()

    def _call(self, x):
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()

    def run(self, x):
        self.inp.copy_(self.torch.from_numpy(np.ascontiguousarray(x)))
        self.torch.cuda.synchronize()
        self._call(x)
        return self.out.cpu().numpy()


@dataclass(frozen=True)
class TensorRTBaseline(Baseline):
    backend: str = "tensorrt"
    quant: str = "fp16"

    def check_here(self, target) -> None:
        if target.remote:
            raise BaselineUnavailable("TensorRT runs on this machine's GPU, not over RPC")
        from pose_tuner.hardware.cuda import cuda_driver_present

        if not cuda_driver_present():
            raise BaselineUnavailable("TensorRT needs an NVIDIA GPU (libcuda.so.1 not found)")
        try:
            import tensorrt  # noqa: F401
            import torch
        except ImportError as exc:
            raise BaselineUnavailable(f"TensorRT baseline needs tensorrt and torch: {exc}") from None
        if not torch.cuda.is_available():
            raise BaselineUnavailable("torch has no CUDA device (install a CUDA build of torch)")

    def prepare(self, onnx_path, work_dir, calib, threads, rpc=None, isa_cap=None,
                int8_weight_bits=8):
        # int8_weight_bits unused: a GPU's int8 products do not saturate in 16 bits
        import onnxruntime as ort
        import tensorrt as trt

        os.makedirs(work_dir, exist_ok=True)
        src = onnx_path
        if self.quant == "int8":
            from pose_tuner.baselines.onnxruntime import quantize_qdq

            src = quantize_qdq(onnx_path, os.path.join(work_dir, "model.qdq.onnx"), calib)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        with open(src, "rb") as f:
            if not parser.parse(f.read()):
                errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise RuntimeError(f"TensorRT cannot parse {src}: {errs}")
        config = builder.create_builder_config()
        config.set_flag(trt.BuilderFlag.FP16)
        if self.quant == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
        cache_path = os.path.join(os.path.dirname(work_dir), "tensorrt.timing-cache")
        blob = open(cache_path, "rb").read() if os.path.exists(cache_path) else b""
        config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise RuntimeError("TensorRT failed to build the engine")
        with open(cache_path, "wb") as f:
            f.write(memoryview(config.get_timing_cache().serialize()))
        path = os.path.join(work_dir, f"model.{self.quant}.engine")
        with open(path, "wb") as f:
            f.write(memoryview(engine))
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        in_shape = sess.get_inputs()[0].shape
        out_shape = sess.get_outputs()[0].shape
        return TRTSession(bytes(memoryview(engine)), path, in_shape, out_shape)
