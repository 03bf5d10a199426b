"""One job, end to end, in a child process: build, check, measure.

Run as ``python -m pose_tuner.jobs.worker JOB.json RESULT.json``: a job of
:mod:`pose_tuner.jobs.specs` in, a :class:`~pose_tuner.jobs.specs.JobResult` out. The
parent (:mod:`pose_tuner.jobs.executor`) gives it a timeout; a crash or hang here fails
one job. Progress lines go to the parent on the original stdout; everything else the
child or TVM prints goes to stderr, which the parent keeps in the job's log file.

A failure is a result with an error kind (:class:`pose_tuner.failures.ErrorKind`): what
the exception says where it has a type for it (a numerical mismatch, an unavailable
backend, a device that went away), else the stage the job was in (:class:`Stage`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import traceback

from pose_tuner.failures import ErrorKind
from pose_tuner.jobs.specs import (AccuracyJob, BaselineJob, BuildJob, CandidateJob, Job,
                                   JobResult, RemeasureJob, VariantJob, job_from_json)
from pose_tuner.measure.lean import without_torch


class Stage:
    """The part of a job running now; a failure without a more telling exception gets
    its kind (building, running the artifact, measuring accuracy, ...)."""

    def __init__(self, kind: ErrorKind = ErrorKind.BUILD):
        self.kind = kind

    def __call__(self, kind: ErrorKind) -> None:
        self.kind = kind


class TuningFailed(RuntimeError):
    """MetaSchedule measured none of its trials."""


#: what TVM 0.27 says, as a plain error, when an RPC session's device process went away
#: (it has no exception type for it): "code=kShutdown" where a kReturn was due, a closed
#: socket, a session past its timeout
_TVM_SESSION_LOST = ("kshutdown", "socket connection closed", "session timeout",
                     "broken pipe", "connection reset")


def classify(exc: BaseException, stage: ErrorKind, remote: bool) -> ErrorKind:
    """The kind of a job's failure from its exception and the stage it happened in."""
    from pose_tuner.baselines.base import BaselineUnavailable
    from pose_tuner.hardware.base import TargetUnavailable
    from pose_tuner.hardware.remote import RPCError
    from pose_tuner.measure.check import NumericalMismatch

    if isinstance(exc, NumericalMismatch):
        return ErrorKind.MISMATCH
    if isinstance(exc, (BaselineUnavailable, TargetUnavailable)):
        return ErrorKind.UNAVAILABLE
    if isinstance(exc, TuningFailed):
        return ErrorKind.TUNING
    if remote and (isinstance(exc, (RPCError, ConnectionError, socket.timeout))
                   or "RPC" in type(exc).__name__
                   or any(w in str(exc).lower() for w in _TVM_SESSION_LOST)):
        return ErrorKind.DEVICE_LOST
    return stage


def check_and_time(run, latency, numerics: str, onnx_path: str, input_shape, report,
                   stage: Stage, rtol: float = 2e-3, budget_s: float = 10.0,
                   local: bool = True) -> dict:
    """Check ``run`` against ONNX Runtime running ``onnx_path`` (the FP32 model; for a TVM
    int8 build its QDQ model in exact form) on two structured inputs (``exact`` or
    ``approx``), then time ``latency`` on a third: the same for every backend, so their
    numbers compare. The timing's conditions are checked (:mod:`pose_tuner.measure.noise`:
    timed again while noisy, flagged if it stays so); ``local``: timed on this machine's
    CPU (else only the spread of the repeats is judged)."""
    from pose_tuner.measure.check import compare, compare_approx
    from pose_tuner.measure.inputs import structured_input
    from pose_tuner.measure.reference import ORTSession
    from pose_tuner.measure.noise import checked_latency
    from pose_tuner.measure.runner import Timing
    from pose_tuner.measure.timing_lock import timing_lock

    stage(ErrorKind.RUN)
    report(f"checking numerics against ONNX Runtime on {os.path.basename(onnx_path)}")
    ref = ORTSession(onnx_path)
    shape = tuple(input_shape)
    worst = None
    for seed in (1, 2):
        x = structured_input(shape, seed=seed)
        if numerics == "exact":
            chk = compare(run(x), ref.run(x), rtol=rtol)
        else:
            chk = compare_approx(run(x), ref.run(x))
        if worst is None or chk.rel_err > worst.rel_err:
            worst = chk
    report("measuring latency")
    x = structured_input(shape, seed=3)
    with timing_lock() if local else contextlib.nullcontext():
        lat, cond = checked_latency(lambda: latency(x, Timing(budget_s=budget_s)), local=local)
    if cond.noisy:
        report(f"latency stays noisy after {cond.attempts} timings ({'; '.join(cond.reasons)}): "
               "stored, flagged")
    return dict(
        max_abs_err=worst.max_abs_err, rel_err=worst.rel_err,
        latency_median_ms=lat.median_ms, latency_p90_ms=lat.p90_ms, latency_mean_ms=lat.mean_ms,
        latency_std_ms=lat.std_ms, latency_runs=lat.runs, latency_noisy=cond.noisy,
        timing_conditions=cond.to_json(),
    )


