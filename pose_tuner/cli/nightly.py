"""``tuner nightly``: one night of tuning jobs from a config file."""

from __future__ import annotations


def add_nightly_parser(sub) -> None:
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
    p.set_defaults(handler=cmd_nightly)


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
