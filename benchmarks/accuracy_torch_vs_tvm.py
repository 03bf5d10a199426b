"""Accuracy of a zoo model in PyTorch beside its compiled TVM artifact, on the same data.

    .venv/bin/python benchmarks/accuracy_torch_vs_tvm.py --log-dir logs \
        [--coco-ann ../shared/data/coco-sample/person_keypoints.json \
         --coco-images ../shared/data/coco-sample/images]

Takes the TVM candidate of the model from the Pareto database (default: the fastest
successful unpruned fp32 build; ``--candidate ID`` for another), evaluates it and the
PyTorch model it came from (the zoo's committed weights) with the very same top-down
pipeline: the built-in synthetic val split (as ``tuner search`` scores it) and,
optionally, real COCO keypoint data. Prints AP / AP50 / AP75 / AR / PCK side by side.
"""

from __future__ import annotations

import argparse
import os
import sys

import _bootstrap  # noqa: E402,F401  (the repository on sys.path; TVM's threads)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="x86")
    ap.add_argument("--model", default="shufflenetv2_fpn", help="zoo model name")
    ap.add_argument("--log-dir", default="logs")
    ap.add_argument("--db", default=None)
    ap.add_argument("--candidate", type=int, default=None, help="database id of the TVM build")
    ap.add_argument("--val-images", type=int, default=100, help="synthetic val split size")
    ap.add_argument("--coco-ann", default=None)
    ap.add_argument("--coco-images", default=None)
    args = ap.parse_args()

    import torch

    from pose_tuner.measure.runner import LocalVM
    from pose_tuner.accuracy.benchmark import coco, measure, synthetic_val
    from pose_tuner.store.db import ParetoDB, default_url
    from pose_tuner.models.zoo import build_model

    db = ParetoDB(args.db or default_url(args.log_dir))
    if args.candidate is not None:
        rec = db.get(args.candidate)
    else:
        recs = [r for r in db.records(target=args.target, model_name=args.model, backends=["tvm"],
                                      status="ok")
                if r.prune_ratio == 0 and r.quant == "fp32" and r.artifact_path]
        rec = min(recs, key=lambda r: r.latency_median_ms) if recs else None
    if rec is None or not rec.artifact_path or not os.path.exists(rec.artifact_path):
        print("no TVM build of the model in the database; run `tuner search` first", file=sys.stderr)
        return 2
    h, w = (int(v) for v in rec.input_shape.split("x")[2:])
    model = build_model(args.model, input_size=(h, w)).eval()
    vm = LocalVM(rec.artifact_path)

    def torch_predict(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    specs = [synthetic_val(args.log_dir, args.val_images)]
    if args.coco_ann:
        specs.append(coco(args.coco_ann, args.coco_images))
    print(f"TVM candidate #{rec.id}: p{rec.prune_ratio:.2f} {rec.quant} {rec.schedule_label} "
          f"({rec.artifact_path})")
    print(f"{'data':44s} {'backend':8s} {'people':>6s} {'AP':>6s} {'AP50':>6s} {'AP75':>6s} "
          f"{'AR':>6s} {'PCK':>6s}")
    for spec in specs:
        for name, fn in (("pytorch", torch_predict), ("tvm", vm.run)):
            r = measure(fn, spec, (h, w))
            print(f"{spec.identity[:44]:44s} {name:8s} {r['accuracy_people']:6d} {r['ap']:6.3f} "
                  f"{r['ap50']:6.3f} {r['ap75']:6.3f} {r['ar']:6.3f} {r['pck']:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