def run_variant(job: VariantJob, report, stage: Stage) -> JobResult:
    """A pruned (optionally fine-tuned) copy of the torch model, exported to ONNX: the
    fp32 reference every candidate of that pruning ratio is built from and checked on."""
    import torch

    from pose_tuner.models.export import count_flops, count_params, export_onnx
    from pose_tuner.models.source import load_torch_module
    from pose_tuner.models.pruning import prune_model

    stage(ErrorKind.VARIANT)
    h, w = job.input_size
    loaded = load_torch_module(job.model, (h, w))
    if loaded is None:
        raise ValueError("pruning needs the PyTorch model (a zoo name or module:factory); "
                         "an ONNX file can only be searched at pruning ratio 0")
    module = loaded[0]
    report(f"pruning {job.prune_ratio:.0%} of the channels ({job.importance}, "
           f"multiples of {job.round_to})")
    gen = torch.Generator().manual_seed(0)
    example = torch.rand((1, 3, h, w), generator=gen)
    pruned, info = prune_model(module, float(job.prune_ratio), example,
                               importance=job.importance, round_to=int(job.round_to))
    report(f"pruned: {info.params_before / 1e6:.2f} -> {info.params_after / 1e6:.2f} M params, "
           f"{2 * info.macs_before / 1e9:.2f} -> {2 * info.macs_after / 1e9:.2f} GFLOP, "
           f"{len(info.changed)} layers thinner")
    steps = int(job.finetune_steps or 0)
    aps = recover(job, module, pruned, steps, (h, w), report) if steps else {}
    os.makedirs(os.path.dirname(job.out_path), exist_ok=True)
    tmp = job.out_path + f".tmp-{os.getpid()}.onnx"
    export_onnx(pruned.eval(), tmp, input_size=(h, w))
    os.replace(tmp, job.out_path)
    return JobResult(status="ok", onnx_path=job.out_path, param_count=count_params(pruned),
                     flops=float(count_flops(pruned, (h, w))), finetune_steps=steps, **aps)


def recover(job: VariantJob, teacher, pruned, steps: int, size, report) -> dict:
    """Recover ``pruned``'s accuracy in place (``job.recovery``: fine-tuning on the
    synthetic data, or distillation from ``teacher`` on the accuracy data's images); for
    distillation, the torch model's AP unpruned, pruned and distilled on that data."""
    from pose_tuner.accuracy.dataset import load_coco_keypoints
    from pose_tuner.training.train import evaluate_model

    people = []
    if job.eval_ann and job.recovery == "distill":
        from pose_tuner.training.train import val_subset

        people = val_subset(load_coco_keypoints(job.eval_ann, job.eval_images),
                            job.eval_max_people)
    aps = {}
    if people:
        aps["ap_unpruned"] = evaluate_model(teacher, people, size).ap
        aps["ap_pruned"] = evaluate_model(pruned, people, size).ap
    if job.recovery == "distill":
        from pose_tuner.training.distill import distill, image_instances

        if not job.eval_images:
            raise ValueError("distillation needs images: pass --coco-ann / --coco-images")
        report(f"distilling {steps} steps from the unpruned model on "
               f"{os.path.basename(job.eval_images.rstrip('/'))}")
        distill(pruned, teacher, steps, size, image_instances(job.eval_images, job.eval_ann),
                progress=lambda m: report(f"distill: {m}"))
    else:
        from pose_tuner.training.train import finetune

        report(f"fine-tuning {steps} steps")
        finetune(pruned, steps, size, data_dir=job.data_dir,
                 progress=lambda m: report(f"fine-tune: {m}"))
    if people:
        aps["ap_recovered"] = evaluate_model(pruned, people, size).ap
        report(f"AP (torch) unpruned {aps['ap_unpruned']:.3f}, pruned {aps['ap_pruned']:.3f}, "
               f"after {job.recovery} {aps['ap_recovered']:.3f}")
    return aps


