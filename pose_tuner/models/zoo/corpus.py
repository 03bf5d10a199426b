"""A corpus of ONNX files shaped like the models users bring, generated here (no download).

Each entry exports one PyTorch pose model (a zoo model by default) the way other
exporters and training code bases write them:

========== ===========================================================================
opset8-bn  opset 8, BatchNormalization left unfused, with the legacy ``spatial=0``
           attribute (per-channel statistics, as old exporters wrote it)
opset11    opset 11, folded by the exporter
opset13    opset 13
opset17    opset 17
nhwc       an NHWC input (1, H, W, 3)
simcc      an RTMPose-style SimCC head: two outputs (1, K, W*2) and (1, K, H*2)
dynbatch   a symbolic batch dimension
preproc    normalisation inside the graph: the input is RGB pixels 0-255
multiout   two outputs: the heatmaps and an auxiliary 8-channel map
========== ===========================================================================

:func:`export_corpus` writes them; each :class:`CorpusModel` carries the ``tuner search``
flags it needs beyond ``--model`` (the pixel range of ``preproc``). The tests run every
entry through the tuner, and ``benchmarks/corpus.py`` measures them.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from pose_tuner.accuracy.dataset import IMAGENET_MEAN, IMAGENET_STD
from pose_tuner.models.zoo.init import structured_inputs


@dataclass(frozen=True)
class CorpusModel:
    name: str
    path: str
    description: str
    #: ``tuner search`` flags the model needs beyond ``--model``
    search_args: tuple[str, ...] = ()


class NHWCInput(nn.Module):
    """Takes (1, H, W, 3)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.permute(0, 3, 1, 2))


class SimCCHead(nn.Module):
    """SimCC x and y vectors at split ratio ``r`` from the heatmaps: the maxima along
    each axis, upsampled to ``r`` bins per input pixel."""

    def __init__(self, model: nn.Module, input_size: tuple[int, int], r: int = 2):
        super().__init__()
        self.model, self.size, self.r = model, input_size, r

    def forward(self, x):
        hm = self.model(x)
        h, w = self.size
        sx = nn.functional.interpolate(hm.amax(dim=2), size=w * self.r, mode="linear")
        sy = nn.functional.interpolate(hm.amax(dim=3), size=h * self.r, mode="linear")
        return sx, sy


class PixelInput(nn.Module):
    """Takes RGB pixels 0-255 and normalises them inside the graph."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)

    def forward(self, x):
        return self.model((x - self.mean) / self.std)


class TwoOutputs(nn.Module):
    """The heatmaps and an auxiliary map of 8 channels (not a 17-keypoint head)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        hm = self.model(x)
        return hm, torch.sigmoid(hm[:, :8])


#: name -> description
ENTRIES = {
    "opset8-bn": "opset 8, unfused BatchNormalization with the legacy spatial=0 attribute",
    "opset11": "opset 11",
    "opset13": "opset 13",
    "opset17": "opset 17",
    "nhwc": "NHWC input (1, H, W, 3)",
    "simcc": "SimCC head: two outputs (1, K, 2W) and (1, K, 2H)",
    "dynbatch": "symbolic batch dimension",
    "preproc": "normalisation inside the graph, RGB 0-255 input",
    "multiout": "two outputs: heatmaps and an 8-channel auxiliary map",
}


def _mark_spatial(path: str) -> None:
    """Give every BatchNormalization the legacy ``spatial=0`` attribute (opsets 7-8)."""
    import onnx

    model = onnx.load(path)
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            node.attribute.append(onnx.helper.make_attribute("spatial", 0))
    onnx.save(model, path)


def export_entry(name: str, model: nn.Module, input_size: tuple[int, int], out_dir: str
                 ) -> CorpusModel:
    """Export corpus entry ``name`` of ``model`` (eval mode, heatmap output) to ``out_dir``."""
    if name not in ENTRIES:
        raise ValueError(f"unknown corpus entry {name!r}; known: {', '.join(ENTRIES)}")
    model = model.eval()
    h, w = input_size
    x = structured_inputs(1, input_size, seed=0)
    opset, fold, dynamic, args = 17, True, None, ()
    outputs = ["heatmaps"]
    if name.startswith("opset"):
        opset = int(name[5:].split("-")[0])
        fold = name != "opset8-bn"
    elif name == "nhwc":
        model, x = NHWCInput(model), x.permute(0, 2, 3, 1).contiguous()
    elif name == "simcc":
        model, outputs = SimCCHead(model, (h, w)), ["simcc_x", "simcc_y"]
    elif name == "dynbatch":
        dynamic = {"input": {0: "batch"}, "heatmaps": {0: "batch"}}
    elif name == "preproc":
        model, x = PixelInput(model), (x * 40 + 120).clamp(0, 255)
        args = ("--pixel-range", "255", "--mean", "0,0,0", "--std", "1,1,1")
    elif name == "multiout":
        model, outputs = TwoOutputs(model), ["heatmaps", "aux"]
    path = os.path.join(out_dir, f"{name}.onnx")
    os.makedirs(out_dir, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, dynamo=False, input_names=["input"],
                          output_names=outputs, opset_version=opset,
                          do_constant_folding=fold, dynamic_axes=dynamic)
    if name == "opset8-bn":
        _mark_spatial(path)
    return CorpusModel(name, path, ENTRIES[name], args)


def export_corpus(model: nn.Module, input_size: tuple[int, int], out_dir: str,
                  names=tuple(ENTRIES)) -> list[CorpusModel]:
    """Every corpus entry in ``names`` of ``model``, exported to ``out_dir``."""
    return [export_entry(n, model, input_size, out_dir) for n in names]
