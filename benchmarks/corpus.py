"""Models users bring: every corpus entry (:mod:`pose_tuner.models.zoo.corpus`) through ``tuner search``.

    .venv/bin/python benchmarks/corpus.py --log-dir /tmp/corpus \\
        --coco-ann ../shared/data/coco-sample/person_keypoints.json \\
        --coco-images ../shared/data/coco-sample/images

Exports each corpus entry of a zoo model (``--base``, trained weights where the zoo has
them), runs one ``tuner search`` per entry (fp32 and int8, ``--schedules``, the target's
baselines, AP on the given COCO file), all in one log dir, so tuning records are shared
between entries with the same layers. Prints, per entry, which modes passed (built,
checked against ONNX Runtime and measured), the AP of fp32 and int8, and the best TVM
latency as a ratio of ONNX Runtime FP32 and INT8 measured in the same search. An entry
the base model cannot be exported as (an op the opset lacks) is a row saying so.
Each search's output goes to ``<log-dir>/corpus-logs/<entry>.log``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import _bootstrap  # noqa: E402,F401  (the repository on sys.path; TVM's threads)


def _fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="shufflenetv2_fpn", help="zoo model the corpus is made of")
    ap.add_argument("--input-size", default="256x192")
    ap.add_argument("--target", default="x86")
    ap.add_argument("--schedules", default="default,metaschedule:64")
    ap.add_argument("--entries", default=None, help="comma-separated corpus entries (default all)")
    ap.add_argument("--log-dir", default="logs/corpus")
    ap.add_argument("--coco-ann", default=None)
    ap.add_argument("--coco-images", default=None)
    ap.add_argument("--measure-budget", default="5")
    args = ap.parse_args()

    from pose_tuner.models import zoo
    from pose_tuner.store.db import ParetoDB, default_url
    from pose_tuner.models.source import parse_input_size
    from pose_tuner.models.zoo.corpus import ENTRIES, export_entry

    size = parse_input_size(args.input_size)
    names = args.entries.split(",") if args.entries else list(ENTRIES)
    model = zoo.build_model(args.base, input_size=size)
    out_dir = os.path.join(args.log_dir, "corpus-models")
    log_dir = os.path.join(args.log_dir, "corpus-logs")
    os.makedirs(log_dir, exist_ok=True)
    acc = (["--coco-ann", args.coco_ann, "--coco-images", args.coco_images]
           if args.coco_ann else ["--no-accuracy"])
    rows = []
    for name in names:
        try:
            entry = export_entry(name, model, size, out_dir)
        except Exception as exc:  # noqa: BLE001 - a row, not a crash
            rows.append((name, f"export failed: {str(exc).splitlines()[0][:90]}"))
            print(f"{name}: {rows[-1][1]}", flush=True)
            continue
        cmd = [sys.executable, "-m", "pose_tuner.cli", "search", "--target", args.target,
               "--model", entry.path, "--quant", "fp32,int8", "--prune", "0",
               "--schedules", args.schedules, "--log-dir", args.log_dir,
               "--measure-budget", args.measure_budget, *acc, *entry.search_args]
        print(f"{name}: {' '.join(cmd[2:])}", flush=True)
        with open(os.path.join(log_dir, f"{name}.log"), "w") as log:
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
        rows.append((name, rc))

    db = ParetoDB(default_url(args.log_dir))
    print(f"\ncorpus of {args.base} at {args.input_size}, target {args.target}, "
          f"schedules {args.schedules}, AP on {args.coco_ann or '(not measured)'}")
    head = ("entry", "modes ok", "AP fp32", "AP int8", "best TVM ms", "ORT FP32 ms", "ratio",
            "ORT INT8 ms", "ratio")
    print("  ".join(f"{h:>11}" for h in head))
    for name, rc in rows:
        if isinstance(rc, str):
            print(f"{name:>11}  {rc}")
            continue
        recs = db.records(model_name=name)
        tvm = [r for r in recs if r.backend == "tvm"]
        ok = [r for r in tvm if r.ok]
        best = {q: max((r.ap for r in ok if r.quant == q and r.ap is not None), default=None)
                for q in ("fp32", "int8")}
        fast = min((r.latency_median_ms for r in ok), default=None)
        ort = {r.quant: r.latency_median_ms for r in recs
               if r.backend == "onnxruntime" and r.ok}
        ratio = {q: fast / ort[q] if fast and ort.get(q) else None for q in ("fp32", "int8")}
        modes = f"{len(ok)}/{len(tvm)}"
        print("  ".join(f"{v:>11}" for v in (
            name, modes, _fmt(best["fp32"]), _fmt(best["int8"]), _fmt(fast, ".2f"),
            _fmt(ort.get("fp32"), ".2f"), _fmt(ratio["fp32"], ".2f"),
            _fmt(ort.get("int8"), ".2f"), _fmt(ratio["int8"], ".2f"))))
        for r in tvm:
            if not r.ok:
                print(f"{'':>11}  {r.quant} {r.schedule_label}: {r.error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
