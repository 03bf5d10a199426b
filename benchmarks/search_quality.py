"""How fast each search strategy finds the Pareto front, against the exhaustive grid.

    .venv/bin/python benchmarks/search_quality.py [--quick] [--seeds 5] [-- TUNER_SEARCH_ARGS]

1. The grid: every point of a 12-point space of the default model (pruning 0 / 0.25 /
   0.5 x fp32 / int8 x TVM's default schedules / MetaSchedule), built, checked, timed
   and scored for real (AP on the built-in synthetic val split) with ``tuner search``'s
   own runner. What each step cost is kept: building and measuring each point (its
   record's ``wall_seconds``), making each pruned variant, measuring each variant's AP
   (``search_quality_costs.json`` beside the database). A second run reuses the
   database's rows, the tuning records and those costs, so it replays in seconds.
2. Each strategy (the grid itself, cheap-first, NSGA-II and TPE over ``--seeds`` seeds)
   replayed on those measurements with a clock that advances by what each step cost
   (:mod:`pose_tuner.search.replay`): nothing is built twice, and every strategy sees the
   same figures.
3. A table: the hypervolume (AP up, latency down; reference point AP 0 and 1.1x the
   slowest point) each strategy had reached at 25% and 50% of the grid's time and when
   it stopped, as a share of the grid's final hypervolume, and its time then.

``--quick`` (under 20 minutes on 2 cores from nothing): MetaSchedule at 16
trials, 2 s of timing per point, 64 val images. Its last line reads ``hypervolume ratio
R at time ratio T`` for the default strategy. The full run uses ``tuner search``'s
defaults (default.toml's space, 256x192, MetaSchedule at 64 trials). Arguments after
``--`` go to the search (e.g. ``-- --target x86-avx2``). Nothing else should run on the
machine meanwhile (the grid's costs are wall times).
"""

from __future__ import annotations

import _bootstrap  # noqa: F401  (repository on sys.path)

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

QUICK = ["--measure-budget", "2", "--val-images", "64",
         "--schedules", "default,metaschedule:16"]
FULL = ["--schedules", "default,metaschedule:256"]
SPACE = ["--target", "x86", "--prune", "0,0.25,0.5", "--quant", "fp32,int8", "--no-baselines"]
SAMPLED = ("nsga2", "tpe")


def _config(log_dir: str, quick: bool, extra: list[str]):
    from pose_tuner.cli.parser import build_parser
    from pose_tuner.cli.search import _search_config

    argv = ["search", "--log-dir", log_dir, *SPACE, *(QUICK if quick else FULL), *extra]
    return _search_config(build_parser().parse_args(argv))


def _grid(cfg, say):
    """Every point measured (or reused) with its costs: a :class:`Recorded`."""
    from pose_tuner.search.loop import open_search, runnable_points
    from pose_tuner.search import SearchPoint
    from pose_tuner.search.replay import Recorded
    from pose_tuner.search.variants import make_variant

    runner = open_search(cfg, say)
    points = runnable_points(cfg.space.points(), runner.target, say)
    runner.n_points = len(points)
    path = os.path.join(cfg.log_dir, "search_quality_costs.json")
    costs = {}
    if os.path.exists(path):
        with open(path) as f:
            costs = json.load(f)
    stored = costs.get(runner.model.model_hash, {})
    variant_s, accuracy_s, point_s, records = {}, {}, {}, {}
    for ratio in sorted({p.prune_ratio for p in points}):
        t0 = time.time()
        runner.variants[ratio] = make_variant(cfg, runner.model, ratio, say, runner.run_root)
        tag = cfg.space.variant_tag(SearchPoint(ratio, "fp32", "default", 0),
                                    runner.model.source == "zoo")
        key = f"variant {ratio:.2f} {tag}"
        variant_s[ratio] = stored.setdefault(key, time.time() - t0) if ratio else 0.0
    for point in points:
        rec = runner.evaluate(point)
        point_s[point] = rec.wall_seconds or 0.0
        t0 = time.time()
        rec = runner.with_accuracy(rec)
        key = f"accuracy {point.prune_ratio:.2f} {point.quant} {cfg.accuracy.identity}"
        if rec.ok and (point.prune_ratio, point.quant) not in accuracy_s:
            accuracy_s[point.prune_ratio, point.quant] = stored.setdefault(key, time.time() - t0)
        records[point] = rec
    costs[runner.model.model_hash] = stored
    with open(path, "w") as f:
        json.dump(costs, f, indent=1, sort_keys=True)
    return Recorded(records, point_s, variant_s, accuracy_s)


