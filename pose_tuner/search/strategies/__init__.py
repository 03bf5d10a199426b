"""How a search walks its space: one :class:`Strategy` per file, registered by name.

* ``grid`` (:mod:`.grid`): every point, cheapest first;
* ``nsga2`` / ``tpe`` (:mod:`.optuna_samplers`): Optuna's multi-objective samplers;
* ``cheap-first`` (:mod:`.cheap_first`): the untuned builds first, then only the tuned
  points that can still reach the front (the default).

A strategy drives a point runner (:class:`pose_tuner.search.points.PointRunner`, or the
recorded :class:`pose_tuner.search.replay.ReplayRunner` of the search-quality benchmark)
through this interface only:

* ``runner.evaluate(point, build=True)`` - the point's record (from the database, or
  built and measured now); ``None`` when the time budget is spent (nothing started) or,
  with ``build=False``, when nothing is stored;
* ``runner.with_accuracy(record)`` - the record with its AP (measured once per variant);
* ``runner.skip(point, reason)`` - store the point as skipped because it cannot reach the
  front (``ErrorKind.DOMINATED``, measured again by a later search that asks for it);
* ``runner.out_of_time()``, ``runner.done`` (point -> record), ``runner.records``.
"""

from __future__ import annotations

from pose_tuner.search.strategies import cheap_first, grid, optuna_samplers  # noqa: F401  (register)
from pose_tuner.search.strategies.base import _REGISTRY, DEFAULT_STRATEGY, Strategy

#: every registered strategy's name
STRATEGIES = tuple(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(_REGISTRY)}") from None


__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "Strategy", "get_strategy"]
