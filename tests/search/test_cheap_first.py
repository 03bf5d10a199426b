"""The cheap-first strategy, replayed on recorded measurements (no builds): it skips the
tuned points whose bound is dominated, stores why, still finds the grid's front, and
costs less than the grid."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from pose_tuner.failures import ErrorKind
from pose_tuner.search import SearchPoint, SearchSpace
from pose_tuner.search.replay import Recorded, ReplayRunner
from pose_tuner.search.strategies import get_strategy
from pose_tuner.store.pareto import hypervolume, pareto_front
from pose_tuner.store.records import CandidateRecord

SPACE = SearchSpace(prune_ratios=(0.0, 0.25, 0.5), quant_modes=("fp32", "int8"),
                    schedules=(("default", 0), ("metaschedule", 8)))
AP = {("fp32", 0.0): 0.60, ("fp32", 0.25): 0.55, ("fp32", 0.5): 0.45,
      ("int8", 0.0): 0.58, ("int8", 0.25): 0.53, ("int8", 0.5): 0.43}
UNTUNED_MS = {("fp32", 0.0): 20.0, ("fp32", 0.25): 15.0, ("fp32", 0.5): 10.0,
              ("int8", 0.0): 5.0, ("int8", 0.25): 4.0, ("int8", 0.5): 3.0}
TUNED_RATIO = {"fp32": 0.8, "int8": 0.9}


def _record(p: SearchPoint) -> CandidateRecord:
    ms = UNTUNED_MS[p.quant, p.prune_ratio] * (TUNED_RATIO[p.quant] if p.trials else 1.0)
    return CandidateRecord(
        model_name="m", model_hash="h", target="x86", backend="tvm", prune_ratio=p.prune_ratio,
        quant=p.quant, schedule=p.schedule, trials=p.trials, status="ok",
        latency_median_ms=ms, ap=AP[p.quant, p.prune_ratio], accuracy_dataset="synthetic",
        model_size_bytes=int((4e6 if p.quant == "fp32" else 1e6) * (1 - p.prune_ratio)))


def _recorded() -> Recorded:
    points = SPACE.points()
    return Recorded(records={p: _record(p) for p in points},
                    point_s={p: 100.0 if p.trials else 5.0 for p in points},
                    variant_s={0.25: 30.0, 0.5: 30.0},
                    accuracy_s={(p.prune_ratio, p.quant): 10.0 for p in points})


def _replay(strategy: str, **cfg):
    cfg = SimpleNamespace(**{"n_trials": None, "seed": 0, "time_budget_s": None, "force": False,
                             "accuracy": object(), "objectives": ("ap", "latency"),
                             "strategy": strategy, **cfg})
    said: list[str] = []
    runner = ReplayRunner(cfg, _recorded(), say=said.append)
    left = get_strategy(strategy).run(cfg, SPACE.points(), runner, said.append)
    runner.finish()
    return runner, left, said


def _keys(records) -> set[tuple]:
    return {(r.prune_ratio, r.quant, r.trials) for r in records}


def test_skips_what_cannot_reach_the_front_and_finds_the_grids_front():
    grid, _, _ = _replay("grid")
    cheap, left, said = _replay("cheap-first")
    assert left == []
    skipped = [r for r in cheap.records if r.status == "skipped"]
    # fp32 tuned at 0.25 / 0.5 pruning: even 20 % faster than fp32 tuning ever made a
    # point, the untuned int8 point of the same or higher AP is faster
    assert _keys(skipped) == {(0.25, "fp32", 8), (0.5, "fp32", 8)}
    assert all(r.error_kind == ErrorKind.DOMINATED.value and "dominated by p0." in r.error
               for r in skipped)
    assert sum("skipped: cannot reach the front" in s for s in said) == 2
    assert _keys(pareto_front(cheap.records)) == _keys(pareto_front(grid.records))
    assert cheap.clock < grid.clock == _recorded().total_s
    ref = _recorded().ref_latency_ms()
    full = grid.hypervolume_at(grid.clock, ref)
    assert full > 0 and cheap.hypervolume_at(cheap.clock, ref) == pytest.approx(full)


def test_the_least_pruned_variant_comes_first_and_its_first_tuned_points_are_measured():
    """A pruned variant costs a fine-tuning: the unpruned model's points, tuned ones
    included, come before it. Without a tuned point of its quantization mode, nothing
    bounds a tuned point: the first of each mode is measured."""
    cheap, _, _ = _replay("cheap-first", n_trials=4)
    assert [r for r in cheap.records if r.status == "skipped"] == []
    assert cheap.ran == 4 and _keys(cheap.records) == {
        (0.0, q, t) for q in ("fp32", "int8") for t in (0, 8)}
    first = [p for _, p, _ in cheap.timeline]
    assert first.index(SearchPoint(0.0, "int8", "metaschedule", 8)) < first.index(
        SearchPoint(0.0, "fp32", "metaschedule", 8)), "the larger expected gain first"


def test_a_variant_without_ap_is_never_skipped():
    """A tuned point whose variant has no AP (its evaluation failed) cannot be compared on
    AP: it is measured, not skipped."""
    recorded = _recorded()
    records = {p: (r if (p.quant, p.prune_ratio) != ("fp32", 0.25) else
                   replace(r, ap=None, accuracy_dataset=None))
               for p, r in recorded.records.items()}
    cfg = SimpleNamespace(n_trials=None, seed=0, time_budget_s=None, force=False,
                          accuracy=object(), objectives=("ap", "latency"))
    runner = ReplayRunner(cfg, replace(recorded, records=records))
    get_strategy("cheap-first").run(cfg, SPACE.points(), runner, lambda m: None)
    assert runner.done[SearchPoint(0.25, "fp32", "metaschedule", 8)].status == "ok"
    assert runner.done[SearchPoint(0.5, "fp32", "metaschedule", 8)].status == "skipped"


def test_the_time_budget_leaves_the_rest_unstarted():
    cheap, left, _ = _replay("cheap-first", time_budget_s=150.0)
    assert cheap.ran == 4  # the unpruned model's 4 points; the 4th starts at 130 s
    assert sorted(left) == sorted(p for p in SPACE.points() if p not in cheap.done)


def test_hypervolume_of_a_staircase():
    # (AP, ms) = (0.5, 1), (0.8, 3), reference (0, 5): 0.5 * (3 - 1) + 0.8 * (5 - 3)
    assert hypervolume([(0.5, 1.0), (0.8, 3.0), (0.4, 2.0)], 5.0) == 0.5 * 2 + 0.8 * 2
    assert hypervolume([(0.5, 6.0)], 5.0) == 0.0
    assert hypervolume([], 5.0) == 0.0


def test_a_dominated_skip_is_stored_and_measured_when_asked_for_again(tmp_path):
    """``PointRunner.skip`` stores the point as skipped (kind ``dominated``, the reason
    kept); a later search that asks for the point does not take that row as its result,
    while a point the target refused stays refused."""
    from pose_tuner.hardware import get_target
    from pose_tuner.jobs.specs import JobResult
    from pose_tuner.models.source import PreparedModel
    from pose_tuner.search.config import SearchConfig
    from pose_tuner.search.points import PointRunner
    from pose_tuner.store.db import ParetoDB

    target = get_target("x86-avx2")
    db = ParetoDB(f"sqlite:///{tmp_path / 'p.sqlite'}")
    model = PreparedModel(name="m", source="onnx", onnx_path=str(tmp_path / "m.onnx"),
                          model_hash="0123456789abcdef", input_shape=(1, 3, 8, 8),
                          output_shape=(1, 17, 2, 2), param_count=1, flops=1.0,
                          file_size_bytes=1)
    said: list[str] = []

    def runner():
        return PointRunner(SearchConfig(target=target.name, log_dir=str(tmp_path)), db, model,
                           target, target.tvm_target(), 1, "", str(tmp_path), str(tmp_path),
                           said.append, 0.0, 2)

    tuned, refused = SearchPoint(0.5, "fp32", "metaschedule", 8), SearchPoint(0.0, "fp16", "default", 0)
    rec = runner().skip(tuned, "cannot reach the front: at best 3.00 ms")
    stored = db.find(**runner().point_key(tuned))
    assert stored is not None and stored.id == rec.id
    assert (stored.status, stored.error_kind) == ("skipped", "dominated")
    assert "at best 3.00 ms" in stored.error
    assert runner().evaluate(tuned, build=False) is None  # to be measured, not reused
    r = runner()
    r._store(r.point_key(refused), JobResult("skipped", "no fp16", ErrorKind.REFUSED), 0.0, "h")
    assert runner().evaluate(refused, build=False).error_kind == "refused"