#: how closely each quantization mode's build must match its reference (see check_and_time)
NUMERICS = {"fp32": ("exact", 2e-3), "fp16": ("exact", 5e-2), "int8": ("exact", 5e-2)}


def import_float(onnx_path: str, quant: str, report):
    """The ONNX model in Relax, fp32 or converted to fp16 (int8 has its own path)."""
    from pose_tuner.compile import frontend

    if quant == "fp16":
        report("importing into Relax; converting to fp16")
        return frontend.to_fp16(frontend.import_onnx(onnx_path, clip_as_min_max=True))
    report("importing into Relax")
    return frontend.import_onnx(onnx_path)


def import_int8(job: CandidateJob, report, target) -> tuple:
    """Quantize the variant (ONNX Runtime QDQ), import it and rewrite it to integer
    compute for TVM target ``target``; also its exact reference (the QDQ model in a form
    ONNX Runtime computes exactly on every ISA: the same integer maths)."""
    import numpy as np

    from pose_tuner.compile import frontend
    from pose_tuner.compile.backends import backend_for
    from pose_tuner.compile.int8 import quantize, rewrite

    report(f"quantizing to int8 (calibration: {job.calibration})")
    os.makedirs(os.path.dirname(job.artifact_path), exist_ok=True)
    qdq = quantize.quantize_qdq(job.onnx_path, np.load(job.calib_npy),
                                job.artifact_path[:-3] + ".qdq.onnx",
                                method=job.calibration, weight_bits=job.int8_weight_bits)
    reference = quantize.exact_reference(qdq)
    report("importing into Relax; rewriting quantized convolutions to integer compute")
    gathers = backend_for(target).host_kernels
    return rewrite.integer_rewrite(frontend.import_onnx(qdq), gathers=gathers), reference


def run_candidate(job: CandidateJob, report, stage: Stage) -> JobResult:
    """The compile pipeline's stages in order (quantize and import, prepare, tune,
    compile, export), then the numerical check and the timing."""
    import tvm

    from pose_tuner.compile import pipeline, tuning
    from pose_tuner.measure.runner import LocalVM

    t0 = time.time()
    target = tvm.target.Target(job.tvm_target)
    result: dict = {"tvm_version": tvm.__version__}
    rpc_spec = job.rpc
    reference = job.onnx_path
    if job.quant == "int8":
        mod, reference = import_int8(job, report, target)
    else:
        mod = import_float(job.onnx_path, job.quant, report)
    imported = mod
    mod = pipeline.prepare(mod, target)
    work_dir = None
    if job.schedule == "metaschedule":
        work_dir = job.tuning_dir
        stats = tuning.tune(mod, target, work_dir, int(job.trials), report=report,
                            runner_timeout_s=job.runner_timeout_s,
                            rpc_spec=rpc_spec, int8_kernel=job.int8_kernel)
        result["tune_trials_run"] = stats.trials_run
        result["tune_seconds"] = stats.seconds
        if stats.trials_run and not stats.trials_measured:
            raise TuningFailed(
                f"tuning measured none of its {stats.trials_run} trials (all failed to build or "
                f"run); see the MetaSchedule logs in {work_dir}/logs"
            )
    report("compiling")
    tb = time.time()
    ex = pipeline.compile_module(mod, target, work_dir)
    os.makedirs(os.path.dirname(job.artifact_path), exist_ok=True)
    if rpc_spec is not None:
        from pose_tuner.measure.rpc import export_cross

        export_cross(ex, job.artifact_path, rpc_spec.cross_cc)
    else:
        ex.export_library(job.artifact_path)
    result["build_seconds"] = time.time() - tb
    result["artifact_path"] = job.artifact_path
    result["model_size_bytes"] = os.path.getsize(job.artifact_path)

    if rpc_spec is not None:
        # accuracy runs on a host build of the same variant (same imported module,
        # default schedules); the device build is checked against the same reference
        report("compiling a host build for accuracy")
        host = tvm.target.Target({"kind": "llvm"})
        pipeline.compile_module(pipeline.prepare(imported, host), host).export_library(
            host_artifact(job.artifact_path))
        report(f"uploading to a device of key {rpc_spec.key!r} at {rpc_spec.tracker}")
        from pose_tuner.measure.runner import RemoteVM

        stage(ErrorKind.RUN)
        vm = RemoteVM(job.artifact_path, rpc_spec)
    else:
        vm = LocalVM(job.artifact_path, device=job.device)
    numerics, rtol = NUMERICS[job.quant]
    local_cpu = rpc_spec is None and job.device == "cpu"
    result.update(check_and_time(vm.run, vm.latency, numerics, reference, job.input_shape,
                                 report, stage, rtol=rtol, budget_s=job.measure_budget_s,
                                 local=local_cpu))
    if rpc_spec is not None:
        vm.close()  # its device back to the pool: the memory probe takes a session of its own
    result["peak_memory_mb"] = candidate_memory(job, report)
    # accuracy: measured afterwards per variant (an AccuracyJob), see pose_tuner.search.loop
    result["wall_seconds"] = time.time() - t0
    return JobResult(status="ok", **result)


