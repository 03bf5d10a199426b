"""Structured channel pruning with torch-pruning: real channels removed, a smaller dense model.

:func:`prune_model` builds torch-pruning's dependency graph of the model (so residual
adds, depthwise convolutions, concatenations and channel splits stay consistent), ranks
each coupled channel group by its weight magnitude (``l1``: group L1 norm, the classic
"pruning filters for efficient convnets" criterion; ``group_norm``: group L2 norm, as in
DepGraph) and removes the least important channels of every group at the given ratio.
Kept channel counts are rounded to a multiple of ``round_to`` (8 by default): vector-
friendly kernels, and tuning records that carry over between nearby ratios.

The layer that produces the model output (the keypoint heatmap head) is never pruned,
so a pruned model still outputs ``(1, K, H/4, W/4)`` and is evaluated the same way.

Models whose graph torch-pruning cannot trace as a whole (a reshape/transpose channel
shuffle, as in ShuffleNet, couples every block through an index permutation it does not
model) can declare ``pruning_units()``: the submodules to prune one by one, each keeping
its own output channels (ShuffleNet's units prune their branch-internal channels).

>>> import torch
>>> from pose_tuner.models.pruning import prune_model
>>> pruned, info = prune_model(model, 0.3, torch.randn(1, 3, 256, 192))   # doctest: +SKIP
>>> info.params_after / info.params_before                                # doctest: +SKIP
0.52
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

IMPORTANCE = ("l1", "group_norm")


class PruningError(ValueError):
    """The model cannot be pruned as asked; the message says why."""


@dataclass(frozen=True)
class PruneInfo:
    ratio: float
    importance: str
    round_to: int
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    #: conv / linear layers whose output channels changed: name -> (before, after)
    changed: tuple[tuple[str, int, int], ...]


def _output_layers(model: "nn.Module", example: "torch.Tensor") -> list:
    """The conv / linear modules that produce the model output: the layer whose output
    is returned, else (a BatchNorm / activation follows it) the last one run with the
    output's channel count."""
    import torch
    from torch import nn

    ran: list[tuple[nn.Module, torch.Tensor]] = []  # keeps outputs alive: ids stay unique
    hooks = [m.register_forward_hook(lambda m, i, o: ran.append((m, o)))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    try:
        with torch.no_grad():
            out = model(example)
    finally:
        for h in hooks:
            h.remove()
    outs = out if isinstance(out, (tuple, list)) else (out,)
    found = [m for o in outs for m, t in ran if t is o]
    if found:
        return found
    k = outs[0].shape[1]
    last = [m for m, t in ran if t.ndim == outs[0].ndim and t.shape[1] == k]
    if not last:
        raise PruningError("cannot find the layer that produces the model output; "
                           "pass ignored_layers explicitly")
    return [last[-1]]


def _unit_inputs(model: "nn.Module", units: list, example: "torch.Tensor") -> list:
    """The input each unit sees when the model runs on ``example``."""
    import torch

    if units == [model]:
        return [example]
    seen: dict[int, "torch.Tensor"] = {}
    hooks = [u.register_forward_pre_hook(lambda m, args, i=i: seen.setdefault(i, args[0].detach()))
             for i, u in enumerate(units)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    missing = [i for i in range(len(units)) if i not in seen]
    if missing:
        raise PruningError(f"pruning units {missing} are not used by the model's forward")
    return [seen[i] for i in range(len(units))]


def prune_model(model: "nn.Module", ratio: float, example_input: "torch.Tensor", *,
                importance: str = "l1", round_to: int = 8,
                ignored_layers: list | None = None) -> tuple["nn.Module", PruneInfo]:
    """A pruned copy of ``model`` (eval mode) with ``ratio`` of each prunable channel
    group removed, and what changed. ``ratio`` 0 returns an unchanged copy."""
    import torch
    import torch_pruning as tp
    from torch import nn

    if not 0.0 <= ratio < 1.0:
        raise PruningError(f"pruning ratio must be in [0, 1), got {ratio}")
    if importance not in IMPORTANCE:
        raise PruningError(f"unknown pruning importance {importance!r}; known: {', '.join(IMPORTANCE)}")
    if round_to < 1:
        raise PruningError(f"round_to must be >= 1, got {round_to}")
    model = copy.deepcopy(model).eval()
    example_input = example_input.detach()
    macs0, params0 = tp.utils.count_ops_and_params(model, example_input)
    with torch.no_grad():
        ref_shape = tuple(model(example_input).shape)
    before = {n: getattr(m, "out_channels", getattr(m, "out_features", None))
              for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    if ratio == 0.0:
        return model, PruneInfo(ratio, importance, round_to, int(params0), int(params0),
                                int(macs0), int(macs0), ())
    imp = (tp.importance.GroupMagnitudeImportance(p=1) if importance == "l1"
           else tp.importance.GroupMagnitudeImportance(p=2))
    units = list(model.pruning_units()) if hasattr(model, "pruning_units") else [model]
    unit_inputs = _unit_inputs(model, units, example_input)
    for unit, x in zip(units, unit_inputs):
        ignored = list(ignored_layers or []) + _output_layers(unit, x)
        pruner = tp.pruner.BasePruner(
            unit, x, importance=imp, pruning_ratio=ratio,
            ignored_layers=ignored, round_to=round_to, global_pruning=False)
        with torch.no_grad():
            pruner.step()
    model.eval()
    with torch.no_grad():
        out = model(example_input)
    if tuple(out.shape) != ref_shape:
        raise PruningError(f"pruning changed the output shape {ref_shape} -> {tuple(out.shape)}")
    macs1, params1 = tp.utils.count_ops_and_params(model, example_input)
    changed = tuple(
        (n, before[n], getattr(m, "out_channels", getattr(m, "out_features", None)))
        for n, m in model.named_modules()
        if n in before and before[n] != getattr(m, "out_channels", getattr(m, "out_features", None)))
    if not changed:
        raise PruningError(f"pruning at ratio {ratio} removed no channel (the model has no "
                           "prunable channel groups, or they are all smaller than round_to)")
    return model, PruneInfo(ratio, importance, round_to, int(params0), int(params1), int(macs0),
                            int(macs1), changed)
