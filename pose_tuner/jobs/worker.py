"""One candidate, end to end, in a child process: build, check, measure.

Run as ``python -m pose_tuner.jobs.worker SPEC.json RESULT.json``. The parent
(:mod:`pose_tuner.jobs.executor`) gives it a timeout; a crash or hang here fails one candidate.
Progress lines go to the parent on the original stdout; everything else the child or
TVM prints goes to stderr, which the parent keeps in the candidate's log file.
The result JSON is ``{"status": "ok"|"failed", "error": ..., measurements...}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback


def check_and_time(run, latency, numerics: str, spec: dict, report) -> dict:
    """Check ``run`` against ONNX Runtime running ``spec["onnx_path"]`` (the FP32 model; for
    a TVM int8 build its QDQ model in exact form) on two structured inputs
    (``exact`` or ``approx``), then time ``latency`` on a third: the same for every
    backend, so their numbers compare."""
    from pose_tuner.measure.check import compare, compare_approx
    from pose_tuner.measure.inputs import structured_input
    from pose_tuner.measure.reference import ORTSession

    report(f"checking numerics against ONNX Runtime on {os.path.basename(spec['onnx_path'])}")
    ref = ORTSession(spec["onnx_path"])
    shape = tuple(spec["input_shape"])
    worst = None
    for seed in (1, 2):
        x = structured_input(shape, seed=seed)
        if numerics == "exact":
            chk = compare(run(x), ref.run(x), rtol=spec.get("rtol", 2e-3))
        else:
            chk = compare_approx(run(x), ref.run(x))
        if worst is None or chk.rel_err > worst.rel_err:
            worst = chk
    report("measuring latency")
    lat = latency(structured_input(shape, seed=3), budget_s=spec.get("measure_budget_s", 10.0),
                  min_repeat=spec.get("min_repeat", 5), max_repeat=spec.get("max_repeat", 50))
    return dict(
        max_abs_err=worst.max_abs_err, rel_err=worst.rel_err,
        latency_median_ms=lat.median_ms, latency_p90_ms=lat.p90_ms, latency_mean_ms=lat.mean_ms,
        latency_std_ms=lat.std_ms, latency_runs=lat.runs,
    )


def run_variant(spec: dict, report) -> dict:
    """A pruned (optionally fine-tuned) copy of the torch model, exported to ONNX: the
    fp32 reference every candidate of that pruning ratio is built from and checked on."""
    import torch

    from pose_tuner.search.pruning import prune_model
    from pose_tuner.models.source import load_torch_module
    from pose_tuner.models.export import count_flops, count_params, export_onnx

    h, w = spec["input_size"]
    loaded = load_torch_module(spec["model"], (h, w))
    if loaded is None:
        raise ValueError("pruning needs the PyTorch model (a zoo name or module:factory); "
                         "an ONNX file can only be searched at pruning ratio 0")
    module = loaded[0]
    report(f"pruning {spec['prune_ratio']:.0%} of the channels ({spec['importance']}, "
           f"multiples of {spec['round_to']})")
    gen = torch.Generator().manual_seed(0)
    example = torch.rand((1, 3, h, w), generator=gen)
    pruned, info = prune_model(module, float(spec["prune_ratio"]), example,
                               importance=spec["importance"], round_to=int(spec["round_to"]))
    report(f"pruned: {info.params_before / 1e6:.2f} -> {info.params_after / 1e6:.2f} M params, "
           f"{2 * info.macs_before / 1e9:.2f} -> {2 * info.macs_after / 1e9:.2f} GFLOP, "
           f"{len(info.changed)} layers thinner")
    steps = int(spec.get("finetune_steps") or 0)
    aps = recover(spec, module, pruned, steps, (h, w), report) if steps else {}
    os.makedirs(os.path.dirname(spec["out_path"]), exist_ok=True)
    tmp = spec["out_path"] + f".tmp-{os.getpid()}.onnx"
    export_onnx(pruned.eval(), tmp, input_size=(h, w))
    os.replace(tmp, spec["out_path"])
    return {"status": "ok", "onnx_path": spec["out_path"], "param_count": count_params(pruned),
            "flops": float(count_flops(pruned, (h, w))), "finetune_steps": steps, **aps}


def recover(spec: dict, teacher, pruned, steps: int, size, report) -> dict:
    """Recover ``pruned``'s accuracy in place (``spec["recovery"]``: fine-tuning on the
    synthetic data, or distillation from ``teacher`` on the accuracy data's images); for
    distillation, the torch model's AP unpruned, pruned and distilled on that data."""
    from pose_tuner.accuracy.dataset import load_coco_keypoints
    from pose_tuner.training.train import evaluate_model

    people = []
    if spec.get("eval_ann") and spec.get("recovery") == "distill":
        from pose_tuner.training.train import _val_subset

        people = _val_subset(load_coco_keypoints(spec["eval_ann"], spec["eval_images"]),
                             spec.get("eval_max_people"))
    aps = {}
    if people:
        aps["ap_unpruned"] = evaluate_model(teacher, people, size).ap
        aps["ap_pruned"] = evaluate_model(pruned, people, size).ap
    if spec.get("recovery") == "distill":
        from pose_tuner.training.distill import distill, image_instances

        if not spec.get("eval_images"):
            raise ValueError("distillation needs images: pass --coco-ann / --coco-images")
        report(f"distilling {steps} steps from the unpruned model on "
               f"{os.path.basename(spec['eval_images'].rstrip('/'))}")
        distill(pruned, teacher, steps, size,
                image_instances(spec["eval_images"], spec.get("eval_ann")),
                progress=lambda m: report(f"distill: {m}"))
    else:
        from pose_tuner.training.train import finetune

        report(f"fine-tuning {steps} steps")
        finetune(pruned, steps, size, data_dir=spec["data_dir"],
                 progress=lambda m: report(f"fine-tune: {m}"))
    if people:
        aps["ap_recovered"] = evaluate_model(pruned, people, size).ap
        report(f"AP (torch) unpruned {aps['ap_unpruned']:.3f}, pruned {aps['ap_pruned']:.3f}, "
               f"after {spec.get('recovery')} {aps['ap_recovered']:.3f}")
    return aps


