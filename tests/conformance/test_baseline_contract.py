"""Every registered baseline (``pose_tuner.baselines.BASELINES``) keeps the ``Baseline``
contract of :mod:`pose_tuner.baselines.base`, against every registered target; the ones
this host's x86 target runs are prepared on the tiny model of ``tests/conftest.py`` and
their sessions checked (numerics against the reference: :mod:`tests.baselines`)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from pose_tuner.baselines import BASELINES, Baseline, BaselineUnavailable, Session, get_baseline
from pose_tuner.hardware import TARGETS, TargetUnavailable, get_target
from pose_tuner.measure.runner import Timing

from tests.conformance._helpers import finishes

NAMES = list(BASELINES)
PAIRS = [pytest.param(b, t, id=f"{b}@{t}") for b in NAMES for t in TARGETS]


@pytest.fixture(autouse=True)
def no_tracker_in_env(monkeypatch):
    """Remote targets have no tracker here: their baselines must be refused at once."""
    monkeypatch.delenv("TVM_TRACKER_HOST", raising=False)
    monkeypatch.delenv("TVM_TRACKER_PORT", raising=False)


@pytest.mark.parametrize("name", NAMES)
def test_registered_under_backend_dash_quant(name):
    bl = BASELINES[name]
    assert isinstance(bl, Baseline) and get_baseline(name) is bl
    assert dataclasses.is_dataclass(bl) and type(bl).__dataclass_params__.frozen
    assert bl.backend and bl.quant and "-" not in bl.backend
    assert bl.name == name == f"{bl.backend}-{bl.quant}"


@pytest.mark.parametrize("name", NAMES)
def test_numerics_exact_iff_fp32(name):
    bl = BASELINES[name]
    assert bl.numerics in ("exact", "approx")
    assert (bl.numerics == "exact") == (bl.quant == "fp32")


@pytest.mark.parametrize("name", NAMES)
def test_some_target_lists_it(name):
    """A baseline no target lists is refused everywhere: it would never be measured."""
    assert any(name in cls().baselines for cls in TARGETS.values())


@pytest.mark.parametrize("name, target_name", PAIRS)
def test_check_available_passes_or_says_why_and_never_hangs(name, target_name):
    bl, target = BASELINES[name], TARGETS[target_name]()
    try:
        finishes(lambda: bl.check_available(target), timeout_s=30)
    except BaselineUnavailable as exc:
        assert str(exc).strip()
        if name not in target.baselines:
            assert f"target {target.name}" in str(exc)
    else:
        assert name in target.baselines, f"{name} ran for {target_name}, which does not list it"


def _host_x86():
    try:
        return get_target("x86")
    except TargetUnavailable as exc:
        pytest.skip(f"no x86 target runs here: {exc}")


@pytest.mark.parametrize("name", NAMES)
def test_session_of_a_baseline_the_host_runs(name, tiny_onnx, tmp_path, monkeypatch):
    from pose_tuner.measure.inputs import structured_input
    from pose_tuner.measure.reference import ORTSession

    bl, target = BASELINES[name], _host_x86()
    try:
        bl.check_available(target)
    except BaselineUnavailable as exc:
        pytest.skip(f"{name} on {target.name}: {exc}")
    monkeypatch.setenv("PTUNER_LOCK_DIR", str(tmp_path / "locks"))  # not others' timing lock
    calib = np.concatenate([structured_input((1, 3, 32, 32), seed=100 + i) for i in range(4)])
    sess = bl.prepare(tiny_onnx, str(tmp_path / name), calib, threads=2)
    assert isinstance(sess, Session)
    x = structured_input((1, 3, 32, 32), seed=1)
    ref = ORTSession(tiny_onnx).run(x)
    for out in (sess.run(x), sess.accuracy_run(x)):
        out = np.asarray(out)
        assert out.shape == ref.shape and np.isfinite(out).all()
    assert sess.artifact_path and os.path.exists(sess.artifact_path)
    assert sess.size_bytes > 0
    stats = sess.latency(x, Timing(budget_s=0.05, min_repeat=3, max_repeat=5, warmup=1))
    assert 3 <= stats.runs <= 5
    assert 0 < stats.min_ms <= stats.median_ms <= stats.p90_ms
