"""The CUDA target checked on a GPU machine that has neither TVM nor a registry.

    .venv/bin/python benchmarks/gpu_check.py prepare            # here: build the kit
    python3 benchmarks/gpu_check.py run logs/gpu-kit            # on the GPU machine

``prepare`` builds the default model (256x192) for the cuda target in fp32, fp16 and int8
with the default GPU schedules, as the search does (the kernels compiled into the
library), and writes beside it: the ONNX Runtime outputs (FP32; for int8 the same QDQ
model) on the inputs every backend is checked with (:func:`pose_tuner.jobs.worker.check_and_time`: structured inputs of
seeds 1 and 2; seed 3 is timed), TVM's runtime without its compiler (the GPU machine
needs no compiler to load these libraries), apache-tvm-ffi wheels for the usual
Pythons, typing_extensions and NVIDIA's ``libcudart`` that TVM's CUDA runtime links
to. About 30 MB, for a machine reached only by copying files (``logs/`` is git-ignored:
carry ``logs/gpu-kit``). ``prepare --target x86`` makes a CPU kit, to try the
runtime-only path on this machine.

``run`` needs Python 3.10-3.13 and numpy. It loads each library with
:class:`pose_tuner.measure.runner.LocalVM` on ``cuda(0)``,
compares its outputs with the reference (:func:`pose_tuner.measure.check.compare`, the search's
tolerances), times it with the device's timer, and times the same model in PyTorch on
the same GPU as the peer when a CUDA build of torch is there. It prints one JSON object.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import _bootstrap  # noqa: E402,F401  (the repository on sys.path)

PYTHONS = ("cp310", "cp311", "cp312", "cp313")


def prepare(args) -> int:
    import shutil
    import subprocess

    import numpy as np
    import tvm

    from pose_tuner.hardware import get_target

    from pose_tuner.compile import frontend, pipeline
    from pose_tuner.compile.toolchains.cuda import fatbin_images
    from pose_tuner.measure.inputs import structured_input
    from pose_tuner.measure.reference import ORTSession
    from pose_tuner.models.source import parse_input_size, prepare_model
    from pose_tuner.jobs.worker import NUMERICS, import_float

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    model = prepare_model(args.model, parse_input_size(args.input_size),
                          os.path.join(args.log_dir, "models"))
    hardware = get_target(args.target)
    target_json = hardware.tvm_target()
    if target_json["kind"] == "cuda":
        target_json["arch"] = args.arch
    target = tvm.target.Target(target_json)
    shape = tuple(model.input_shape)
    ref = ORTSession(model.onnx_path)
    inputs = {seed: structured_input(shape, seed=seed) for seed in (1, 2, 3)}
    np.savez(os.path.join(out, "inputs.npz"), **{f"s{k}": v for k, v in inputs.items()})
    shutil.copy(model.onnx_path, os.path.join(out, "model.onnx"))
    artifacts = []
    for quant in args.quant.split(","):
        t0 = time.time()
        name = f"{model.name}-{quant}-default.so"
        if quant == "int8":  # as the search does: min-max on 32 person crops; the
            # reference is ONNX Runtime running the same QDQ model (the same integer maths)
            from pose_tuner.compile.int8 import quantize, rewrite
            from pose_tuner.accuracy.calibration import calibration_crops

            calib = calibration_crops(tuple(shape[2:]), 32, args.log_dir)
            qdq = quantize.quantize_qdq(model.onnx_path, calib,
                                        os.path.join(out, name[:-3] + ".qdq.onnx"))
            reference = ORTSession(quantize.exact_reference(qdq))  # exact on every CPU
            mod = rewrite.integer_rewrite(frontend.import_onnx(qdq), gathers=False)  # on a GPU
        else:
            reference = ref
            mod = import_float(model.onnx_path, quant, lambda m: print(m, file=sys.stderr))
        np.savez(os.path.join(out, f"reference-{quant}.npz"),
                 **{f"s{k}": reference.run(inputs[k]) for k in (1, 2)})
        ex = pipeline.compile_module(pipeline.prepare(mod, target), target)
        ex.export_library(os.path.join(out, name))
        with open(os.path.join(out, name), "rb") as f:
            images = fatbin_images(f.read())
        print(f"built {name} in {time.time() - t0:.1f}s: {images}", file=sys.stderr)
        artifacts.append({"file": name, "quant": quant, "schedule": "default",
                          "rtol": NUMERICS[quant][1], "images": images})
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump({"model": model.name, "model_hash": model.model_hash,
                   "input_shape": list(shape), "tvm_target": target_json,
                   "device": hardware.device,
                   "tvm_version": tvm.__version__, "artifacts": artifacts}, f, indent=2)

    # TVM's runtime (the wheel's package without libtvm_compiler.so) and tvm-ffi wheels
    import tarfile

    import tvm_ffi

    skip = {"libtvm_compiler.so", "__pycache__"}
    with tarfile.open(os.path.join(out, "tvm-runtime.tar.xz"), "w:xz") as tar:
        tar.add(os.path.dirname(tvm.__file__), arcname="tvm",
                filter=lambda info: None if os.path.basename(info.name) in skip else info)
    if args.no_download:
        return 0
    wheels = os.path.join(out, "wheels")
    os.makedirs(wheels, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "-d", wheels, "--platform", "manylinux_2_28_x86_64",
           "--platform", "manylinux2014_x86_64", "-q"]
    for py in PYTHONS:
        subprocess.run([*pip, "--python-version", py[2:], "--implementation", "cp",
                        f"apache-tvm-ffi=={tvm_ffi.__version__}"], check=True)
    # libtvm_runtime_cuda.so of this TVM links libcudart.so.13
    subprocess.run([*pip, "--python-version", "311", "nvidia-cuda-runtime==13.0.*",
                    "typing_extensions"], check=True)
    print(f"kit ready: {out} ({_size_mb(out):.0f} MB); on the GPU machine: "
          f"python3 benchmarks/gpu_check.py run {os.path.relpath(out)}", file=sys.stderr)
    return 0


def _size_mb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path)
               for f in fs) / 2**20


def _use_kit_runtime(kit: str, cuda: bool) -> dict:
    """Put the kit's TVM runtime and the tvm-ffi wheel of this Python on sys.path, with
    the kit's nvidia-cuda-runtime package beside them: where the system has no libcudart,
    :func:`pose_tuner.compile.toolchains.cuda.load_runtime` finds it there. Returns what was
    used."""
    import tempfile
    import zipfile

    used = {"python": sys.version.split()[0]}
    try:
        import typing_extensions  # noqa: F401  (tvm-ffi needs it)
    except ImportError:
        found = sorted(glob.glob(os.path.join(kit, "wheels", "typing_extensions-*.whl")))
        if not found:
            raise SystemExit("no typing_extensions here and none in the kit") from None
        sys.path.insert(0, found[0])  # pure Python: imported from the wheel itself
    try:
        import tvm_ffi  # noqa: F401

        used["tvm_ffi"] = "installed"
    except ImportError:
        tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
        found = sorted(glob.glob(os.path.join(kit, "wheels", f"apache_tvm_ffi-*-{tag}-*.whl")))
        if not found:
            raise SystemExit(f"the kit has no apache-tvm-ffi wheel for {tag}")
        site_ffi = tempfile.mkdtemp(prefix="tvm-ffi-")
        zipfile.ZipFile(found[0]).extractall(site_ffi)
        sys.path.insert(0, site_ffi)
        used["tvm_ffi"] = os.path.basename(found[0])
    import tarfile

    site = tempfile.mkdtemp(prefix="tvm-runtime-")
    with tarfile.open(os.path.join(kit, "tvm-runtime.tar.xz")) as tar:
        tar.extractall(site)
    sys.path.insert(0, site)
    whl = sorted(glob.glob(os.path.join(kit, "wheels", "nvidia_cuda_runtime-*.whl")))
    if cuda and whl:
        zipfile.ZipFile(whl[0]).extractall(site)
        used["cuda_runtime_wheel"] = os.path.basename(whl[0])
    return used


def _torch_peer(manifest: dict, x, dtype: str):
    """Median ms of the zoo model in PyTorch (eager, ``dtype``) on the same GPU, or the
    reason not."""
    try:
        import torch
    except ImportError as exc:
        return None, f"no torch: {exc}"
    if not torch.cuda.is_available():
        return None, "torch has no CUDA device"
    try:
        from pose_tuner.models.zoo import build_model

        model = build_model(manifest["model"], tuple(manifest["input_shape"][2:]))
    except Exception as exc:  # noqa: BLE001 - the peer is optional
        return None, f"zoo model: {exc}"
    model = model.eval().cuda().to(getattr(torch, dtype))
    inp = torch.from_numpy(x).cuda().to(getattr(torch, dtype))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    with torch.inference_mode():
        for i in range(60):
            start.record()
            model(inp)
            end.record()
            torch.cuda.synchronize()
            if i >= 10:
                times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2], None


def run(args) -> int:
    kit = os.path.abspath(args.kit)
    with open(os.path.join(kit, "manifest.json")) as f:
        manifest = json.load(f)
    report = {"environment": _use_kit_runtime(kit, manifest["device"] == "cuda")}

    import numpy as np
    import tvm

    from pose_tuner.measure.check import NumericalMismatch, compare
    from pose_tuner.hardware.cuda import cuda_driver_present
    from pose_tuner.measure.runner import LocalVM, Timing

    device = manifest["device"]
    report["environment"].update(
        tvm=tvm.__version__, tvm_file=tvm.__file__,
        tvm_runtime_only=bool(tvm.base._RUNTIME_ONLY), driver=cuda_driver_present())
    if device == "cuda":
        dev = tvm.cuda(0)
        report["gpu"] = {"exists": bool(dev.exist)}
        if dev.exist:
            report["gpu"].update(name=dev.device_name, compute_version=dev.compute_version)
    inputs = np.load(os.path.join(kit, "inputs.npz"))
    results = []
    peers: dict[str, tuple] = {}  # torch dtype -> (median ms or None, reason)
    for art in manifest["artifacts"]:
        row = {"file": art["file"], "quant": art["quant"]}
        try:
            t0 = time.time()
            vm = LocalVM(os.path.join(kit, art["file"]), device=device)
            row["load_s"] = round(time.time() - t0, 3)
            ref = np.load(os.path.join(kit, f"reference-{art['quant']}.npz"))
            try:
                checks = [compare(vm.run(inputs[f"s{s}"]), ref[f"s{s}"], rtol=art["rtol"])
                          for s in (1, 2)]
            except NumericalMismatch as exc:
                row.update(within_tolerance=False, check_error=str(exc))
                raise
            worst = max(checks, key=lambda c: c.rel_err)
            row.update(rel_err=worst.rel_err, max_abs_err=worst.max_abs_err,
                       within_tolerance=True)
            lat = vm.latency(inputs["s3"], Timing(budget_s=args.budget))
            row.update(median_ms=lat.median_ms, p90_ms=lat.p90_ms, runs=lat.runs)
            if device == "cuda":
                dtype = "float16" if art["quant"] == "fp16" else "float32"
                if dtype not in peers:
                    peers[dtype] = _torch_peer(manifest, inputs["s3"], dtype)
                peer, why = peers[dtype]
                row["torch_eager_ms"] = peer if peer is not None else why
                row["torch_dtype"] = dtype
                if peer:
                    row["tvm_over_torch"] = round(lat.median_ms / peer, 3)
        except Exception as exc:  # noqa: BLE001 - report every artifact
            row["error"] = f"{type(exc).__name__}: {exc}"
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    report["results"] = results
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0 if all(r.get("within_tolerance") for r in results) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="build the kit here")
    p.add_argument("--out", default="logs/gpu-kit")
    p.add_argument("--model", default="shufflenetv2_fpn")
    p.add_argument("--input-size", default="256x192")
    p.add_argument("--quant", default="fp32,fp16,int8")
    p.add_argument("--arch", default="sm_90", help="the GPU's arch (H100/H200: sm_90)")
    p.add_argument("--target", default="cuda",
                   help="cuda, or x86 to try the kit on this machine's CPU")
    p.add_argument("--no-download", action="store_true",
                   help="no tvm-ffi / libcudart wheels (the running Python has tvm-ffi)")
    p.add_argument("--log-dir", default="logs")
    p = sub.add_parser("run", help="check and time the kit on this machine's GPU")
    p.add_argument("kit")
    p.add_argument("--budget", type=float, default=2.0, help="timing seconds per library")
    p.add_argument("--out", default=None, help="also write the JSON report here")
    args = ap.parse_args()
    return prepare(args) if args.cmd == "prepare" else run(args)


if __name__ == "__main__":
    sys.exit(main())
