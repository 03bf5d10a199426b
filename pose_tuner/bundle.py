"""Export one measured candidate as a deployable bundle.

The bundle holds the compiled library (``model.so``, a Relax VM executable with the
weights inside), the reference ONNX model it was built from, and ``metadata.json``: the
configuration, the target, the measured figures, and how to run it.
"""

from __future__ import annotations

import json
import os
import shutil

from pose_tuner.store.db import ParetoDB

RUN_SNIPPET = (
    "import numpy as np, tvm; from tvm import relax\n"
    "vm = relax.VirtualMachine(tvm.runtime.load_module('model.so'), tvm.cpu())\n"
    "heatmaps = vm['main'](tvm.runtime.tensor(x_nchw_float32)).numpy()"
)


class ExportError(RuntimeError):
    pass


def _preprocess(model_name: str) -> dict | str:
    """The input convention of the model: the zoo's is known; another model's is its own
    (what was passed to the search with --mean/--std/--bgr/--pixel-range)."""
    from pose_tuner.models import zoo

    if model_name in zoo.ZOO:
        from dataclasses import asdict

        from pose_tuner.accuracy.benchmark import Preprocess

        d = asdict(Preprocess())
        return {"color": "RGB" if d["rgb"] else "BGR", "pixel_range": "0-1" if d["scale01"]
                else "0-255", "mean": list(d["mean"]), "std": list(d["std"]),
                "crop": "person box padded 1.25x, affine to the input size"}
    return "the source model's own convention (as passed to tuner search with --mean/--std/--bgr/--pixel-range)"


def deployment_info(rec) -> dict:
    """What a deployment pipeline needs of a record besides its figures: whether the
    artifact is still there, how to export it, and how to rebuild it reproducibly (from
    the exact reference ONNX the candidate was built from, with the same target and
    schedule; MetaSchedule reuses the tuning records under the same --log-dir)."""
    info = {"artifact_exists": bool(rec.artifact_path and os.path.isfile(rec.artifact_path))}
    if rec.backend != "tvm":
        return info
    info["export"] = f"tuner export {rec.id} --out DIR"
    if rec.model_path:
        info["rebuild"] = (f"tuner search --target {rec.target} --model {rec.model_path} "
                           f"--prune 0 --quant {rec.quant} --schedules {rec.schedule_label} "
                           "--no-baselines --force")
    return info


def export_bundle(db: ParetoDB, record_id: int, out_dir: str) -> dict:
    rec = db.get(record_id)
    if rec is None:
        raise ExportError(f"no candidate with id {record_id} in {db.url}")
    if not rec.ok:
        raise ExportError(f"candidate {record_id} has status {rec.status}: {rec.error}")
    if rec.backend != "tvm":
        raise ExportError(f"candidate {record_id} is a {rec.backend} baseline; export TVM candidates")
    if not rec.artifact_path or not os.path.isfile(rec.artifact_path):
        raise ExportError(f"the artifact of candidate {record_id} is gone ({rec.artifact_path}); "
                          "re-run `tuner search --force` for its point")
    os.makedirs(out_dir, exist_ok=True)
    shutil.copy2(rec.artifact_path, os.path.join(out_dir, "model.so"))
    if rec.model_path and os.path.isfile(rec.model_path):
        shutil.copy2(rec.model_path, os.path.join(out_dir, "reference.onnx"))
    meta = {
        "candidate": rec.as_dict(),
        "library": "model.so",
        "reference_model": "reference.onnx" if rec.model_path else None,
        "input": {"shape": rec.input_shape, "layout": "NCHW", "dtype": "float32",
                  "preprocess": _preprocess(rec.model_name)},
        "weights": "inside model.so (constants of the compiled module)",
        "output": "heatmaps (1, K, H/4, W/4), COCO keypoint order; decode with argmax + "
                  "quarter-pixel refinement (pose_tuner/accuracy/decode.py)",
        "run": RUN_SNIPPET,
    }
    with open(os.path.join(out_dir, "metadata.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    return {"out": os.path.abspath(out_dir), "files": sorted(os.listdir(out_dir)),
            "id": rec.id, "latency_median_ms": rec.latency_median_ms, "ap": rec.ap}
