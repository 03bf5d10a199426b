"""OpenVINO on x86 CPUs: FP32 (precision hint f32), BF16 (its default on CPUs with
AVX-512 BF16) and INT8 (NNCF post-training quantization on the calibration inputs).

For a target whose CPUs have less than this host's (``x86-avx2`` measured on an AVX-512
machine: :meth:`~pose_tuner.hardware.base.Target.isa_below_host`), the CPU plugin's
oneDNN is held to the target's ISA with ``ONEDNN_MAX_CPU_ISA`` (read once per process,
before OpenVINO's first compile, so it is set in the environment, which child processes
inherit), the precision hint is f32 (the plugin's bf16 check reads the CPU's own flags),
and the compiled model's kernels are checked. A convolution or matrix product on a wider
ISA makes the baseline unavailable rather than measured as the target's; the plugin's own
kernels for data movement (Interpolate, ShuffleChannels: they pick AVX-512 whatever the
cap) are listed in the session's ``wider_kernels``, which the figure is stored with: they
make it, if anything, faster than on the target's CPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from pose_tuner.baselines.base import Baseline, BaselineUnavailable, Session


#: pose-tuner's ISA level -> (oneDNN's ONEDNN_MAX_CPU_ISA value, words in the names of
#: the CPU plugin's kernels that are wider than the level)
ONEDNN_CAPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "avx2": ("AVX2", ("avx512", "amx", "vnni")),
    "avxvnni": ("AVX2_VNNI", ("avx512", "amx")),
    "avx512": ("AVX512_CORE", ("amx", "vnni", "bf16")),
    "vnni": ("AVX512_CORE_VNNI", ("amx", "bf16")),
}
ONEDNN_ENV = "ONEDNN_MAX_CPU_ISA"


def hold_to(isa_cap: str) -> None:
    """Hold this process's (and its children's) oneDNN to ``isa_cap``; refuses a process
    already held to another level."""
    value = ONEDNN_CAPS[isa_cap][0]
    held = os.environ.get(ONEDNN_ENV)
    if held and held != value:
        raise BaselineUnavailable(
            f"this process's OpenVINO is held to {held} ({ONEDNN_ENV}), not {value}")
    os.environ[ONEDNN_ENV] = value


#: the layers whose kernels must be held to the cap (the work that ISA decides)
COMPUTE_LAYERS = frozenset({"Convolution", "GroupConvolution", "Deconvolution", "MatMul",
                            "FullyConnected"})


def wider_kernels(compiled, isa_cap: str) -> dict[str, set[str]]:
    """Layer type -> the kernels of a compiled model, named for more than ``isa_cap``,
    that layers of that type run."""
    words = ONEDNN_CAPS[isa_cap][1]
    found: dict[str, set[str]] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "primitiveType" not in info:
            continue
        kernel = info["primitiveType"].astype(str)
        if any(w in kernel.lower() for w in words):
            layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
            found.setdefault(layer, set()).add(kernel)
    return found


class OVSession(Session):
    def __init__(self, model_path: str, threads: int, precision: str | None,
                 isa_cap: str | None = None):
        import openvino as ov

        if isa_cap:
            if precision == "bf16":
                raise BaselineUnavailable(f"bf16 is not part of {isa_cap}")
            hold_to(isa_cap)
            precision = precision or "f32"
        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        self.artifact_path = model_path
        self.config = config
        self.compiled = core.compile_model(core.read_model(model_path), "CPU", config)
        wider = wider_kernels(self.compiled, isa_cap) if isa_cap else {}
        compute = sorted({k for layer, ks in wider.items() if layer in COMPUTE_LAYERS for k in ks})
        if compute:
            raise BaselineUnavailable(
                f"OpenVINO compiled {', '.join(compute)} kernels although held to {isa_cap} "
                f"(oneDNN reads {ONEDNN_ENV} once: this process used OpenVINO before it was "
                "set; measure in a fresh process)")
        self.wider_kernels = tuple(f"{layer}: {', '.join(sorted(ks))}"
                                   for layer, ks in sorted(wider.items()))
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

            cap = target.isa_below_host()
            if cap:
                raise BaselineUnavailable(f"{target.name}'s CPUs ({cap}) have no native bf16")
            if not {"avx512_bf16", "amx_bf16"} & host_features():
                raise BaselineUnavailable("this CPU has no native bf16 (avx512_bf16/amx_bf16)")
        if self.quant == "int8":
            try:
                import nncf  # noqa: F401
            except ImportError:
                raise BaselineUnavailable("nncf is not installed (pip install nncf)") from None

    def prepare(self, onnx_path, work_dir, calib, threads, rpc=None, isa_cap=None,
                int8_weight_bits=8):
        # int8_weight_bits unused: NNCF quantizes for OpenVINO's own kernels, not ONNX
        # Runtime's (its INT8 passed the check on an AVX2 EPYC, and matched its AP on VNNI)
        import openvino as ov

        if isa_cap:
            hold_to(isa_cap)  # before NNCF's calibration runs compile anything
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
        return OVSession(path, threads, precision, isa_cap)
