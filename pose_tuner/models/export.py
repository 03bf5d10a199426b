"""ONNX export and simple model statistics for zoo models.

``export_onnx`` uses the legacy TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``), which still exists in torch 2.13
and produces a single self-contained file with static shapes and plain
standard ops.  If it is unavailable it falls back to the dynamo exporter
(onnxscript), with weights embedded in the file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "export_onnx",
    "run_onnx",
    "check_onnx",
    "count_params",
    "count_macs",
    "count_flops",
]

INPUT_NAME = "input"
OUTPUT_NAME = "heatmaps"

PathLike = Union[str, os.PathLike]


def _example_input(input_size: Sequence[int], seed: int = 0) -> torch.Tensor:
    from pose_tuner.models.zoo.init import structured_inputs

    return structured_inputs(1, input_size, seed=seed)


def _export_legacy(model: nn.Module, x: torch.Tensor, path: str, opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # legacy-exporter deprecation notices
        torch.onnx.export(
            model, (x,), path,
            dynamo=False,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            opset_version=opset, do_constant_folding=True,
            export_params=True, dynamic_axes=None,
        )


def _export_dynamo(model: nn.Module, x: torch.Tensor, path: str, opset: int) -> None:
    prog = torch.onnx.export(
        model, (x,), None,
        dynamo=True,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        opset_version=opset, optimize=True, verbose=False,
    )
    prog.save(path, external_data=False)


def export_onnx(model: nn.Module, path: PathLike, input_size: Sequence[int] = (256, 192),
                opset: int = 17, exporter: str = "auto") -> Path:
    """Export ``model`` to ONNX at ``path`` (batch 1, static shape (1, 3, H, W)).

    Input is named ``"input"``, output ``"heatmaps"``.  ``exporter`` is
    ``"legacy"``, ``"dynamo"`` or ``"auto"`` (legacy, falling back to dynamo).
    The model is put in eval mode.  Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    x = _example_input(input_size)
    if exporter not in ("auto", "legacy", "dynamo"):
        raise ValueError(f"unknown exporter {exporter!r}")
    with torch.no_grad():
        if exporter in ("auto", "legacy"):
            try:
                _export_legacy(model, x, str(path), opset)
                return path
            except Exception:
                if exporter == "legacy":
                    raise
        _export_dynamo(model, x, str(path), opset)
    return path


def run_onnx(path: PathLike, x: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    """Run the ONNX model at ``path`` on CPU with onnxruntime; returns the heatmaps."""
    import onnxruntime as ort

    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return sess.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]


def check_onnx(model: nn.Module, path: PathLike, input_size: Sequence[int],
               seed: int = 1, x: Optional[torch.Tensor] = None) -> float:
    """Max abs difference between onnxruntime and torch, relative to max |torch output|."""
    if x is None:
        x = _example_input(input_size, seed=seed)
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    out = run_onnx(path, x)
    if out.shape != ref.shape:
        raise AssertionError(f"shape mismatch: onnx {out.shape} vs torch {ref.shape}")
    return float(np.abs(out - ref).max() / max(float(np.abs(ref).max()), 1e-12))


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: Sequence[int] = (256, 192)) -> int:
    """Multiply-accumulates of Conv / ConvTranspose / Linear layers for one (1, 3, H, W) input."""
    total = [0]

    def conv_hook(m: nn.Module, inp, out) -> None:
        # each output element needs (C_in / groups) * prod(kernel) MACs
        k = int(np.prod(m.kernel_size))
        total[0] += out.numel() * (m.in_channels // m.groups) * k

    def deconv_hook(m: nn.Module, inp, out) -> None:
        # each input element is scattered to (C_out / groups) * prod(kernel) outputs
        k = int(np.prod(m.kernel_size))
        total[0] += inp[0].numel() * (m.out_channels // m.groups) * k

    def linear_hook(m: nn.Module, inp, out) -> None:
        total[0] += out.numel() * m.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
            handles.append(m.register_forward_hook(deconv_hook))
        elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, int(input_size[0]), int(input_size[1])))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total[0])


def count_flops(model: nn.Module, input_size: Sequence[int] = (256, 192)) -> int:
    """FLOPs = 2 * MACs of Conv / ConvTranspose / Linear layers (batch 1)."""
    return 2 * count_macs(model, input_size)
