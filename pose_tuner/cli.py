"""The `tuner` command line. Commands parse arguments and call library functions."""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_LOG_DIR = os.environ.get("POSE_TUNER_LOG_DIR", "logs")


def _common(p: argparse.ArgumentParser, target_required: bool = True) -> None:
    p.add_argument("--target", required=target_required, help="hardware target (see `tuner targets`)")
    p.add_argument("--log-dir", default=DEFAULT_LOG_DIR,
                   help="where the database, tuning records, artifacts and logs go (default: logs)")
    p.add_argument("--db", default=None,
                   help="SQLAlchemy database URL (default: sqlite under --log-dir)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tuner", description="Auto-tune pose-estimation models with TVM for one target.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("search", help="build and measure every point of the search space")
    _common(p)
    p.add_argument("--model", default="shufflenetv2_fpn",
                   help="zoo model name, an .onnx file, or package.module:factory (default: "
                        "shufflenetv2_fpn, trained on the built-in data)")
    p.add_argument("--input-size", default=None, help="HxW for zoo/PyTorch models (default 256x192)")
    p.add_argument("--output", default=None,
                   help="the ONNX output that is the pose head, or X,Y for SimCC vectors, where "
                        "several outputs could be (default: found by shape)")
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
    p.add_argument("--strategy", choices=("grid", "nsga2", "tpe"), default="grid",
                   help="grid: every point, cheapest first (default); nsga2 / tpe: Optuna "
                        "multi-objective sampling of --n-trials points (AP up, latency down)")
    p.add_argument("--n-trials", type=int, default=None,
                   help="new points an Optuna strategy measures (default: half the grid, >= 4)")
    p.add_argument("--objectives", default="ap,latency",
                   help="Optuna objectives: ap,latency or ap,latency,size (default ap,latency)")
    p.add_argument("--seed", type=int, default=0, help="Optuna sampler seed (default 0)")
    p.add_argument("--time-budget", type=float, default=None,
                   help="minutes after which no new candidate starts (finished points are kept; "
                        "run again to continue)")
    p.add_argument("--force", action="store_true", help="re-measure points already in the database")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds one candidate may take before it is killed (default: 3600)")
    p.add_argument("--measure-budget", type=float, default=10.0,
                   help="seconds of timed runs per latency measurement (default: 10)")
    p.add_argument("--threads", type=int, default=None, help="runtime threads (default: all cores)")
    p.add_argument("--tracker", default=None, help="RPC tracker HOST:PORT for remote targets")
    p.add_argument("--rpc-key", default=None,
                   help="RPC key of the remote device pool (default: the target's, e.g. rasp4b)")
    p.add_argument("--cuda-arch", default=None, type=_cuda_arch,
                   help="GPU architecture for --target cuda, e.g. sm_86 (default: sm_90)")
    p.add_argument("--no-baselines", action="store_true",
                   help="do not measure the target's baselines (ONNX Runtime, OpenVINO, TensorRT)")
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
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("pareto", help="list the Pareto front of a target")
    _common(p)
    p.add_argument("--model", default=None, help="only this model name")
    p.add_argument("--all", action="store_true", help="list every candidate, marking the front")
    p.add_argument("--no-baselines", action="store_true", help="TVM candidates only")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="also write AP vs latency with the front highlighted (PNG)")

    p = sub.add_parser("best", help="the best configuration under constraints, as JSON")
    _common(p)
    p.add_argument("--model", default=None, help="only this model name")
    p.add_argument("--max-latency-ms", type=float, default=None)
    p.add_argument("--min-ap", type=float, default=None)
    p.add_argument("--max-size-mb", type=float, default=None)
    p.add_argument("--include-baselines", action="store_true",
                   help="also consider baselines (default: TVM candidates only)")

    p = sub.add_parser("compare", help="the best TVM point against each baseline")
    _common(p)
    p.add_argument("--model", default=None, help="only this model name")
    p.add_argument("--ap-tolerance", type=float, default=0.01,
                   help="matched accuracy: AP within this of the baseline's (default 0.01)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("export", help="write a deployable bundle of one candidate")
    p.add_argument("id", type=int, help="candidate id (from `tuner pareto` or `tuner best`)")
    p.add_argument("--out", required=True, help="folder to write the bundle to")
    p.add_argument("--log-dir", default=DEFAULT_LOG_DIR)
    p.add_argument("--db", default=None)

    p = sub.add_parser(
        "nightly", help="run one night of tuning jobs from a config file (resumable, shared "
                        "by workers), report changes; exit 3 on a regression")
    p.add_argument("--config", required=True, help="nightly TOML (see docs/nightly.example.toml)")
    p.add_argument("--night", default=None,
                   help="label of the night (default: today's UTC date); workers and resumed "
                        "runs with the same label share its work")
    p.add_argument("--worker", default=None, help="this worker's name (default HOST:PID)")
    p.add_argument("--db", default=None, help="database URL overriding the config's")
    p.add_argument("--log-dir", default=None,
                   help="this worker's folder for tuning records, artifacts and logs "
                        "(overrides the config's log_dir)")
    p.add_argument("--report", action="store_true",
                   help="only write the report of a finished night again (e.g. after "
                        "changing the regression thresholds)")

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

    p = sub.add_parser("device", help="devices of remote targets: an emulated Raspberry Pi")
    dsub = p.add_subparsers(dest="device_command", required=True)
    e = dsub.add_parser("emulate", help="start aarch64 TVM RPC servers under qemu (an emulated "
                                        "Pi) registered with a tracker; runs until Ctrl-C")
    e.add_argument("target", choices=("rasp4b",), help="the target to emulate")
    e.add_argument("--tracker", default=None,
                   help="register with this tracker HOST:PORT (default: start one on this machine)")
    e.add_argument("--key", default="rasp4b", help="RPC key (default: rasp4b)")
    e.add_argument("--servers", type=int, default=1, help="emulated devices (a pool; default 1)")
    e.add_argument("--prepare-only", action="store_true",
                   help="only build the cached arm64 root (minutes, once per TVM version)")
    e.add_argument("--plain-tvm-server", action="store_true",
                   help="run TVM's own RPC server, as a Pi set up with TVM's steps only (no "
                        "ONNX Runtime baselines on the device)")
    s = dsub.add_parser("server-script",
                        help="pose-tuner's RPC server for a device (TVM's server plus ONNX Runtime "
                             "baselines): copy it to the Pi and run it there")
    s.add_argument("--out", default=None, help="write it to this file (default: print it)")

    p = sub.add_parser("targets", help="list the known targets with their TVM target JSON")
    p.add_argument("--json", action="store_true")

    sub.add_parser("models", help="list the built-in model zoo")
    return parser


class UserError(Exception):
    pass


def _space(args):
    from pose_tuner.search import load_space, parse_schedule

    space = load_space(args.space)
    schedules = None
    if args.schedules is not None:
        schedules = [parse_schedule(s) for s in args.schedules.split(",") if s.strip()]
    prune = quant = None
    if args.prune is not None:
        try:
            prune = tuple(float(v) for v in args.prune.split(","))
        except ValueError:
            raise UserError(f"bad --prune {args.prune!r}: write ratios like 0,0.2") from None
    if args.quant is not None:
        quant = tuple(q.strip() for q in args.quant.split(",") if q.strip())
    space = space.with_dimensions(prune_ratios=prune, quant_modes=quant, schedules=schedules)
    if args.trials is not None:
        if args.trials <= 0:
            raise UserError(f"--trials must be > 0, got {args.trials} "
                            "(use --schedules default for no tuning)")
        space = space.with_trials(args.trials)
    return space


def _cuda_arch(text: str) -> str:
    from pose_tuner.hardware.cuda import valid_arch

    if not valid_arch(text):
        raise argparse.ArgumentTypeError(f"expected an architecture like sm_86 or sm_90, got {text!r}")
    return text


def _cuda_arch_for(target: str, arch: str | None) -> None:
    """``--cuda-arch`` only goes with ``--target cuda``."""
    if arch and target != "cuda":
        raise UserError("--cuda-arch applies to --target cuda only")


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


def _accuracy(args):
    if args.no_accuracy:
        return None
    from pose_tuner.accuracy.benchmark import Preprocess, coco, synthetic_val

    pre = Preprocess()
    pre = Preprocess(
        mean=_floats(args.mean, "--mean") if args.mean else pre.mean,
        std=_floats(args.std, "--std") if args.std else pre.std,
        rgb=not args.bgr, scale01=args.pixel_range == 1,
    )
    if (args.coco_ann is None) != (args.coco_images is None):
        raise UserError("--coco-ann and --coco-images go together")
    if args.max_people is not None and args.max_people <= 0:
        raise UserError(f"--max-people must be > 0, got {args.max_people}")
    try:
        if args.coco_ann:
            return coco(args.coco_ann, args.coco_images, args.max_people,
                        flip_test=args.flip_test, preprocess=pre)
        if args.val_images <= 0:
            raise UserError(f"--val-images must be > 0, got {args.val_images}")
        from pose_tuner.search.loop import check_log_dir

        check_log_dir(args.log_dir)
        return synthetic_val(args.log_dir, args.val_images, max_people=args.max_people,
                             flip_test=args.flip_test, preprocess=pre)
    except (ValueError, OSError) as exc:
        raise UserError(str(exc).splitlines()[0]) from None


def cmd_search(args) -> int:
    from pose_tuner.models.source import parse_input_size
    from pose_tuner.store.report import fmt_seconds, table
    from pose_tuner.search.loop import SearchConfig, run_search

    cfg = SearchConfig(
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
    _cuda_arch_for(args.target, args.cuda_arch)
    if args.n_trials is not None and args.n_trials <= 0:
        raise UserError(f"--n-trials must be > 0, got {args.n_trials}")
    if args.time_budget is not None and args.time_budget <= 0:
        raise UserError(f"--time-budget must be > 0 minutes, got {args.time_budget}")
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else \
        (lambda m: print(m, flush=True))
    out = run_search(cfg, say=say)
    if args.json:
        print(json.dumps({"candidates": [r.as_dict() for r in out.records],
                          "front": [r.as_dict() for r in out.front]}, indent=2))
        return 0
    print(f"\nsearch done in {fmt_seconds(out.seconds)}: {out.ran} measured, {out.reused} reused\n")
    print("candidates:")
    print(table(out.records, out.front))
    print("\nPareto front (all runs of this model on this target):")
    print(table(out.front, out.front))
    return 0 if any(r.ok for r in out.records) else 1


def _open_db(args):
    """The existing database of ``--db``/``--log-dir`` (a missing SQLite file is an error,
    not a new empty database); checks ``--target`` where the command has one."""
    from pose_tuner.store.db import ParetoDB, default_url

    target = getattr(args, "target", None)
    if target is not None:
        from pose_tuner.hardware import get_target

        # a clear error for unknown names; the x86 alias reads the rows of the target it
        # resolves to here
        args.target = target = get_target(target).name
    url = args.db or default_url(args.log_dir)
    if url.startswith("sqlite:///") and not os.path.exists(url[len("sqlite:///"):]):
        hint = f"run `tuner search --target {target}` first or " if target else ""
        raise UserError(f"no database at {url[len('sqlite:///'):]}; {hint}pass --db/--log-dir")
    return ParetoDB(url)


def cmd_pareto(args) -> int:
    from pose_tuner.store.pareto import pareto_front
    from pose_tuner.store.report import table

    db = _open_db(args)
    records = db.records(target=args.target, model_name=args.model,
                         backends=["tvm"] if args.no_baselines else None)
    if not records:
        raise UserError(f"no candidates for target {args.target} in the database; run `tuner search`")
    front = []
    for h in dict.fromkeys(r.model_hash for r in records):
        front += pareto_front([r for r in records if r.model_hash == h])
    if args.json:
        print(json.dumps([r.as_dict() for r in (records if args.all else front)], indent=2))
    else:
        print(table(records if args.all else front, front))
    if args.plot:
        from pose_tuner.store.plot import plot_front

        try:
            path = plot_front(records, front, args.plot,
                              title=f"{', '.join(sorted({r.model_name for r in records}))} "
                                    f"on {args.target}")
        except (ValueError, OSError) as exc:
            raise UserError(f"cannot plot: {exc}") from None
        print(f"plot written to {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_best(args) -> int:
    from pose_tuner.store.pareto import best_under

    db = _open_db(args)
    records = db.records(target=args.target, model_name=args.model,
                         backends=None if args.include_baselines else ["tvm"])
    from pose_tuner.bundle import deployment_info

    rec = best_under(records, args.max_latency_ms, args.min_ap, args.max_size_mb)
    print(json.dumps({**rec.as_dict(), **deployment_info(rec)}, indent=2))
    return 0


def cmd_compare(args) -> int:
    from pose_tuner.store.compare import compare_table, compare_to_baselines

    db = _open_db(args)
    rows = compare_to_baselines(db.records(target=args.target, model_name=args.model),
                                args.ap_tolerance)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(compare_table(rows))
    return 0


def cmd_export(args) -> int:
    from pose_tuner.bundle import ExportError, export_bundle

    try:
        out = export_bundle(_open_db(args), args.id, args.out)
    except ExportError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(out, indent=2))
    return 0


def cmd_nightly(args) -> int:
    from pose_tuner.nightly import load_config
    from pose_tuner.nightly.run import rewrite_report, run_nightly

    cfg = load_config(args.config)
    if args.log_dir:
        from dataclasses import replace

        cfg = replace(cfg, log_dir=args.log_dir)
    if args.report:
        from pose_tuner.nightly.run import tonight

        return rewrite_report(cfg, args.night or tonight(), db_url=args.db,
                              say=lambda m: print(m, flush=True)).exit_code
    out = run_nightly(cfg, night=args.night, worker=args.worker, db_url=args.db,
                      say=lambda m: print(m, flush=True))
    return out.exit_code


def cmd_build(args) -> int:
    from pose_tuner.hardware import get_target

    from pose_tuner.jobs.executor import run_in_child
    from pose_tuner.models.source import parse_input_size, prepare_model

    _cuda_arch_for(args.target, args.cuda_arch)
    target = get_target(args.target, arch=args.cuda_arch)
    if not args.out.endswith(".so"):
        raise UserError(f"--out must name a .so file, got {args.out!r}")
    model = prepare_model(args.model, parse_input_size(args.input_size),
                          os.path.join(args.log_dir, "models"), output=args.output)
    result = run_in_child(
        {"kind": "build", "onnx_path": model.onnx_path, "tvm_target": target.tvm_target(),
         "quant": args.quant, "artifact_path": args.out},
        args.timeout, os.path.join(args.log_dir, "runs", "build", f"{target.name}.log"),
        on_progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps({"target": target.name, "tvm_target": target.tvm_target(),
                      "model": model.name, "model_hash": model.model_hash, **result}, indent=2))
    return 0 if result.get("status") == "ok" else 1


def cmd_device(args) -> int:
    from pose_tuner.devices.emulator import EmulatedPi, EmulatorError, prepare_root

    say = lambda m: print(m, flush=True)  # noqa: E731
    if args.device_command == "server-script":
        from pose_tuner.devices import device_server

        with open(device_server.__file__, encoding="utf-8") as f:
            text = f.read()
        if args.out is None:
            sys.stdout.write(text)
        else:
            with open(args.out, "w", encoding="utf-8") as f:
                f.write(text)
            print(f"wrote {args.out}; on the device: python3 {os.path.basename(args.out)} "
                  "--tracker HOST:9190 --key rasp4b", file=sys.stderr)
        return 0
    try:
        if args.prepare_only:
            print(prepare_root(say))
            return 0
        if args.servers <= 0:
            raise UserError(f"--servers must be > 0, got {args.servers}")
        with EmulatedPi(args.key, args.servers, args.tracker, say,
                        plain=args.plain_tvm_server) as pi:
            print(f"use it with: tuner search --target {args.target} --tracker {pi.tracker}"
                  + (f" --rpc-key {args.key}" if args.key != "rasp4b" else "")
                  + "   (Ctrl-C here stops the emulated devices)", flush=True)
            while all(p.poll() is None for p in pi.procs):
                import time

                time.sleep(1.0)
            print("tuner: an emulated device stopped; see its log", file=sys.stderr)
            return 1
    except EmulatorError as exc:
        raise UserError(str(exc)) from None


def cmd_targets(args) -> int:
    from pose_tuner.hardware import HOST_ALIAS, TargetUnavailable, get_target, list_targets
    from pose_tuner.hardware.x86 import explain_host

    items = [t.describe() for t in list_targets()]
    try:
        resolved = get_target(HOST_ALIAS).name
    except TargetUnavailable:
        resolved = None
    if args.json:
        print(json.dumps({"aliases": {HOST_ALIAS: {"resolves_to": resolved,
                                                  "why": explain_host()}},
                          "targets": items}, indent=2))
    else:
        print(explain_host())
        for t in items:
            print(f"{t['name']:<11} {t['description']}\n{'':<11} {json.dumps(t['tvm_target'])}")
    return 0


def cmd_models(_args) -> int:
    from pose_tuner.models import zoo

    for name in zoo.list_models():
        print(f"{name:<20} {zoo.get_spec(name).description}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pose_tuner.search import SearchSpaceError
    from pose_tuner.hardware import TargetUnavailable, UnknownTarget

    from pose_tuner.store.db import DatabaseError
    from pose_tuner.models.source import ModelError
    from pose_tuner.nightly import NightlyConfigError, NightlyError
    from pose_tuner.store.pareto import NoCandidate
    from pose_tuner.search.loop import SearchError

    import signal

    def _terminate(signum, frame):  # SIGTERM (a job scheduler) stops like Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    handlers = {"search": cmd_search, "pareto": cmd_pareto, "best": cmd_best,
                "targets": cmd_targets, "models": cmd_models, "compare": cmd_compare, "export": cmd_export,
                "nightly": cmd_nightly, "device": cmd_device, "build": cmd_build}
    try:
        return handlers[args.command](args)
    except (UserError, SearchSpaceError, TargetUnavailable, UnknownTarget, ModelError,
            DatabaseError, NoCandidate, SearchError, NightlyConfigError, NightlyError) as exc:
        print(f"tuner: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tuner: interrupted" + ("; finished candidates are in the database"
                                      if args.command in ("search", "nightly") else ""),
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
