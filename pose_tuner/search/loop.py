"""A search: every point of the space, built and measured, stored in the database.

For each point of the search space (cheapest first, or as an Optuna sampler picks them):
reuse its row if the database has it (unless ``force``), else run the candidate in a
child process with a timeout (:mod:`pose_tuner.jobs.executor`), and store what came
back, failed or not. One failed candidate never stops the search. The pieces:
:mod:`~pose_tuner.search.config` (what to do), :mod:`~pose_tuner.search.variants` (pruned
models), :mod:`~pose_tuner.search.points` (one point at a time),
:mod:`~pose_tuner.search.rows` (provenance, reuse rules).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

from pose_tuner.devices import availability
from pose_tuner.hardware import get_target
from pose_tuner.models.source import prepare_model
from pose_tuner.search.config import SearchConfig, SearchOutcome, check_log_dir
from pose_tuner.search.points import PointRunner, accuracy_pass
from pose_tuner.search.rows import tuning_dir
from pose_tuner.search.space import SearchPoint
from pose_tuner.store.db import ParetoDB
from pose_tuner.store.pareto import pareto_front

def open_search(cfg: SearchConfig, say: Callable[[str], None] = print,
                db: ParetoDB | None = None, n_points: int | None = None,
                t_start: float | None = None) -> "PointRunner":
    """Everything a search of ``cfg`` needs before its first point: the target (checked),
    the database, the model (exported and checked) and a point runner over them."""
    t_start = time.time() if t_start is None else t_start
    target = get_target(cfg.target, tracker=cfg.tracker, rpc_key=cfg.rpc_key, arch=cfg.cuda_arch)
    availability.check_available(target)  # fails fast, before any work, for an unattached device
    check_log_dir(cfg.log_dir)
    from pose_tuner.store.db import default_url

    db = db or ParetoDB(cfg.db_url or default_url(cfg.log_dir))
    n_points = len(cfg.space.points()) if n_points is None else n_points
    tvm_target = target.tvm_target()
    threads = cfg.threads or target.num_threads()
    if "num-cores" in tvm_target:
        tvm_target = {**tvm_target, "num-cores": threads}

    say(f"model {cfg.model}: exporting and checking")
    model = prepare_model(cfg.model, cfg.input_size, os.path.join(cfg.log_dir, "models"),
                          output=cfg.output)
    say(f"model {model.name}: {model.cleanup} (hash {model.cleaned_hash})")
    say(f"model {model.name} ({model.source}, {model.model_hash}), input {model.input_shape_text}, "
        f"output {model.output_shape}; target {target.name} {json.dumps(tvm_target)}; "
        f"{n_points} candidates")

    tun_dir = tuning_dir(cfg.log_dir, target.name, tvm_target)
    run_root = os.path.join(cfg.log_dir, "runs", target.name, f"{model.name}-{model.model_hash}")
    art_root = os.path.join(cfg.log_dir, "artifacts", target.name, f"{model.name}-{model.model_hash}")
    return PointRunner(cfg, db, model, target, tvm_target, threads, tun_dir, run_root,
                        art_root, say, t_start, n_points)


def runnable_points(points: list[SearchPoint], target, say: Callable[[str], None] = print
                    ) -> list[SearchPoint]:
    """The points ``target`` can run; the others are dropped, and said so once per mode."""
    keep, dropped = [], {}
    for point in points:
        reason = target.refusal(point.quant)
        if reason:
            dropped.setdefault(reason, []).append(point.key)
        else:
            keep.append(point)
    for reason, keys in dropped.items():
        say(f"search space: {len(keys)} candidate(s) dropped: {reason}")
    return keep


def run_search(cfg: SearchConfig, say: Callable[[str], None] = print,
               db: ParetoDB | None = None) -> SearchOutcome:
    t_start = time.time()
    points = cfg.space.points()
    runner = open_search(cfg, say, db, len(points), t_start)
    db, model, target = runner.db, runner.model, runner.target
    points = runnable_points(points, target, say)
    runner.n_points = len(points)
    from pose_tuner.search.strategies import get_strategy

    left = get_strategy(cfg.strategy).run(cfg, points, runner, say)
    records, ran, reused = runner.records, runner.ran, runner.reused
    if left:
        say(f"time budget spent: {len(left)} candidate(s) not started "
            f"({', '.join(p.key for p in left)}); run again to continue")
    if cfg.accuracy is not None:
        records = accuracy_pass(cfg, model, db, records, runner.threads, say, runner.run_root,
                                runner.target.device)
    if cfg.baselines:
        records += runner.baselines()
    front = pareto_front(db.records(target=target.name, model_hash=model.model_hash))
    return SearchOutcome(model, records, front, ran, reused, time.time() - t_start)
