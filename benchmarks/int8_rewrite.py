"""The int8 rewrite's steps, one build each, timed side by side in one run.

    .venv/bin/python benchmarks/int8_rewrite.py --trials 64

Quantizes the default model (QDQ, min-max calibration on the search's 32 person crops)
and rewrites it to integer compute (:func:`pose_tuner.compile.int8.rewrite.integer_rewrite`)
three ways: as before 0.2.0 (``dequantize -> reshape / transpose / concat / slice / max-pool ->
quantize`` left in float, depthwise convs float), with those ops moving the 8-bit values
directly, and with the depthwise convs integer as well (today's rewrite). Each is tuned
with the same trial budget (records under --log-dir are reused: shared kernels are tuned
once), checked against ONNX Runtime running the same QDQ model exactly, then timed in
interleaved rounds.
"""

from __future__ import annotations

import argparse
import os
import sys

import _bootstrap  # noqa: E402,F401  (the repository on sys.path; TVM's threads)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="shufflenetv2_fpn")
    ap.add_argument("--target", default="x86", help="an x86 target (default: this host)")
    ap.add_argument("--input-size", default="256x192")
    ap.add_argument("--trials", type=int, default=512, help="MetaSchedule trials per build")
    ap.add_argument("--log-dir", default="logs")
    ap.add_argument("--qdq", default=None,
                    help="a QDQ model to use, e.g. the .qdq.onnx beside a search's int8 artifact "
                         "(its tuning records then apply); default: quantize here")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=2.0, help="seconds per build per round")
    args = ap.parse_args()

    import numpy as np
    import tvm

    from pose_tuner.hardware import get_target

    from pose_tuner.compile import frontend, pipeline, tuning
    from pose_tuner.compile.int8 import quantize, rewrite
    from pose_tuner.measure.inputs import structured_input
    from pose_tuner.measure.reference import ORTSession
    from pose_tuner.measure.runner import LocalVM, Timing, interleaved
    from pose_tuner.accuracy.calibration import calibration_crops
    from pose_tuner.models.source import parse_input_size, prepare_model
    from pose_tuner.search.rows import tuning_dir

    target_def = get_target(args.target)
    tdict = target_def.tvm_target()
    target = tvm.target.Target(tdict)
    size = parse_input_size(args.input_size)
    model = prepare_model(args.model, size, os.path.join(args.log_dir, "models"))
    out_dir = os.path.join(args.log_dir, "benchmarks")
    os.makedirs(out_dir, exist_ok=True)
    # the search's int8 calibration: 32 person crops of the synthetic data, min-max
    qdq = args.qdq
    if qdq is None:
        calib = calibration_crops(tuple(model.input_shape[2:]), 32, args.log_dir, None)
        qdq = quantize.quantize_qdq(model.onnx_path, calib,
                                    os.path.join(out_dir, f"{model.name}.qdq.onnx"),
                                    weight_bits=target_def.int8_weight_bits)
    work = tuning_dir(args.log_dir, target_def.name, tdict)
    x = structured_input(model.input_shape, seed=3)
    ref = ORTSession(quantize.exact_reference(qdq)).run(x)
    vms = {}
    variants = {"float movement (0.1)": dict(movement=False, depthwise=False),
                "8-bit movement": dict(movement=True, depthwise=False),
                "+ integer depthwise": dict(movement=True, depthwise=True)}
    for i, (name, options) in enumerate(variants.items()):
        stats = {}
        mod = rewrite.integer_rewrite(frontend.import_onnx(qdq), stats, **options)
        mod = pipeline.prepare(mod, target)
        tuning.tune(mod, target, work, args.trials, report=lambda m: print(m, flush=True),
                    int8_kernel=target_def.int8_kernel)
        path = os.path.join(out_dir, f"int8-rewrite-{i}.so")
        pipeline.compile_module(mod, target, work).export_library(path)
        vms[name] = LocalVM(path)
        err = float(np.abs(vms[name].run(x) - ref).max())
        print(f"{name}: {stats}, max abs diff vs ONNX Runtime (same QDQ model) {err:.1e}",
              flush=True)
    arg = tvm.runtime.tensor(x)
    samples = interleaved({name: (lambda f=vm.vm["main"]: f(arg)) for name, vm in vms.items()},
                          args.rounds, Timing(args.budget, min_repeat=10, max_repeat=500,
                                              warmup=2))
    base = float(np.median(samples["float movement (0.1)"]))
    print(f"\n{target_def.name}, MetaSchedule {args.trials} trials per build")
    print("\n| int8 build | median ms (rounds min-max) | / float movement |")
    print("|---|---|---|")
    for name, v in samples.items():
        print(f"| {name} | {np.median(v):.2f} ({min(v):.2f}-{max(v):.2f}) | "
              f"{np.median(v) / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
