"""``tuner search``: build and measure every point of the search space."""

from __future__ import annotations

import json
import sys

from pose_tuner.cli.common import UserError, add_common, cuda_arch, cuda_arch_for


def add_search_parser(sub) -> None:
    p = sub.add_parser("search", help="build and measure every point of the search space")
    add_common(p)
    _add_model_options(p)
    _add_space_options(p)
    _add_strategy_options(p)
    _add_run_options(p)
    _add_accuracy_options(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_search)


def _add_model_options(p) -> None:
    p.add_argument("--model", default="shufflenetv2_fpn",
                   help="zoo model name, an .onnx file, or package.module:factory (default: "
                        "shufflenetv2_fpn, trained on the built-in data)")
    p.add_argument("--input-size", default=None, help="HxW for zoo/PyTorch models (default 256x192)")
    p.add_argument("--output", default=None,
                   help="the ONNX output that is the pose head, or X,Y for SimCC vectors, where "
                        "several outputs could be (default: found by shape)")


def _add_space_options(p) -> None:
    p.add_argument("--space", default=None,
                   help="search space TOML file (default: pose_tuner/search/default.toml); the "
                        "flags below override its dimensions")
    p.add_argument("--schedules", default=None,
                   help="comma-separated schedules: default and/or metaschedule:N with N trials per "
                        "model (e.g. default,metaschedule:64)")
    p.add_argument("--trials", type=int, default=None,
                   help="shorthand: tune with metaschedule:N (replaces metaschedule entries)")
    p.add_argument("--prune", default=None, help="comma-separated pruning ratios, e.g. 0,0.25,0.5")
    p.add_argument("--quant", default=None,
                   help="comma-separated quantization modes: fp32, fp16, int8")


def _add_strategy_options(p) -> None:
    p.add_argument("--strategy", choices=("cheap-first", "grid", "nsga2", "tpe"),
                   default="cheap-first",
                   help="cheap-first (default): per pruning ratio, the untuned points, then "
                        "only the tuned points that can still reach the front (the others "
                        "are skipped and stored as such); grid: every point, cheapest "
                        "first; nsga2 / tpe: "
                        "Optuna multi-objective sampling of --n-trials points (AP up, "
                        "latency down)")
    p.add_argument("--n-trials", type=int, default=None,
                   help="new points an Optuna strategy measures (default: half the grid, >= 4); "
                        "for cheap-first, a cap")
    p.add_argument("--objectives", default="ap,latency",
                   help="Optuna objectives: ap,latency or ap,latency,size (default ap,latency)")
    p.add_argument("--seed", type=int, default=0, help="Optuna sampler seed (default 0)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="minutes after which no new candidate starts (finished points are kept; "
                        "run again to continue)")
    p.add_argument("--force", action="store_true", help="re-measure points already in the database")


def _add_run_options(p) -> None:
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds one candidate may take before it is killed (default: 3600)")
    p.add_argument("--measure-budget", type=float, default=10.0,
                   help="seconds of timed runs per latency measurement (default: 10)")
    p.add_argument("--threads", type=int, default=None, help="runtime threads (default: all cores)")
    p.add_argument("--tracker", default=None, help="RPC tracker HOST:PORT for remote targets")
    p.add_argument("--rpc-key", default=None,
                   help="RPC key of the remote device pool (default: the target's, e.g. rasp4b)")
    p.add_argument("--cuda-arch", default=None, type=cuda_arch,
                   help="GPU architecture for --target cuda, e.g. sm_86 (default: sm_90)")
    p.add_argument("--no-baselines", action="store_true",
                   help="do not measure the target's baselines (ONNX Runtime, OpenVINO, TensorRT)")


def _add_accuracy_options(p) -> None:
    g = p.add_argument_group("accuracy (COCO OKS AP and PCK of every compiled candidate)")
    g.add_argument("--no-accuracy", action="store_true", help="measure latency only")
    g.add_argument("--coco-ann", default=None,
                   help="COCO person_keypoints JSON to evaluate on (default: the built-in "
                        "synthetic val split)")
    g.add_argument("--coco-images", default=None, help="the images folder of --coco-ann")
    g.add_argument("--max-people", type=int, default=None, help="evaluate on at most N people")
    g.add_argument("--val-images", type=int, default=100,
                   help="images in the synthetic val split (default 100)")
    g.add_argument("--flip-test", action="store_true", help="average with the flipped image")
    g.add_argument("--mean", default=None,
                   help="input normalisation mean per channel, e.g. 0.485,0.456,0.406 (default: ImageNet)")
    g.add_argument("--std", default=None, help="input normalisation std per channel (default: ImageNet)")
    g.add_argument("--bgr", action="store_true", help="the model takes BGR (default RGB)")
    g.add_argument("--pixel-range", type=int, choices=(1, 255), default=1,
                   help="scale of pixels before mean/std: 1 (0-1, default) or 255 (0-255)")


def _space(args):
    from pose_tuner.search import load_space, parse_schedule

    space = load_space(args.space)
    schedules = None
    if args.schedules is not None:
        schedules = [parse_schedule(s) for s in args.schedules.split(",") if s.strip()]
    space = space.with_dimensions(prune_ratios=_prune(args.prune), quant_modes=_quant(args.quant),
                                  schedules=schedules)
    if args.trials is not None:
        if args.trials <= 0:
            raise UserError(f"--trials must be > 0, got {args.trials} "
                            "(use --schedules default for no tuning)")
        space = space.with_trials(args.trials)
    return space


def _prune(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"bad --prune {text!r}: write ratios like 0,0.2") from None


def _quant(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(q.strip() for q in text.split(",") if q.strip())


def _objectives(text: str) -> tuple[str, ...]:
    objs = tuple(o.strip() for o in text.split(",") if o.strip())
    if set(objs) - {"ap", "latency", "size"} or "latency" not in objs:
        raise UserError(f"bad --objectives {text!r}: write ap,latency or ap,latency,size")
    return objs


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"bad {flag} {text!r}: write three numbers like 0.485,0.456,0.406") from None
    if len(vals) != 3:
        raise UserError(f"bad {flag} {text!r}: give one value per channel (3)")
    return vals


def _preprocess(args):
    from pose_tuner.accuracy.benchmark import Preprocess

    pre = Preprocess()
    return Preprocess(
        mean=_floats(args.mean, "--mean") if args.mean else pre.mean,
        std=_floats(args.std, "--std") if args.std else pre.std,
        rgb=not args.bgr, scale01=args.pixel_range == 1,
    )


def _accuracy(args):
    if args.no_accuracy:
        return None
    pre = _preprocess(args)
    if (args.coco_ann is None) != (args.coco_images is None):
        raise UserError("--coco-ann and --coco-images go together")
    if args.max_people is not None and args.max_people <= 0:
        raise UserError(f"--max-people must be > 0, got {args.max_people}")
    try:
        return _accuracy_benchmark(args, pre)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc).splitlines()[0]) from None