def candidate_memory(job: CandidateJob, report) -> float | None:
    """The peak memory of running the candidate's artifact, measured where it runs."""
    from pose_tuner.measure import memory

    report("measuring peak memory")
    if job.rpc is not None:
        return memory.remote_peak_memory_mb(job.artifact_path, job.rpc, job.input_shape)
    if job.device != "cpu":
        return None  # a GPU's memory is not this process's resident set
    return memory.peak_memory_mb("tvm", job.artifact_path, job.input_shape)


def run_baseline(job: BaselineJob, report, stage: Stage) -> JobResult:
    import numpy as np

    from pose_tuner.baselines import get_baseline
    from pose_tuner.hardware import get_target

    t0 = time.time()
    baseline = get_baseline(job.baseline)
    rpc = job.rpc
    target = get_target(job.target, tracker=rpc.tracker if rpc else None,
                        rpc_key=rpc.key if rpc else None)
    baseline.check_available(target)
    cap = target.isa_below_host()
    report(f"preparing {baseline.name}"
           + (f" on a device of key {rpc.key!r} at {rpc.tracker}" if rpc else "")
           + (f", held to {cap} ({target.name}'s CPUs)" if cap else ""))
    calib = np.load(job.calib_npy) if job.calib_npy else None
    sess = baseline.prepare(job.onnx_path, job.work_dir, calib, int(job.threads), rpc=rpc,
                            isa_cap=cap, int8_weight_bits=target.int8_weight_bits)
    result: dict = {"build_seconds": time.time() - t0, "artifact_path": sess.artifact_path,
                    "model_size_bytes": sess.size_bytes}
    if sess.wider_kernels:
        report(f"held to {cap}, but these kernels run wider: {'; '.join(sess.wider_kernels)}")
    result.update(check_and_time(sess.run, sess.latency, baseline.numerics, job.onnx_path,
                                 job.input_shape, report, stage, budget_s=job.measure_budget_s,
                                 local=rpc is None))
    if cap:  # stored with the figure: what it was held to, and what ran wider anyway
        conditions = json.loads(result.get("timing_conditions") or "{}")
        conditions.update(isa_cap=cap, wider_kernels=list(sess.wider_kernels))
        result["timing_conditions"] = json.dumps(conditions)
    from pose_tuner.measure import memory

    if rpc is None and baseline.backend in memory.BACKENDS:
        report("measuring peak memory")
        result["peak_memory_mb"] = memory.peak_memory_mb(baseline.backend, sess.artifact_path,
                                                         job.input_shape, config=sess.config)
    if job.accuracy is not None:
        result.update(run_accuracy_on(sess.accuracy_run, job.accuracy, job.input_shape,
                                      report, stage))
    return JobResult(status="ok", wall_seconds=time.time() - t0, **result)


