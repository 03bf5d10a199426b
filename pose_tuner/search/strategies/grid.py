"""``--strategy grid``: every runnable point of the space, cheapest first (the space's
order: TVM's default schedules, then by trial budget)."""

from __future__ import annotations

from pose_tuner.search.strategies.base import Strategy, register


class Grid(Strategy):
    name = "grid"

    def run(self, cfg, points, runner, say):
        left = []
        for point in points:
            if runner.evaluate(point) is None:
                left.append(point)
        return left


register(Grid())