def _accuracy_benchmark(args, pre):
    from pose_tuner.accuracy.benchmark import coco, synthetic_val

    if args.coco_ann:
        return coco(args.coco_ann, args.coco_images, args.max_people,
                    flip_test=args.flip_test, preprocess=pre)
    if args.val_images <= 0:
        raise UserError(f"--val-images must be > 0, got {args.val_images}")
    from pose_tuner.search.config import check_log_dir

    check_log_dir(args.log_dir)
    return synthetic_val(args.log_dir, args.val_images, max_people=args.max_people,
                         flip_test=args.flip_test, preprocess=pre)


def _search_config(args):
    from pose_tuner.models.source import parse_input_size
    from pose_tuner.search.config import SearchConfig

    return SearchConfig(
        target=args.target, model=args.model, input_size=parse_input_size(args.input_size),
        output=args.output,
        space=_space(args), log_dir=args.log_dir, db_url=args.db, force=args.force,
        timeout_s=args.timeout, measure_budget_s=args.measure_budget, threads=args.threads,
        tracker=args.tracker, rpc_key=args.rpc_key, cuda_arch=args.cuda_arch,
        baselines=not args.no_baselines,
        accuracy=_accuracy(args),
        time_budget_s=args.time_budget * 60.0 if args.time_budget is not None else None,
        strategy=args.strategy, n_trials=args.n_trials, seed=args.seed,
        objectives=_objectives(args.objectives),
    )


def _check_search_args(args) -> None:
    cuda_arch_for(args.target, args.cuda_arch)
    if args.n_trials is not None and args.n_trials <= 0:
        raise UserError(f"--n-trials must be > 0, got {args.n_trials}")
    if args.time_budget is not None and args.time_budget <= 0:
        raise UserError(f"--time-budget must be > 0 minutes, got {args.time_budget}")


def cmd_search(args) -> int:
    from pose_tuner.search.loop import run_search

    cfg = _search_config(args)
    _check_search_args(args)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else \
        (lambda m: print(m, flush=True))
    out = run_search(cfg, say=say)
    if args.json:
        print(json.dumps({"candidates": [r.as_dict() for r in out.records],
                          "front": [r.as_dict() for r in out.front]}, indent=2))
        return 0
    _print_search(out)
    return 0 if any(r.ok for r in out.records) else 1


def _print_search(out) -> None:
    from pose_tuner.store.report import fmt_seconds, table

    from pose_tuner.failures import ErrorKind

    dominated = sum(r.error_kind == ErrorKind.DOMINATED.value for r in out.records)
    print(f"\nsearch done in {fmt_seconds(out.seconds)}: {out.ran} measured, {out.reused} reused"
          + (f", {dominated} skipped as unable to reach the front" if dominated else "") + "\n")
    print("candidates:")
    print(table(out.records, out.front))
    print("\nPareto front (all runs of this model on this target):")
    print(table(out.front, out.front))
