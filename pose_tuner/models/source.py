"""Resolve what the user points the tuner at into one ONNX file with an identity.

``--model`` accepts a zoo name (``mobilenetv2_deconv``), an ONNX file (``pose.onnx``) or
a PyTorch factory (``package.module:function`` returning an ``nn.Module``). Whatever the
source, the tuner works from an ONNX file, cleaned first (:mod:`pose_tuner.models.onnx_clean`: legacy
attributes, opset upgrade, BatchNormalization folding, checked equal to the original). The
cleaned file is the reference (ONNX Runtime), the input of ONNX Runtime's and OpenVINO's
quantizers and the TVM import; the model's identity is the sha256 of the file the user
gave (or of the export), and the cleaned file's hash is kept beside it.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import numpy as np

from pose_tuner.models.hashing import file_hash, sha16


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
    #: hash of the cleaned ONNX file (``onnx_path``) and what cleaning did
    cleaned_hash: str = ""
    cleanup: str = ""

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


def _check_pose_output(path: str, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Run the cleaned ONNX model once; return (input shape, output shape) if its output is
    a pose head a decoder reads (heatmaps, or SimCC x and y concatenated)."""
    import onnxruntime as ort

    from pose_tuner.measure.inputs import structured_input

    from pose_tuner.accuracy.decode import get_decoder

    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"ONNX Runtime cannot load {name}: {str(exc).splitlines()[0]}") from None
    shape = tuple(int(d) for d in sess.get_inputs()[0].shape)
    out = sess.run(None, {sess.get_inputs()[0].name: structured_input(shape, seed=0)})[0]
    try:
        get_decoder([out.shape], shape[2:], num_keypoints=out.shape[1])
    except ValueError as exc:
        raise ModelError(f"{name}: {exc}") from None
    if not np.all(np.isfinite(out)):
        raise ModelError(f"{name} outputs NaN or Inf on a test image")
    return shape, tuple(int(d) for d in out.shape)


def clean_model(path: str, name: str, out_dir: str, say=lambda _m: None,
                output: str | None = None):
    """The cleaned copy of ``path`` under ``out_dir`` (:func:`pose_tuner.models.onnx_clean.clean_onnx`),
    reused when one was made from the same bytes (and ``output``) before."""
    import json

    from pose_tuner.models.onnx_clean import CleanedModel, CleanupError, clean_onnx

    tag = f"-{sha16(output.encode())[:8]}" if output else ""
    base = os.path.join(out_dir, f"{name}-{file_hash(path)}{tag}.clean")
    if os.path.exists(base + ".json") and os.path.exists(base + ".onnx"):
        with open(base + ".json", encoding="utf-8") as f:
            info = json.load(f)
        info["steps"] = tuple(info["steps"])
        info["original_outputs"] = tuple(info["original_outputs"])
        cleaned = CleanedModel(**info)
        if cleaned.path == base + ".onnx" and file_hash(cleaned.path) == cleaned.cleaned_hash:
            return cleaned
    try:
        cleaned = clean_onnx(path, base + ".onnx", say, output)
    except CleanupError as exc:
        raise ModelError(f"{name}: {exc}") from None
    from dataclasses import asdict

    with open(base + ".json", "w", encoding="utf-8") as f:
        json.dump(asdict(cleaned), f, indent=1)
    return cleaned


def _onnx_params(path: str) -> int:
    import onnx

    model = onnx.load(path, load_external_data=False)
    return int(sum(int(np.prod(t.dims)) for t in model.graph.initializer))


def _from_onnx(path: str, out_dir: str, say, output: str | None) -> PreparedModel:
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
    name = os.path.splitext(os.path.basename(path))[0]
    cleaned = clean_model(path, name, out_dir, say, output)
    in_shape, out_shape = _check_pose_output(cleaned.path, path)
    return PreparedModel(name, "onnx", os.path.abspath(cleaned.path), cleaned.original_hash,
                         in_shape, out_shape, _onnx_params(cleaned.path), None,
                         os.path.getsize(cleaned.path), cleaned.cleaned_hash, cleaned.summary())


def _from_torch(module, name: str, source: str, input_size, out_dir: str,
                say) -> PreparedModel:
    from pose_tuner.models.export import count_flops, count_params, export_onnx

    h, w = input_size
    path = os.path.join(out_dir, f"{name}-{h}x{w}.onnx")
    try:
        export_onnx(module, path, input_size=(h, w))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot export {name} to ONNX: {str(exc).splitlines()[0]}") from None
    cleaned = clean_model(path, name, out_dir, say)
    in_shape, out_shape = _check_pose_output(cleaned.path, name)
    flops = float(count_flops(module, (h, w)))
    return PreparedModel(name, source, os.path.abspath(cleaned.path), cleaned.original_hash,
                         in_shape, out_shape, count_params(module), flops,
                         os.path.getsize(cleaned.path), cleaned.cleaned_hash, cleaned.summary())


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
    from pose_tuner.models import zoo

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


def prepare_model(spec: str, input_size: tuple[int, int] | None, out_dir: str,
                  say=lambda _m: None, output: str | None = None) -> PreparedModel:
    """Turn ``--model`` into a :class:`PreparedModel`: exported (torch sources) and cleaned
    into ``out_dir``. An ONNX file carries its own static shape (``input_size`` is
    ignored); ``output`` names its pose head where several outputs could be. ``say``
    hears what cleaning did."""
    os.makedirs(out_dir, exist_ok=True)
    loaded = load_torch_module(spec, input_size)
    if loaded is None:
        return _from_onnx(spec, out_dir, say, output)
    module, name, source, size = loaded
    return _from_torch(module, name, source, size, out_dir, say)
