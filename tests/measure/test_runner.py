"""The shared timing harness (pose_tuner/measure/runner.py)."""

import time

from pose_tuner.measure.runner import Timing, interleaved


def test_warm_up_sizes_the_repeats_to_the_budget():
    calls = []
    n = Timing(budget_s=0.5, min_repeat=2, max_repeat=20, warmup=3).repeats(
        lambda: (calls.append(1), time.sleep(0.01)))
    assert len(calls) == 3  # the timed first run plus the rest of the warm-up
    assert n == 20  # ~50 runs fit the budget: capped at max_repeat
    calls.clear()
    n = Timing(budget_s=0.1, min_repeat=2, max_repeat=20, warmup=3).repeats(
        lambda: (calls.append(1), time.sleep(0.02)))
    assert len(calls) == 1  # a run longer than a tenth of the budget: no more warm-up
    assert 2 <= n <= 5


def test_interleaved_rounds_time_every_callable_each_round():
    order, rounds = [], []
    fns = {"slow": lambda: (order.append("slow"), time.sleep(0.004)),
           "fast": lambda: order.append("fast")}
    samples = interleaved(fns, rounds=3, timing=Timing(0.02, min_repeat=2, max_repeat=4,
                                                       warmup=2), progress=rounds.append)
    assert rounds == [1, 2, 3] and set(samples) == {"slow", "fast"}
    assert all(len(v) == 3 for v in samples.values())
    assert min(samples["slow"]) > max(samples["fast"])
    # rounds alternate: each round times "slow" then "fast"
    first_fast = order.index("fast")
    assert "slow" in order[first_fast:]
