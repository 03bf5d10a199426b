"""Commands that read the database of finished searches: pareto, best, compare, export."""

from __future__ import annotations

import json
import os
import sys

from pose_tuner.cli.common import DEFAULT_LOG_DIR, UserError, add_common


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


def add_pareto_parser(sub) -> None:
    p = sub.add_parser("pareto", help="list the Pareto front of a target")
    add_common(p)
    p.add_argument("--model", default=None, help="only this model name")
    p.add_argument("--all", action="store_true", help="list every candidate, marking the front")
    p.add_argument("--no-baselines", action="store_true", help="TVM candidates only")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--plot", default=None, metavar="FILE",
                   help="also write AP vs latency with the front highlighted (PNG)")
    p.set_defaults(handler=cmd_pareto)


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
        _plot(args, records, front)
    return 0


def _plot(args, records, front) -> None:
    from pose_tuner.store.plot import plot_front

    try:
        path = plot_front(records, front, args.plot,
                          title=f"{', '.join(sorted({r.model_name for r in records}))} "
                                f"on {args.target}")
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot plot: {exc}") from None
    print(f"plot written to {path}", file=sys.stderr if args.json else sys.stdout)


def add_best_parser(sub) -> None:
    p = sub.add_parser("best", help="the best configuration under constraints, as JSON")
    add_common(p)
    p.add_argument("--model", default=None, help="only this model name")
    p.add_argument("--max-latency-ms", type=float, default=None)
    p.add_argument("--min-ap", type=float, default=None)
    p.add_argument("--max-size-mb", type=float, default=None)
    p.add_argument("--max-memory-mb", type=float, default=None,
                   help="peak resident memory of running the artifact, where it runs")
    p.add_argument("--include-baselines", action="store_true",
                   help="also consider baselines (default: TVM candidates only)")
    p.set_defaults(handler=cmd_best)


def cmd_best(args) -> int:
    from pose_tuner.store.pareto import best_under

    db = _open_db(args)
    records = db.records(target=args.target, model_name=args.model,
                         backends=None if args.include_baselines else ["tvm"])
    from pose_tuner.bundle import deployment_info

    rec = best_under(records, args.max_latency_ms, args.min_ap, args.max_size_mb,
                     args.max_memory_mb)
    print(json.dumps({**rec.as_dict(), **deployment_info(rec)}, indent=2))
    return 0


def add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="the best TVM point against each baseline")
    add_common(p)
    p.add_argument("--model", default=None, help="only this model name")
    p.add_argument("--ap-tolerance", type=float, default=0.01,
                   help="matched accuracy: AP within this of the baseline's (default 0.01)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_compare)


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


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="write a deployable bundle of one candidate")
    p.add_argument("id", type=int, help="candidate id (from `tuner pareto` or `tuner best`)")
    p.add_argument("--out", required=True, help="folder to write the bundle to")
    p.add_argument("--log-dir", default=DEFAULT_LOG_DIR)
    p.add_argument("--db", default=None)
    p.set_defaults(handler=cmd_export)


def cmd_export(args) -> int:
    from pose_tuner.bundle import ExportError, export_bundle

    try:
        out = export_bundle(_open_db(args), args.id, args.out)
    except ExportError as exc:
        raise UserError(str(exc)) from None
    print(json.dumps(out, indent=2))
    return 0
