"""Command line of the trainer: ``python -m pose_tuner.training``.

    python -m pose_tuner.training --model shufflenetv2_fpn --max-minutes 140 --lr 2e-3

Every :class:`~pose_tuner.training.train.TrainConfig` field is an option (``--help`` lists
them with their defaults); the run's summary is printed as one JSON line at the end.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import fields
from typing import Any, Optional, Sequence

from pose_tuner.training.train import TrainConfig, train

__all__ = ["build_parser", "config_from_args", "main"]


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: write HxW, e.g. 256x192") from None
    return h, w


def _pair(text: str) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad range {text!r}: write LO,HI, e.g. 0.75,1.25") from None
    return a, b


def _kv(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"bad --model-arg {text!r}: write KEY=VALUE")
    k, v = text.split("=", 1)
    try:
        val = ast.literal_eval(v)
    except (ValueError, SyntaxError):
        val = v
    return k.strip(), val


def _opt_int(text: str) -> Optional[int]:
    return None if text.lower() in ("none", "") else int(text)


def _opt_float(text: str) -> Optional[float]:
    return None if text.lower() in ("none", "") else float(text)


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    ap = argparse.ArgumentParser(
        prog="python -m pose_tuner.training",
        description="Train a zoo pose model on synthetic COCO-keypoint data (CPU) and save "
                    "fp16 weights for the zoo.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = ap.add_argument
    a("--model", default=d.model)
    a("--input-size", type=_size, default=d.input_size, help="HxW, multiples of 32")
    a("--width-mult", type=_opt_float, default=d.width_mult)
    a("--model-arg", dest="model_kwargs", type=_kv, action="append", default=[],
      help="extra factory kwarg KEY=VALUE (repeatable), e.g. fpn_channels=64")
    a("--data-dir", default=d.data_dir)
    a("--train-images", type=int, default=d.train_images)
    a("--val-images", type=int, default=d.val_images)
    a("--train-seed", type=int, default=d.train_seed)
    a("--val-seed", type=int, default=d.val_seed)
    a("--image-size", type=_size, default=d.image_size, help="generated image HxW")
    a("--max-steps", type=_opt_int, default=d.max_steps)
    a("--max-minutes", type=_opt_float, default=d.max_minutes, help="'none' for steps only")
    a("--batch-size", type=int, default=d.batch_size)
    a("--lr", type=float, default=d.lr)
    a("--min-lr-ratio", type=float, default=d.min_lr_ratio)
    a("--warmup-steps", type=int, default=d.warmup_steps)
    a("--weight-decay", type=float, default=d.weight_decay)
    a("--head-init-std", type=_opt_float, default=d.head_init_std, help="'none': zoo init")
    a("--sigma", type=float, default=d.sigma)
    a("--scale-range", type=_pair, default=d.scale_range, help="LO,HI")
    a("--rotation", type=float, default=d.rotation)
    a("--rotation-prob", type=float, default=d.rotation_prob)
    a("--flip-prob", type=float, default=d.flip_prob)
    a("--half-body-prob", type=float, default=d.half_body_prob)
    a("--padding", type=float, default=d.padding)
    a("--num-workers", type=int, default=d.num_workers,
      help="DataLoader workers (0 is fastest on 2 cores: data is ~2 ms/sample)")
    a("--threads", type=_opt_int, default=d.threads,
      help="torch threads (default: cores - 1; 2 on an idle 2-core box is faster, but "
           "collapses when anything else runs)")
    a("--seed", type=int, default=d.seed)
    a("--log-every-s", type=float, default=d.log_every_s)
    a("--eval-every-minutes", type=_opt_float, default=d.eval_every_minutes)
    a("--eval-max-people", type=_opt_int, default=d.eval_max_people)
    a("--flip-test", action=argparse.BooleanOptionalAction, default=d.flip_test)
    a("--evaluate", action=argparse.BooleanOptionalAction, default=d.evaluate)
    a("--checkpoint", default=d.checkpoint, help="default: pose_tuner/models/zoo/weights/<model>.pt")
    return ap


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    kw = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    kw["model_kwargs"] = tuple(args.model_kwargs)
    return TrainConfig(**kw)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    res = train(cfg, progress=lambda s: print(s, flush=True))
    print(json.dumps({"steps": res.steps, "minutes": round(res.minutes, 2),
                      "final_loss": res.final_loss, "val_ap": res.val_ap, "val_pck": res.val_pck,
                      "images_per_s": round(res.images_per_s, 2), "checkpoint": res.checkpoint}))
    return 0
