"""``tuner build``: compile a model for a target without measuring it."""

from __future__ import annotations

import json
import os
import sys

from pose_tuner.cli.common import DEFAULT_LOG_DIR, UserError
from pose_tuner.cli.common import cuda_arch as _cuda_arch
from pose_tuner.cli.common import cuda_arch_for as _cuda_arch_for


def add_build_parser(sub) -> None:
    p = sub.add_parser("build", help="compile a model for a target without measuring it (no "
                                     "device needed: cross-compiles for rasp4b, builds for cuda)")
    p.add_argument("--target", required=True, help="hardware target (see `tuner targets`)")
    p.add_argument("--model", default="shufflenetv2_fpn", help="zoo name, .onnx file or module:factory")
    p.add_argument("--input-size", default=None, help="HxW for zoo/PyTorch models (default 256x192)")
    p.add_argument("--output", default=None,
                   help="the ONNX output that is the pose head, or X,Y for SimCC vectors, where "
                        "several outputs could be (default: found by shape)")
    p.add_argument("--quant", choices=("fp32", "fp16"), default="fp32",
                   help="fp32 or fp16 (int8 needs calibration: use tuner search)")
    p.add_argument("--out", required=True, help="the library to write (.so)")
    p.add_argument("--cuda-arch", default=None, type=_cuda_arch,
                   help="GPU architecture for --target cuda, e.g. sm_86 (default: sm_90)")
    p.add_argument("--log-dir", default=DEFAULT_LOG_DIR)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.set_defaults(handler=cmd_build)


def cmd_build(args) -> int:
    from pose_tuner.hardware import get_target

    from pose_tuner.jobs.executor import run_in_child
    from pose_tuner.jobs.specs import BuildJob
    from pose_tuner.models.source import parse_input_size, prepare_model

    _cuda_arch_for(args.target, args.cuda_arch)
    target = get_target(args.target, arch=args.cuda_arch)
    if not args.out.endswith(".so"):
        raise UserError(f"--out must name a .so file, got {args.out!r}")
    model = prepare_model(args.model, parse_input_size(args.input_size),
                          os.path.join(args.log_dir, "models"), output=args.output)
    job = BuildJob(onnx_path=model.onnx_path, tvm_target=target.tvm_target(), quant=args.quant,
                   artifact_path=args.out,
                   # a remote target's devices load libraries linked for them
                   cross_cc=target.cross_cc if target.remote else None)
    result = run_in_child(
        job, args.timeout, os.path.join(args.log_dir, "runs", "build", f"{target.name}.log"),
        on_progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps({"target": target.name, "tvm_target": target.tvm_target(),
                      "model": model.name, "model_hash": model.model_hash,
                      **result.as_dict()}, indent=2))
    return 0 if result.ok else 1
