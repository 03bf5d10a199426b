"""Resolve what the user points the tuner at into one ONNX file with an identity.

``--model`` accepts a zoo name (``mobilenetv2_deconv``), an ONNX file (``pose.onnx``) or
a PyTorch factory (``package.module:function`` returning an ``nn.Module``). Whatever the
source, the tuner works from an ONNX file: it is the reference (ONNX Runtime), the TVM
import and the model identity (sha256 of its bytes).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import numpy as np


class ModelError(ValueError):
    """The model cannot be used; the message names the problem and the fix."""


@dataclass(frozen=True)
class PreparedModel:
    name: str
    source: str  # zoo | onnx | torch
    onnx_path: str
    model_hash: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    param_count: int | None
    flops: float | None
    file_size_bytes: int

    @property
    def input_shape_text(self) -> str:
        return "x".join(str(d) for d in self.input_shape)


def parse_input_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ModelError(f"bad --input-size {text!r}: write HxW, e.g. 256x192") from None
    if h <= 0 or w <= 0:
        raise ModelError(f"bad --input-size {text!r}: sizes must be positive")
    return h, w


def file_hash(path: str) -> str:
    """The model identity: first 16 hex chars of the sha256 of the file's bytes."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _check_heatmap_output(path: str, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Run the ONNX model once; return (input shape, output shape) if it emits heatmaps."""
    import onnxruntime as ort

    from targets.inputs import structured_input

    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"ONNX Runtime cannot load {name}: {str(exc).splitlines()[0]}") from None
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"{name} has {len(inputs)} inputs; a pose model takes one image tensor")
    shape = inputs[0].shape
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ModelError(
            f"{name} input shape {shape} is not a static NCHW image shape; export it with a "
            "fixed shape (1, 3, H, W)"
        )
    x = structured_input(tuple(shape), seed=0)
    out = sess.run(None, {inputs[0].name: x})[0]
    if out.ndim != 4 or out.shape[0] != shape[0] or out.shape[2] < 2 or out.shape[3] < 2:
        raise ModelError(
            f"{name} outputs shape {tuple(out.shape)}, which is not a heatmap; a top-down pose "
            "model must output (1, K, H/s, W/s)"
        )
    if not np.all(np.isfinite(out)):
        raise ModelError(f"{name} outputs NaN or Inf on a test image")
    return tuple(int(d) for d in shape), tuple(int(d) for d in out.shape)


def _onnx_params(path: str) -> int:
    import onnx

    model = onnx.load(path, load_external_data=False)
    return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer))


def _from_onnx(path: str) -> PreparedModel:
    import onnx

    if not os.path.isfile(path):
        raise ModelError(f"model file {path} does not exist")
    try:
        onnx.checker.check_model(path)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(
            f"{path} is not a valid ONNX model ({str(exc).splitlines()[0][:200]}); "
            "re-export it or check the file is complete"
        ) from None
    in_shape, out_shape = _check_heatmap_output(path, path)
    name = os.path.splitext(os.path.basename(path))[0]
    return PreparedModel(name, "onnx", os.path.abspath(path), file_hash(path), in_shape,
                         out_shape, _onnx_params(path), None, os.path.getsize(path))


def _from_torch(module, name: str, source: str, input_size, out_dir: str) -> PreparedModel:
    from .zoo.export import count_flops, count_params, export_onnx

    h, w = input_size
    path = os.path.join(out_dir, f"{name}-{h}x{w}.onnx")
    try:
        export_onnx(module, path, input_size=(h, w))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot export {name} to ONNX: {str(exc).splitlines()[0]}") from None
    in_shape, out_shape = _check_heatmap_output(path, name)
    flops = float(count_flops(module, (h, w)))
    return PreparedModel(name, source, os.path.abspath(path), file_hash(path), in_shape,
                         out_shape, count_params(module), flops, os.path.getsize(path))


def load_torch_module(spec: str, input_size: tuple[int, int] | None):
    """The ``nn.Module`` behind ``--model`` (zoo name or module:factory) in eval mode, its
    name, source and input size; None for an ONNX file (which has no torch module)."""
    if spec.endswith(".onnx") or os.path.sep in spec and os.path.exists(spec):
        return None
    if ":" in spec:
        mod_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(mod_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"cannot load PyTorch model factory {spec!r}: {exc}") from None
        module = factory() if callable(factory) and not hasattr(factory, "forward") else factory
        import torch

        if not isinstance(module, torch.nn.Module):
            raise ModelError(f"{spec!r} did not give a torch.nn.Module")
        return module.eval(), attr, "torch", input_size or (256, 192)
    from . import zoo

    if spec not in zoo.ZOO:
        raise ModelError(
            f"unknown model {spec!r}: not a zoo model ({', '.join(zoo.list_models())}), "
            "an .onnx file, or a module:factory"
        )
    size = input_size or zoo.get_spec(spec).default_input_size
    try:
        module = zoo.build_model(spec, input_size=size)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    return module.eval(), spec, "zoo", size


def prepare_model(spec: str, input_size: tuple[int, int] | None, out_dir: str) -> PreparedModel:
    """Turn ``--model`` into a :class:`PreparedModel` (exporting to ``out_dir`` if needed).
    An ONNX file carries its own static shape (``input_size`` is ignored)."""
    os.makedirs(out_dir, exist_ok=True)
    loaded = load_torch_module(spec, input_size)
    if loaded is None:
        return _from_onnx(spec)
    module, name, source, size = loaded
    return _from_torch(module, name, source, size, out_dir)
