"""Every registered search strategy (``pose_tuner.search.strategies.STRATEGIES``) run through
:func:`pose_tuner.search.loop.run_search` on a synthetic problem: the point runner
(``open_search``'s ``PointRunner``: model export, builds, database) is replaced by a fake
with the same interface and documented behaviour (a point already evaluated, or stored,
is returned, not built again; ``None`` once the time budget is spent; a clock that only
builds advance), whose objectives are a fixed function of the point. Checked: a strategy
builds only runnable points of the space, none twice, within its budgets (``n_trials``,
``time_budget_s``), goes on after failed points, resumes from stored ones, and builds the
same points for the same seed."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from pose_tuner.hardware import get_target
from pose_tuner.search import SearchPoint, SearchSpace
from pose_tuner.search.strategies import DEFAULT_STRATEGY, STRATEGIES, get_strategy
from pose_tuner.store.records import CandidateRecord

#: 2 ratios x 3 modes x 2 schedules = 12 points; the target refuses int8: 8 runnable
SPACE = SearchSpace(prune_ratios=(0.0, 0.25), quant_modes=("fp32", "fp16", "int8"),
                    schedules=(("default", 0), ("metaschedule", 8)))
TARGET = dataclasses.replace(get_target("x86-avx2"), quant_modes=("fp32", "fp16"))
RUNNABLE = [p for p in SPACE.points() if p.quant != "int8"]
#: seconds of the fake clock one build takes
COST_S = 10.0


def _fails(p: SearchPoint) -> bool:
    return p.quant == "fp16"  # 4 of the 8 runnable: any 5 builds include a failed one


def _latency(p: SearchPoint) -> float:
    return (3.0 if p.quant == "fp32" else 2.0) * (1 - p.prune_ratio) + (0.5 if p.trials else 0.0)


class FakeRunner:
    """What ``run_search`` and the strategies use of ``PointRunner``."""

    def __init__(self, cfg, target, stored=()):
        self.cfg, self.target = cfg, target
        self.model = SimpleNamespace(name="fake", model_hash="0" * 16, source="zoo")
        self.db = SimpleNamespace(records=lambda **kw: list(self.done.values()))
        self.threads, self.run_root, self.tvm_target = 1, "", target.tvm_target()
        self.n_points = 0
        self.ran = self.reused = 0
        self.clock = 0.0
        self.done: dict[SearchPoint, CandidateRecord] = {}
        self.stored = {p: self._record(p) for p in stored}
        self.asked: list[SearchPoint] = []       # every evaluate() call
        self.skipped: list[SearchPoint] = []     # every skip() call
        self.builds: list[tuple[SearchPoint, float]] = []  # (point, clock at its start)

    def _record(self, p: SearchPoint) -> CandidateRecord:
        ok = not _fails(p)
        return CandidateRecord(
            model_name="fake", model_hash=self.model.model_hash, target=self.target.name,
            backend="tvm", prune_ratio=p.prune_ratio, quant=p.quant, schedule=p.schedule,
            trials=p.trials, status="ok" if ok else "failed",
            error=None if ok else "synthetic failure",
            latency_median_ms=_latency(p) if ok else None,
            latency_p90_ms=_latency(p) * 1.1 if ok else None,
            model_size_bytes=int(1e6 * (1 - p.prune_ratio)) if ok else None)

    @property
    def records(self):
        return list(self.done.values())

    def out_of_time(self) -> bool:
        b = self.cfg.time_budget_s
        return b is not None and self.clock > b

    def evaluate(self, point, build=True, force=None):
        self.asked.append(point)
        force = self.cfg.force if force is None else force
        if point in self.done and not force:
            return self.done[point]
        if point in self.stored and not force:
            self.reused += 1
            self.done[point] = self.stored[point]
            return self.done[point]
        if not build or self.out_of_time():
            return None
        assert self.target.refusal(point.quant) is None, "run_search keeps refused points out"
        self.builds.append((point, self.clock))
        self.clock += COST_S
        self.ran += 1
        self.done[point] = self._record(point)
        return self.done[point]

    def with_accuracy(self, rec):
        return rec

    def skip(self, point, reason):
        assert point not in self.done, "skipped a point already evaluated"
        self.skipped.append(point)
        self.done[point] = dataclasses.replace(self._record(point), status="skipped",
                                               error=reason, latency_median_ms=None)
        return self.done[point]

    def baselines(self, names=None, force=None):
        return []


def _search(monkeypatch, strategy, stored=(), **cfg_kw):
    from pose_tuner.search import loop

    cfg = loop.SearchConfig(target=TARGET.name, space=SPACE, strategy=strategy,
                            baselines=False, accuracy=None, log_dir="unused", **cfg_kw)
    runner = FakeRunner(cfg, TARGET, stored)
    monkeypatch.setattr(loop, "open_search", lambda *a, **kw: runner)
    said: list[str] = []
    outcome = loop.run_search(cfg, say=said.append)
    return runner, outcome, said


def _built(runner) -> list[SearchPoint]:
    return [p for p, _ in runner.builds]


def test_the_registry_is_what_the_cli_offers():
    """A registered strategy can be chosen with ``tuner search --strategy``."""
    from pose_tuner.cli.parser import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.choices and "search" in a.choices]
    (opt,) = [a for a in sub.choices["search"]._actions if a.dest == "strategy"]
    assert len(set(STRATEGIES)) == len(STRATEGIES) and "grid" in STRATEGIES
    assert set(opt.choices) == set(STRATEGIES)
    assert opt.default == DEFAULT_STRATEGY  # the CLI keeps its literals to start fast


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_builds_runnable_points_of_the_space_once_each_within_n_trials(monkeypatch, strategy):
    runner, outcome, said = _search(monkeypatch, strategy, n_trials=5, seed=0)
    built = _built(runner)
    assert set(runner.asked) <= set(RUNNABLE), "asked for a point outside the runnable space"
    assert len(built) == len(set(built)), f"built a point twice: {built}"
    if strategy == "grid":  # every point, cheapest first
        assert built == RUNNABLE
    else:                   # other strategies: up to n_trials new points
        assert 1 <= len(built) <= 5
    assert not set(built) & set(runner.skipped), "built a point it skipped"
    # failed points were measured like the others and did not stop the search
    assert any(_fails(p) for p in built)
    assert outcome.ran == len(built) and outcome.records == runner.records
    assert all(r.ok for r in outcome.front) and outcome.front
    assert not any("time budget spent" in s for s in said)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_build_starts_after_the_time_budget(monkeypatch, strategy):
    runner, _, said = _search(monkeypatch, strategy, n_trials=8, seed=0,
                              time_budget_s=2.5 * COST_S)
    starts = [t for _, t in runner.builds]
    assert starts and all(t <= 2.5 * COST_S for t in starts), starts
    if strategy == "grid":
        assert len(starts) == 3
    assert any("time budget spent" in s for s in said), said


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_resumes_from_stored_points_without_building_them(monkeypatch, strategy):
    stored = RUNNABLE[:3]
    runner, outcome, _ = _search(monkeypatch, strategy, stored=stored, n_trials=4, seed=0)
    built = _built(runner)
    assert not set(built) & set(stored)
    assert len(built) == len(set(built))
    if strategy == "grid":
        assert built == [p for p in RUNNABLE if p not in stored]
    else:
        assert 1 <= len(built) <= 4


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_same_seed_same_points(monkeypatch, strategy):
    first, _, _ = _search(monkeypatch, strategy, n_trials=4, seed=7)
    again, _, _ = _search(monkeypatch, strategy, n_trials=4, seed=7)
    assert _built(first) == _built(again)


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if get_strategy(s).fills_n_trials])
def test_builds_n_trials_new_points_when_the_space_has_them(monkeypatch, strategy):
    """``optuna_search``: "Run ``cfg.n_trials`` new points chosen by the sampler"; only the
    time budget may cut that short."""
    stored = RUNNABLE[:3]
    runner, _, _ = _search(monkeypatch, strategy, stored=stored, n_trials=5, seed=0)
    assert len(RUNNABLE) - len(stored) >= 5
    assert len(_built(runner)) == 5
