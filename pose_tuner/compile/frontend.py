"""Model import: an ONNX file to a Relax ``IRModule``, and its fp16 form.

:func:`import_onnx` binds the weights as constants; :func:`to_fp16` converts an imported
module to fp16 weights and activations (import it with ``clip_as_min_max=True``). The
int8 path imports a QDQ model with :func:`import_onnx` too, then rewrites it
(:mod:`pose_tuner.compile.int8.rewrite`).
"""

from __future__ import annotations

import tvm
from tvm import relax


def import_onnx(path: str, clip_as_min_max: bool = False) -> tvm.IRModule:
    """Import an ONNX model into Relax (weights bound as constants).

    ``clip_as_min_max`` rewrites Clip into Max/Min first (needed by :func:`to_fp16`).
    """
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    model = onnx.load(path)
    if clip_as_min_max:
        from pose_tuner.compile.onnx_rewrite import clip_to_min_max

        model = clip_to_min_max(model)
    return from_onnx(model, keep_params_in_input=False)


def to_fp16(mod: tvm.IRModule) -> tvm.IRModule:
    """fp16 weights and activations with fp32 accumulation (``ToMixedPrecision``); the
    model's input and output stay fp32. Import with ``clip_as_min_max=True``."""
    return tvm.transform.Sequential([
        relax.transform.ConvertToDataflow(),
        relax.transform.ToMixedPrecision(out_dtype="float32"),
        relax.transform.FoldConstant(),
    ])(mod)