def _replay(cfg, recorded, strategy: str, seed: int):
    from pose_tuner.search.replay import ReplayRunner
    from pose_tuner.search.strategies import get_strategy

    rcfg = dataclasses.replace(cfg, strategy=strategy, seed=seed, time_budget_s=None, force=False)
    runner = ReplayRunner(rcfg, recorded)
    get_strategy(strategy).run(rcfg, list(recorded.records), runner, lambda m: None)
    runner.finish()
    return runner


def _time_to(runner, hv: float, ref: float) -> float:
    """When ``runner``'s replay first reached hypervolume ``hv`` (inf: never)."""
    for t in sorted({t for t, _, _ in runner.timeline}):
        if runner.hypervolume_at(t, ref) >= hv - 1e-12:
            return t
    return float("inf")


def _cell(values: list[float]) -> str:
    mean = statistics.mean(values)
    if mean == float("inf"):
        return f"{'inf':>9}"
    if len(values) > 1:
        return f"{mean * 100:>5.0f}%±{statistics.pstdev(values) * 100:<2.0f}"
    return f"{mean * 100:>8.0f}%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the small, fast configuration")
    ap.add_argument("--seeds", type=int, default=5, help="seeds of each sampling strategy")
    ap.add_argument("--log-dir", default=None,
                    help="where the grid's database, tuning records and costs are kept "
                         "(default logs/search-quality/quick or .../full)")
    ap.add_argument("search_args", nargs="*", help="after --: more `tuner search` options")
    args = ap.parse_args()
    from pose_tuner.search.strategies import DEFAULT_STRATEGY, STRATEGIES
    from pose_tuner.store.report import fmt_seconds

    log_dir = args.log_dir or os.path.join("logs", "search-quality",
                                           "quick" if args.quick else "full")
    cfg = _config(log_dir, args.quick, args.search_args)
    t0 = time.time()
    recorded = _grid(cfg, lambda m: print(m, flush=True))
    print(f"\ngrid measured in {fmt_seconds(time.time() - t0)} this run; its recorded cost "
          f"{fmt_seconds(recorded.total_s)} ({len(recorded.records)} points)")
    ref = recorded.ref_latency_ms()
    total = recorded.total_s
    grid = _replay(cfg, recorded, "grid", 0)
    full_hv = grid.hypervolume_at(total, ref)
    if full_hv <= 0:
        raise SystemExit("the grid's front has no hypervolume (no point with AP and latency)")
    print(f"\nreference point: AP 0, {ref:.2f} ms; the grid's hypervolume {full_hv:.4f} AP x ms\n")
    head = (f"{'strategy':<13}{'seeds':>6}{'HV @25%':>9}{'HV @50%':>9}{'HV end':>9}"
            f"{'time end':>10}{'t->95%':>9}{'measured':>10}{'skipped':>9}")
    print(head)
    print("-" * len(head))
    summary = {}
    for name in STRATEGIES:
        seeds = range(args.seeds) if name in SAMPLED else [0]
        runs = [_replay(cfg, recorded, name, s) for s in seeds]
        cols = {
            "hv25": [r.hypervolume_at(0.25 * total, ref) / full_hv for r in runs],
            "hv50": [r.hypervolume_at(0.50 * total, ref) / full_hv for r in runs],
            "hv": [r.hypervolume_at(r.clock, ref) / full_hv for r in runs],
            "time": [r.clock / total for r in runs],
            "t95": [_time_to(r, 0.95 * full_hv, ref) / total for r in runs],
            "ran": [r.ran for r in runs],
            "skipped": [sum(x.status == "skipped" for x in r.records) for r in runs],
        }
        mean = {k: statistics.mean(v) for k, v in cols.items()}
        summary[name] = mean
        print(f"{name:<13}{len(runs):>6}" + "".join(
            _cell(cols[k]) for k in ("hv25", "hv50", "hv", "time", "t95"))
            + f"{mean['ran']:>10.1f}{mean['skipped']:>9.1f}")
    print("\nHV: the hypervolume reached by then, as a share of the grid's; time end: when "
          "the strategy stopped, t->95%: when it first had 95% of the grid's hypervolume "
          "(inf: never), both as shares of the grid's time; means over seeds (± spread)")
    print(f"default strategy: {DEFAULT_STRATEGY}")
    print(f"hypervolume ratio {summary[DEFAULT_STRATEGY]['hv25']:.3f} at time ratio 0.25")
    return 0


if __name__ == "__main__":
    sys.exit(main())
