"""The strategy concept: the base class and the registry (see :mod:`pose_tuner.search.strategies`)."""

from __future__ import annotations

from collections.abc import Callable

from pose_tuner.search.space import SearchPoint

#: what ``tuner search --strategy`` offers when none is given
DEFAULT_STRATEGY = "cheap-first"


class Strategy:
    """One way to choose which points of a space to build and measure.

    Contract of :meth:`run`: build only points of ``points`` (the runnable ones), none
    twice; start nothing once ``runner.out_of_time()``; go on after a failed point; use
    what the database already has (``evaluate`` returns stored rows without building);
    choose the same points for the same ``cfg.seed`` and the same measurements; and
    return the points left unstarted because the time budget ran out ([] when it did not
    run out). A point left out on purpose is either never asked for (a sampler's choice)
    or stored with ``runner.skip`` and said (a pruning strategy's)."""

    #: the name ``--strategy`` takes
    name: str = ""
    #: whether ``cfg.n_trials`` is the number of new points it builds (when the space has
    #: them), rather than a cap
    fills_n_trials: bool = False

    def run(self, cfg, points: list[SearchPoint], runner,
            say: Callable[[str], None]) -> list[SearchPoint]:
        raise NotImplementedError


_REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    if not strategy.name or strategy.name in _REGISTRY:
        raise ValueError(f"strategy name {strategy.name!r} is empty or taken")
    _REGISTRY[strategy.name] = strategy
    return strategy
