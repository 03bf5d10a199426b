"""The best TVM point of a target against its baselines, timed side by side in one run.

    .venv/bin/python benchmarks/compare_baselines.py --target x86

Takes the fastest successful TVM candidate of the model from the Pareto database (run
`tuner search` first), prepares every baseline of the target (ONNX Runtime FP32/INT8,
OpenVINO FP32/BF16/INT8 on x86), checks each against the FP32 reference, then times all
of them in interleaved rounds on the same input so that machine noise hits them alike,
and prints medians and ratios. For a target narrower than this host (``PTUNER_HOST_ISA=avx2``
on an AVX-512 machine) the vendor stacks are held to the target's ISA where they can be
(OpenVINO) and skipped with the reason where they cannot (ONNX Runtime).
"""

from __future__ import annotations

import argparse
import os
import sys

import _bootstrap  # noqa: E402,F401  (the repository on sys.path; TVM's threads)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="x86")
    ap.add_argument("--model", default="shufflenetv2_fpn", help="model name in the database")
    ap.add_argument("--log-dir", default="logs")
    ap.add_argument("--db", default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds per backend per round")
    ap.add_argument("--id", type=int, default=None,
                    help="the TVM candidate to time (default: the fastest whose AP is within "
                         "--ap-tolerance of the best baseline's AP)")
    ap.add_argument("--also", type=int, action="append", default=[],
                    help="another TVM candidate to time in the same rounds (repeatable), e.g. "
                         "the fp32 point of the same tuning budget")
    ap.add_argument("--ap-tolerance", type=float, default=0.01)
    args = ap.parse_args()

    import numpy as np

    from pose_tuner.hardware import get_target
    from pose_tuner.baselines import BaselineUnavailable, get_baseline
    from pose_tuner.measure.check import NumericalMismatch, compare, compare_approx
    from pose_tuner.measure.inputs import structured_input
    from pose_tuner.compile.int8.quantize import exact_reference
    from pose_tuner.measure.reference import ORTSession
    from pose_tuner.measure.runner import LocalVM, Timing, interleaved
    from pose_tuner.accuracy.calibration import calibration_inputs
    from pose_tuner.store.db import ParetoDB, default_url
    from pose_tuner.models.source import PreparedModel
    from pose_tuner.store.pareto import best_under

    from pose_tuner.jobs.worker import NUMERICS

    target = get_target(args.target)
    db = ParetoDB(args.db or default_url(args.log_dir))
    recs = db.records(target=target.name, model_name=args.model)
    tvm_recs = [r for r in recs if r.backend == "tvm"]
    if args.id is not None:
        best = next(r for r in tvm_recs if r.id == args.id)
    else:
        # matched accuracy: the fastest TVM point whose AP is within the tolerance of the
        # most accurate baseline's
        bl_ap = [r.ap for r in recs if r.backend != "tvm" and r.ok and r.ap is not None]
        floor = max(bl_ap) - args.ap_tolerance if bl_ap else None
        best = best_under(tvm_recs, min_ap=floor)
    # baselines run the model as it is (the unpruned reference of the same model hash)
    plain = next(r for r in tvm_recs if r.model_hash == best.model_hash and r.prune_ratio == 0
                 and r.model_path)
    onnx_path = plain.model_path
    shape = tuple(int(v) for v in best.input_shape.split("x"))
    print(f"TVM point: #{best.id} p{best.prune_ratio:.2f} {best.quant} {best.schedule_label} "
          f"(AP {best.ap}, {best.latency_median_ms:.2f} ms in its search); baselines run "
          f"{onnx_path}", flush=True)
    x = structured_input(shape, seed=3)
    ref = ORTSession(onnx_path).run(x)
    threads = target.num_threads()
    runners = {}
    vm = LocalVM(best.artifact_path)
    # checked against the reference it was built from (int8: the quantized model)
    own_ref = (exact_reference(best.artifact_path[:-3] + ".qdq.onnx") if best.quant == "int8"
               else best.model_path)
    _, rtol = NUMERICS[best.quant]
    compare(vm.run(x), ORTSession(own_ref).run(x), rtol=rtol)
    fn, arg = vm.vm["main"], vm.tvm.runtime.tensor(x, vm.dev)
    runners[f"tvm p{best.prune_ratio:.2f} {best.quant} {best.schedule_label}"] = lambda: fn(arg)
    for other in (r for i in args.also for r in tvm_recs if r.id == i):
        ovm = LocalVM(other.artifact_path)
        oref = (exact_reference(other.artifact_path[:-3] + ".qdq.onnx") if other.quant == "int8"
                else other.model_path)
        compare(ovm.run(x), ORTSession(oref).run(x), rtol=NUMERICS[other.quant][1])
        runners[f"tvm p{other.prune_ratio:.2f} {other.quant} {other.schedule_label}"] = (
            lambda f=ovm.vm["main"], a=ovm.tvm.runtime.tensor(x, ovm.dev): f(a))
    model = PreparedModel(args.model, "zoo", onnx_path, best.model_hash, shape, tuple(ref.shape),
                          None, None, 0)
    calib = calibration_inputs(model)
    cap = target.isa_below_host()
    for name in target.baselines:
        bl = get_baseline(name)
        try:
            bl.check_available(target)
        except BaselineUnavailable as exc:
            print(f"{name}: skipped: {exc}", flush=True)
            continue
        sess = bl.prepare(onnx_path, os.path.join(args.log_dir, "benchmarks", name), calib, threads,
                          isa_cap=cap, int8_weight_bits=target.int8_weight_bits)
        try:
            (compare if bl.numerics == "exact" else compare_approx)(sess.run(x), ref)
        except NumericalMismatch as exc:  # a wrong result is not timed
            print(f"{name}: fails the check, not timed: {exc}", flush=True)
            continue
        runners[name] = lambda s=sess: s._call(x)
        print(f"{name}: prepared and checked"
              + (f"; held to {cap}, but these kernels run wider: "
                 f"{'; '.join(sess.wider_kernels)}" if sess.wider_kernels else ""), flush=True)

    samples = interleaved(runners, args.rounds, Timing(args.budget, min_repeat=3, warmup=2),
                          progress=lambda r: print(f"round {r}/{args.rounds} done", flush=True))
    # the median over rounds of each round's median; min-max shows the spread
    med = {name: float(np.median(v)) for name, v in samples.items()}
    tvm_name = next(iter(runners))
    print("\n| backend | median ms (rounds min-max) | backend / TVM latency |")
    print("|---|---|---|")
    for name in sorted(med, key=med.get):
        print(f"| {name} | {med[name]:.2f} ({min(samples[name]):.2f}-{max(samples[name]):.2f}) "
              f"| {med[name] / med[tvm_name]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
