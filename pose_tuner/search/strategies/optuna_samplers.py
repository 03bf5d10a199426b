"""Multi-objective search over the joint space with Optuna (``--strategy nsga2|tpe``).

Each Optuna trial picks a pruning ratio, a quantization mode and a schedule from the
space's values; the point is built and measured by the search's runner (or taken from
the database), and its objectives go back to the sampler: maximise AP, minimise median
latency (and model size with ``--objectives ap,latency,size``). Points already in the
database are told to the study first, so a resumed search continues from what it knows
rather than starting over. Failed points are told as failed trials, and the sampler
moves on.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pose_tuner.search.space import SearchPoint
from pose_tuner.search.strategies.base import Strategy, register


def _objectives(rec, with_ap: bool, with_size: bool) -> list[float] | None:
    if not rec.ok or rec.latency_median_ms is None:
        return None
    vals = []
    if with_ap:
        if rec.ap is None:
            return None
        vals.append(float(rec.ap))
    vals.append(float(rec.latency_median_ms))
    if with_size:
        vals.append(float(rec.model_size_bytes or math.inf))
    return vals


def _choices(points: list[SearchPoint]) -> dict[str, list]:
    return {
        "prune_ratio": sorted({p.prune_ratio for p in points}),
        "quant": sorted({p.quant for p in points}),
        "schedule": sorted({p.schedule_label for p in points}),
    }


class OptunaSampler(Strategy):
    """Optuna's NSGA-II or TPE sampler over the space's categorical dimensions."""

    fills_n_trials = True

    def __init__(self, name: str):
        self.name = name

    def run(self, cfg, points, runner, say):
        return optuna_search(cfg, points, runner, say, self.name)


def optuna_search(cfg, points: list[SearchPoint], runner, say: Callable[[str], None],
                  sampler_name: str) -> list[SearchPoint]:
    """Run ``cfg.n_trials`` new points chosen by the sampler (``nsga2`` or ``tpe``);
    returns the points left unstarted for lack of time (the rest of the space is simply
    not chosen)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with_ap = cfg.accuracy is not None
    with_size = "size" in cfg.objectives
    directions = (["maximize"] if with_ap else []) + ["minimize"] + (["minimize"] if with_size else [])
    sampler = (optuna.samplers.NSGAIISampler(seed=cfg.seed, population_size=max(4, min(10, len(points) // 2)))
               if sampler_name == "nsga2" else
               optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=min(4, len(points))))
    study = optuna.create_study(directions=directions, sampler=sampler)
    choices = _choices(points)
    dists = {k: CategoricalDistribution(v) for k, v in choices.items()}
    by_params = {(p.prune_ratio, p.quant, p.schedule_label): p for p in points}

    # what the database already knows seeds the study (resume)
    known = 0
    for p in points:
        rec = None if cfg.force else runner.evaluate(p, build=False)  # stored points only
        if rec is None:
            continue
        rec = runner.with_accuracy(rec)
        vals = _objectives(rec, with_ap, with_size)
        params = {"prune_ratio": p.prune_ratio, "quant": p.quant, "schedule": p.schedule_label}
        state = optuna.trial.TrialState.COMPLETE if vals else optuna.trial.TrialState.FAIL
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                  values=vals, state=state))
        known += 1
    n_new = cfg.n_trials if cfg.n_trials is not None else max(4, len(points) // 2)
    say(f"{sampler_name} search: {len(points)} points in the space, {known} known from the "
        f"database, up to {n_new} new")
    new = asks = 0
    while new < n_new and len(runner.done) < len(points) and asks < 20 * len(points):
        if runner.out_of_time():
            break
        asks += 1
        trial = study.ask(dists)
        point = by_params.get((trial.params["prune_ratio"], trial.params["quant"],
                               trial.params["schedule"]))
        if point is None:  # a combination outside the space (cannot happen for a grid space)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        fresh = point not in runner.done
        if not fresh:
            # the sampler proposes a point it has already seen (likely in a small
            # categorical space): the next ask takes the first point not yet measured, so
            # the search still runs its n_trials new points
            todo = next((p for p in points if p not in runner.done), None)
            if todo is not None:
                study.enqueue_trial({"prune_ratio": todo.prune_ratio, "quant": todo.quant,
                                     "schedule": todo.schedule_label})
        rec = runner.evaluate(point)
        if rec is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            break
        rec = runner.with_accuracy(rec)
        new += int(fresh)
        vals = _objectives(rec, with_ap, with_size)
        if vals is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, vals)
    return [p for p in points if p not in runner.done] if runner.out_of_time() else []


register(OptunaSampler("nsga2"))
register(OptunaSampler("tpe"))