#: how closely each quantization mode's build must match its reference (see check_and_time)
NUMERICS = {"fp32": ("exact", 2e-3), "fp16": ("exact", 5e-2), "int8": ("exact", 5e-2)}


def import_float(onnx_path: str, quant: str, report):
    """The ONNX model in Relax, fp32 or converted to fp16 (int8 has its own path)."""
    from pose_tuner.compile import tvm_builder

    if quant == "fp16":
        report("importing into Relax; converting to fp16")
        return tvm_builder.to_fp16(tvm_builder.import_onnx(onnx_path, clip_as_min_max=True))
    report("importing into Relax")
    return tvm_builder.import_onnx(onnx_path)


def run_candidate(spec: dict, report) -> dict:
    import tvm

    from pose_tuner.compile import tvm_builder
    from pose_tuner.measure.runner import LocalVM

    t0 = time.time()
    point = spec["point"]
    target = tvm.target.Target(spec["tvm_target"])
    result: dict = {"tvm_version": tvm.__version__}
    from pose_tuner.measure.rpc import spec_from

    rpc_spec = spec_from(spec)

    quant = point["quant"]
    if quant == "int8":
        import numpy as np

        from pose_tuner.compile import int8

        report(f"quantizing to int8 (calibration: {spec['calibration']})")
        os.makedirs(os.path.dirname(spec["artifact_path"]), exist_ok=True)
        bits = int(spec.get("int8_weight_bits", 8))
        qdq = int8.quantize_qdq(spec["onnx_path"], np.load(spec["calib_npy"]),
                                spec["artifact_path"][:-3] + ".qdq.onnx", method=spec["calibration"],
                                weight_bits=bits)
        # the reference is the quantized model run by ONNX Runtime, in a form it computes
        # exactly on every ISA: the same integer maths
        spec = {**spec, "onnx_path": int8.exact_reference(qdq)}
        report("importing into Relax; rewriting quantized convolutions to integer compute")
        mod = int8.integer_rewrite(tvm_builder.import_onnx(qdq))
    else:
        mod = import_float(spec["onnx_path"], quant, report)
    imported = mod
    mod = tvm_builder.prepare(mod, target)
    work_dir = None
    if point["schedule"] == "metaschedule":
        work_dir = spec["tuning_dir"]
        stats = tvm_builder.tune(mod, target, work_dir, int(point["trials"]), report=report,
                                 runner_timeout_s=spec.get("runner_timeout_s", 60),
                                 rpc_spec=rpc_spec, int8_kernel=spec.get("int8_kernel"))
        result["tune_trials_run"] = stats.trials_run
        result["tune_seconds"] = stats.seconds
        if stats.trials_run and not stats.trials_measured:
            raise RuntimeError(
                f"tuning measured none of its {stats.trials_run} trials (all failed to build or "
                f"run); see the MetaSchedule logs in {work_dir}/logs"
            )
    report("compiling")
    tb = time.time()
    ex = tvm_builder.compile_module(mod, target, work_dir)
    os.makedirs(os.path.dirname(spec["artifact_path"]), exist_ok=True)
    if rpc_spec is not None:
        from pose_tuner.measure.rpc import export_cross

        export_cross(ex, spec["artifact_path"], rpc_spec.cross_cc)
    else:
        ex.export_library(spec["artifact_path"])
    result["build_seconds"] = time.time() - tb
    result["artifact_path"] = spec["artifact_path"]
    result["model_size_bytes"] = os.path.getsize(spec["artifact_path"])

    if rpc_spec is not None:
        # accuracy runs on a host build of the same variant (same imported module,
        # default schedules); the device build is checked against the same reference
        report("compiling a host build for accuracy")
        host = tvm.target.Target({"kind": "llvm"})
        tvm_builder.compile_module(tvm_builder.prepare(imported, host), host).export_library(
            host_artifact(spec["artifact_path"]))
        report(f"uploading to a device of key {rpc_spec.key!r} at {rpc_spec.tracker}")
        from pose_tuner.measure.runner import RemoteVM

        vm = RemoteVM(spec["artifact_path"], rpc_spec)
    else:
        vm = LocalVM(spec["artifact_path"], device=run_device(spec["tvm_target"]))
    numerics, rtol = NUMERICS[quant]
    result.update(check_and_time(vm.run, vm.latency, numerics, {"rtol": rtol, **spec}, report))
    # accuracy: measured afterwards per variant (kind "accuracy"), see pose_tuner.search.loop
    result["wall_seconds"] = time.time() - t0
    result["status"] = "ok"
    return result


