"""The variants a search builds from: the model pruned at each ratio, and int8 calibration."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

from pose_tuner.jobs.executor import run_in_child
from pose_tuner.jobs.specs import VariantJob
from pose_tuner.search.config import SearchConfig
from pose_tuner.models.source import PreparedModel

@dataclass(frozen=True)
class ModelVariant:
    """The fp32 model one pruning ratio builds from: the model itself at ratio 0, else its
    pruned (and maybe fine-tuned) export; ``error`` says why it could not be made."""

    prune_ratio: float
    tag: str
    onnx_path: str | None
    param_count: int | None
    flops: float | None
    finetune_steps: int | None
    error: str | None = None

    @classmethod
    def unpruned(cls, model: PreparedModel) -> "ModelVariant":
        return cls(0.0, "", model.onnx_path, model.param_count, model.flops, None)


def make_variant(cfg: SearchConfig, model: PreparedModel, ratio: float,
                 say: Callable[[str], None], run_root: str) -> ModelVariant:
    """The variant of ``model`` at pruning ``ratio``: pruned in a child process (torch-
    pruning), exported to ONNX under ``log_dir/models`` and reused from there next time."""
    if ratio == 0:
        return ModelVariant.unpruned(model)
    opts = cfg.space.pruning
    zoo = model.source == "zoo"
    tag, method = opts.tag_for(zoo), opts.method(zoo)
    base = os.path.join(cfg.log_dir, "models",
                        f"{model.name}-{model.model_hash}-p{ratio:.2f}-{tag}")
    info_path = base + ".json"
    if os.path.exists(info_path) and os.path.exists(base + ".onnx") and not cfg.force:
        with open(info_path, encoding="utf-8") as f:
            info = json.load(f)
        return ModelVariant(ratio, tag, base + ".onnx", info["param_count"], info["flops"],
                            info["finetune_steps"])
    head = f"[variant p{ratio:.2f}]"
    if model.source == "onnx":
        return ModelVariant(ratio, tag, None, None, None, None,
                            "pruning needs the PyTorch model (a zoo name or module:factory); an "
                            "ONNX file can only be searched at pruning ratio 0")
    say(f"{head}: start")
    h, w = model.input_shape[2:]
    acc = cfg.accuracy
    job = VariantJob(
        model=cfg.model, input_size=(h, w), prune_ratio=ratio, importance=opts.importance,
        round_to=opts.round_to, finetune_steps=opts.finetune_steps, recovery=method,
        # distillation learns on, and AP before / after recovery is measured on, the
        # accuracy data (the user's --coco-ann / --coco-images, else the synthetic split)
        eval_ann=acc.ann_path if acc else None, eval_images=acc.images_dir if acc else None,
        eval_max_people=acc.max_people if acc else None,
        data_dir=os.path.join(cfg.log_dir, "data", "synthetic"), out_path=base + ".onnx")
    result = run_in_child(
        job, cfg.timeout_s, os.path.join(run_root, f"variant-p{ratio:.2f}-{tag}.log"),
        on_progress=lambda m: say(f"{head}: {m}"), threads=cfg.threads or os.cpu_count() or 1)
    if not result.ok:
        say(f"{head}: FAILED: {result.error}")
        return ModelVariant(ratio, tag, None, None, None, None, result.error or "failed")
    info = {"param_count": result.param_count, "flops": result.flops,
            "finetune_steps": result.finetune_steps}
    with open(info_path, "w", encoding="utf-8") as f:
        json.dump({**info, "recovery": method, "ap_unpruned": result.ap_unpruned,
                   "ap_pruned": result.ap_pruned, "ap_recovered": result.ap_recovered}, f)
    return ModelVariant(ratio, tag, base + ".onnx", **info)


def tag_suffix(tag: str) -> str:
    """A file-name suffix for a variant tag ('' for the plain model)."""
    return "-" + tag.replace("/", "-") if tag else ""


def calibration_file(cfg: SearchConfig, model: PreparedModel, run_root: str) -> str:
    """The int8 calibration crops (.npy), made once per run folder and size."""
    import numpy as np

    from pose_tuner.accuracy.calibration import calibration_crops

    n = cfg.space.quantization.calibration_images
    pre = cfg.accuracy.preprocess if cfg.accuracy is not None else None
    digest = hashlib.sha256(repr(pre).encode()).hexdigest()[:8]
    path = os.path.join(run_root, f"calibration-crops-n{n}-{digest}.npy")
    if not os.path.exists(path):
        os.makedirs(run_root, exist_ok=True)
        np.save(path, calibration_crops(tuple(model.input_shape[2:]), n, cfg.log_dir, pre))
    return path