def run_build(job: BuildJob, report, stage: Stage) -> JobResult:
    """Compile only (``tuner build``): the model for the target with its default
    schedules, exported as the library that target loads (cross-linked where the target
    says its devices need it)."""
    import tvm

    from pose_tuner.compile import pipeline
    from pose_tuner.compile.backends import backend_for

    t0 = time.time()
    target = tvm.target.Target(job.tvm_target)
    mod = import_float(job.onnx_path, job.quant, report)
    report("compiling")
    ex = pipeline.compile_module(pipeline.prepare(mod, target), target)
    path = job.artifact_path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if job.cross_cc:
        from pose_tuner.measure.rpc import export_cross

        export_cross(ex, path, job.cross_cc)
    else:
        ex.export_library(path)
    return JobResult(status="ok", artifact_path=os.path.abspath(path),
                     model_size_bytes=os.path.getsize(path), build_seconds=time.time() - t0,
                     tvm_version=tvm.__version__, **backend_for(target).artifact_info(path))


def run_accuracy_on(predict, acc, input_shape, report, stage: Stage) -> dict:
    from pose_tuner.accuracy.benchmark import measure

    stage(ErrorKind.ACCURACY)
    report(f"measuring accuracy on {acc.identity}")
    try:
        return measure(predict, acc, tuple(input_shape[2:]))
    except ValueError as exc:
        raise ValueError(f"accuracy: {exc}") from None


def run_accuracy(job: AccuracyJob, report, stage: Stage) -> JobResult:
    """Accuracy of an already built TVM artifact (host build)."""
    from pose_tuner.measure.runner import LocalVM

    vm = LocalVM(job.artifact_path, device=job.device)
    return JobResult(status="ok",
                     **run_accuracy_on(vm.run, job.accuracy, job.input_shape, report, stage))


def host_artifact(artifact_path: str) -> str:
    """Where a remote candidate's host build (for accuracy) lives, beside the device's."""
    return artifact_path[:-3] + ".host.so"


def run_remeasure(job: RemeasureJob, report, stage: Stage) -> JobResult:
    """Time an existing TVM artifact again (drift detection): checked against its reference
    first, like the first time, so a stale or corrupted artifact fails instead of timing."""
    import tvm

    from pose_tuner.measure.runner import LocalVM, RemoteVM

    stage(ErrorKind.RUN)
    if job.rpc is not None:
        vm = RemoteVM(job.artifact_path, job.rpc)
    else:
        vm = LocalVM(job.artifact_path, device=job.device)
    numerics, rtol = NUMERICS[job.quant]
    reference = job.onnx_path
    if job.quant == "int8":  # the artifact's QDQ model, in its exact form
        from pose_tuner.compile.int8.quantize import exact_reference

        reference = exact_reference(job.onnx_path)
    result = check_and_time(vm.run, vm.latency, numerics, reference, job.input_shape, report,
                            stage, rtol=rtol, budget_s=job.measure_budget_s,
                            local=job.rpc is None and job.device == "cpu")
    return JobResult(status="ok", tvm_version=tvm.__version__, **result)


#: what runs each kind of job
RUNNERS = {VariantJob: run_variant, CandidateJob: run_candidate, BaselineJob: run_baseline,
           AccuracyJob: run_accuracy, RemeasureJob: run_remeasure, BuildJob: run_build}


def run_job(job: Job, report) -> JobResult:
    """Run ``job``; an exception becomes a failed result with its kind."""
    stage = Stage()
    try:
        runner = RUNNERS[type(job)]
    except KeyError:
        return JobResult.failure(ErrorKind.ERROR, f"no runner for {job.kind} jobs")
    try:
        return runner(job, report, stage)
    except Exception as exc:  # noqa: BLE001 - failures are data
        traceback.print_exc()
        msg = f"{exc.__class__.__name__}: {exc}".strip()
        return JobResult.failure(classify(exc, stage.kind, getattr(job, "rpc", None) is not None),
                                 msg.splitlines()[0][:500] if msg else repr(exc))


def main(argv: list[str]) -> int:
    job_path, result_path = argv
    # Keep the real stdout for progress; route everything else (TVM logs) to stderr.
    progress = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def report(msg: str) -> None:
        progress.write(msg.replace("\n", " ") + "\n")

    with open(job_path, encoding="utf-8") as f:
        job = job_from_json(f.read())
    if not job.uses_torch:
        without_torch()
    result = run_job(job, report)
    with open(result_path, "w", encoding="utf-8") as f:
        f.write(result.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