def run_baseline(spec: dict, report) -> dict:
    import numpy as np

    from pose_tuner.hardware import get_target
    from pose_tuner.baselines import get_baseline

    t0 = time.time()
    baseline = get_baseline(spec["baseline"])
    from pose_tuner.measure.rpc import spec_from

    rpc = spec_from(spec)
    target = get_target(spec["target"], tracker=rpc.tracker if rpc else None,
                        rpc_key=rpc.key if rpc else None)
    baseline.check_available(target)
    report(f"preparing {baseline.name}"
           + (f" on a device of key {rpc.key!r} at {rpc.tracker}" if rpc else ""))
    calib = np.load(spec["calib_npy"]) if spec.get("calib_npy") else None
    sess = baseline.prepare(spec["onnx_path"], spec["work_dir"], calib, int(spec["threads"]),
                            rpc=rpc)
    result: dict = {"build_seconds": time.time() - t0, "artifact_path": sess.artifact_path,
                    "model_size_bytes": sess.size_bytes}
    result.update(check_and_time(sess.run, sess.latency, baseline.numerics, spec, report))
    if spec.get("accuracy"):
        result.update(run_accuracy_on(sess.accuracy_run, spec, report))
    result.update(wall_seconds=time.time() - t0, status="ok")
    return result


def run_build(spec: dict, report) -> dict:
    """Compile only (``tuner build``): the model for the target with its default
    schedules, exported as the library that target loads (cross-linked for aarch64)."""
    import tvm

    from pose_tuner.compile import tvm_builder

    t0 = time.time()
    target = tvm.target.Target(spec["tvm_target"])
    mod = import_float(spec["onnx_path"], spec["quant"], report)
    report("compiling")
    ex = tvm_builder.compile_module(tvm_builder.prepare(mod, target), target)
    path = spec["artifact_path"]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if str(spec["tvm_target"].get("mtriple", "")).startswith("aarch64"):
        from pose_tuner.measure.rpc import CROSS_CC, export_cross

        export_cross(ex, path, CROSS_CC)
    else:
        ex.export_library(path)
    result = {"status": "ok", "artifact_path": os.path.abspath(path),
              "model_size_bytes": os.path.getsize(path), "build_seconds": time.time() - t0,
              "tvm_version": tvm.__version__}
    if target.kind.name == "cuda":
        from pose_tuner.hardware.cuda import compile_mode, fatbin_images

        with open(path, "rb") as f:
            result.update(cuda_compiler=compile_mode(), cuda_images=fatbin_images(f.read()))
    return result


