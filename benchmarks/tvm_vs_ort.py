"""TVM untuned vs TVM MetaSchedule-tuned vs ONNX Runtime, in one process run.

    .venv/bin/python benchmarks/tvm_vs_ort.py --trials 2000

Builds the built-in default model (mobilenetv2_deconv, 256x192, batch 1), measures ONNX
Runtime FP32, the untuned TVM build (TVM's default schedules) and the tuned TVM build
with the stated trial budget (records under --log-dir are reused, so a second run with
the same budget skips tuning), and prints latencies and ratios. Every TVM output is
checked against ONNX Runtime before it is timed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import _bootstrap  # noqa: E402,F401  (the repository on sys.path; TVM's threads)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="shufflenetv2_fpn")
    ap.add_argument("--target", default="x86", help="an x86 target (default: this host)")
    ap.add_argument("--input-size", default="256x192")
    ap.add_argument("--trials", type=int, default=2000, help="MetaSchedule trials for the model")
    ap.add_argument("--log-dir", default="logs")
    ap.add_argument("--budget", type=float, default=10.0, help="seconds of timed runs per backend")
    ap.add_argument("--skip-untuned", action="store_true", help="skip the ~3 s/image untuned build")
    args = ap.parse_args()

    import tvm

    from pose_tuner.hardware import get_target
    from pose_tuner.compile import frontend, pipeline, tuning
    from pose_tuner.measure.check import compare
    from pose_tuner.measure.inputs import structured_input
    from pose_tuner.measure.reference import ORTSession
    from pose_tuner.measure.runner import LocalVM, Timing
    from pose_tuner.models.source import parse_input_size, prepare_model
    from pose_tuner.search.rows import tuning_dir

    target_def = get_target(args.target)
    target_def.check_available()
    tdict = target_def.tvm_target()
    threads = target_def.num_threads()
    target = tvm.target.Target(tdict)
    model = prepare_model(args.model, parse_input_size(args.input_size),
                          os.path.join(args.log_dir, "models"))
    print(f"model {model.name} {model.input_shape_text} ({model.flops / 1e9:.2f} GFLOP), "
          f"target {tdict}, {threads} threads", flush=True)
    x = structured_input(model.input_shape, seed=3)
    ort = ORTSession(model.onnx_path, threads=threads)
    ref = ort.run(x)
    results = {}
    mod = pipeline.prepare(frontend.import_onnx(model.onnx_path), target)

    def measure(name, work_dir):
        t = time.time()
        ex = pipeline.compile_module(mod, target, work_dir)
        path = os.path.join(args.log_dir, "benchmarks", f"{name}.so")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        ex.export_library(path)
        vm = LocalVM(path)
        chk = compare(vm.run(x), ref)
        results[name] = vm.latency(x, Timing(budget_s=args.budget))
        print(f"{name}: built in {time.time() - t:.0f}s, rel err {chk.rel_err:.1e}, "
              f"median {results[name].median_ms:.2f} ms", flush=True)

    if not args.skip_untuned:
        measure("tvm_untuned", None)
    work = tuning_dir(args.log_dir, target_def.name, tdict)
    stats = tuning.tune(mod, target, work, args.trials, report=lambda m: print(m, flush=True),
                        int8_kernel=target_def.int8_kernel)
    print(f"tuning: {stats}", flush=True)
    measure(f"tvm_tuned_{args.trials}", work)
    results["onnxruntime"] = ort.latency(x, Timing(budget_s=args.budget))
    print(f"onnxruntime: median {results['onnxruntime'].median_ms:.2f} ms", flush=True)

    base = results["onnxruntime"].median_ms
    print("\n| backend | median ms | p90 ms | runs | / ONNX Runtime |")
    print("|---|---|---|---|---|")
    for name, s in results.items():
        print(f"| {name} | {s.median_ms:.2f} | {s.p90_ms:.2f} | {s.runs} | {s.median_ms / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
