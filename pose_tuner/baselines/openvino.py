"""OpenVINO on x86 CPUs: FP32 (precision hint f32), BF16 (its default on CPUs with
AVX-512 BF16) and INT8 (NNCF post-training quantization on the calibration inputs)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from pose_tuner.baselines.base import Baseline, BaselineUnavailable, Session


class OVSession(Session):
    def __init__(self, model_path: str, threads: int, precision: str | None):
        import openvino as ov

        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        self.artifact_path = model_path
        self.compiled = core.compile_model(core.read_model(model_path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))

    def run(self, x):
        self.request.infer({0: x})
        return np.array(self.request.get_output_tensor(0).data)

    def _call(self, x):
        self.request.infer({0: x})


@dataclass(frozen=True)
class OpenVINOBaseline(Baseline):
    backend: str = "openvino"

    def check_here(self, target) -> None:
        try:
            import openvino  # noqa: F401
        except ImportError:
            raise BaselineUnavailable("openvino is not installed (pip install openvino nncf)") from None
        if target.remote:
            raise BaselineUnavailable("OpenVINO runs on this machine's CPU, not over RPC")
        if self.quant == "bf16":
            from pose_tuner.hardware.cpu_isa import host_features

            if not {"avx512_bf16", "amx_bf16"} & host_features():
                raise BaselineUnavailable("this CPU has no native bf16 (avx512_bf16/amx_bf16)")
        if self.quant == "int8":
            try:
                import nncf  # noqa: F401
            except ImportError:
                raise BaselineUnavailable("nncf is not installed (pip install nncf)") from None

    def prepare(self, onnx_path, work_dir, calib, threads, rpc=None):
        import openvino as ov

        os.makedirs(work_dir, exist_ok=True)
        core = ov.Core()
        model = core.read_model(onnx_path)
        if self.quant == "int8":
            import nncf

            data = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))])
            model = nncf.quantize(model, data, subset_size=len(calib))
        path = os.path.join(work_dir, f"model.{self.quant}.xml")
        ov.save_model(model, path, compress_to_fp16=False)
        precision = {"fp32": "f32", "bf16": "bf16", "int8": None}[self.quant]
        return OVSession(path, threads, precision)