def run_accuracy_on(predict, spec: dict, report) -> dict:
    from pose_tuner.accuracy.benchmark import AccuracySpec, measure

    acc = AccuracySpec.from_dict(spec["accuracy"])
    report(f"measuring accuracy on {acc.identity}")
    try:
        return measure(predict, acc, tuple(spec["input_shape"][2:]))
    except ValueError as exc:
        raise ValueError(f"accuracy: {exc}") from None


def run_accuracy(spec: dict, report) -> dict:
    """Accuracy of an already built TVM artifact (host build)."""
    from pose_tuner.measure.runner import LocalVM

    vm = LocalVM(spec["artifact_path"], device=spec.get("device", "cpu"))
    result = run_accuracy_on(vm.run, spec, report)
    result["status"] = "ok"
    return result


def run_device(tvm_target: dict) -> str:
    """Where a local artifact of this TVM target runs: ``cuda`` or ``cpu``."""
    return "cuda" if tvm_target.get("kind") == "cuda" else "cpu"


def host_artifact(artifact_path: str) -> str:
    """Where a remote candidate's host build (for accuracy) lives, beside the device's."""
    return artifact_path[:-3] + ".host.so"


def run_remeasure(spec: dict, report) -> dict:
    """Time an existing TVM artifact again (drift detection): checked against its reference
    first, like the first time, so a stale or corrupted artifact fails instead of timing."""
    import tvm

    from pose_tuner.measure.rpc import spec_from
    from pose_tuner.measure.runner import LocalVM, RemoteVM

    rpc = spec_from(spec)
    if rpc is not None:
        vm = RemoteVM(spec["artifact_path"], rpc)
    else:
        vm = LocalVM(spec["artifact_path"], device=spec.get("device", "cpu"))
    numerics, rtol = NUMERICS[spec["quant"]]
    if spec["quant"] == "int8":  # the artifact's QDQ model, in its exact form
        from pose_tuner.compile.int8 import exact_reference

        spec = {**spec, "onnx_path": exact_reference(spec["onnx_path"])}
    result = check_and_time(vm.run, vm.latency, numerics, {"rtol": rtol, **spec}, report)
    result.update(status="ok", tvm_version=tvm.__version__)
    return result


def main(argv: list[str]) -> int:
    spec_path, result_path = argv
    # Keep the real stdout for progress; route everything else (TVM logs) to stderr.
    progress = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def report(msg: str) -> None:
        progress.write(msg.replace("\n", " ") + "\n")

    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    try:
        if spec.get("kind") == "variant":
            result = run_variant(spec, report)
        elif spec.get("kind") == "baseline":
            result = run_baseline(spec, report)
        elif spec.get("kind") == "accuracy":
            result = run_accuracy(spec, report)
        elif spec.get("kind") == "remeasure":
            result = run_remeasure(spec, report)
        elif spec.get("kind") == "build":
            result = run_build(spec, report)
        else:
            result = run_candidate(spec, report)
    except Exception as exc:  # noqa: BLE001 - failures are data
        traceback.print_exc()
        msg = f"{exc.__class__.__name__}: {exc}".strip()
        result = {"status": "failed", "error": msg.splitlines()[0][:500] if msg else repr(exc)}
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
