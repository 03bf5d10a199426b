"""MetaSchedule's custom schedule rule for the packed int8 depthwise block.

The block made by :func:`pose_tuner.compile.int8.te.te_depthwise_nchwc_int8_requant` is
annotated with :data:`DEPTHWISE_RULE`; ``ApplyCustomRule`` then calls
:func:`schedule_depthwise` (registered by :func:`register_schedule_rules`) instead of
MetaSchedule's generic tiling.
"""

from __future__ import annotations

#: MetaSchedule's custom rule for the depthwise block (``s_tir.meta_schedule.cpu.<name>``)
DEPTHWISE_RULE = "pose_tuner_depthwise_nchwc_int8"


def register_schedule_rules() -> None:
    """Register :func:`schedule_depthwise` as MetaSchedule's custom rule for the depthwise
    block (``ApplyCustomRule`` looks it up by name for LLVM targets). Idempotent."""
    import tvm

    name = f"s_tir.meta_schedule.cpu.{DEPTHWISE_RULE}"
    if tvm.get_global_func(name, allow_missing=True) is None:
        tvm.register_global_func(name, schedule_depthwise)


def schedule_depthwise(sch, block):
    """The design space of the packed depthwise block: one sketch, its width tile sampled.

    MetaSchedule's generic tiling of this block gave schedules from 4 to 100 us for the same
    264k-op depthwise layer at one trial per task (the default budget), many of them not
    parallel or not vectorised over the 16 channels of a block. Here every sample is
    parallel over (batch, channel block, row), keeps the 9 (KH x KW) taps unrolled outside
    a width tile and vectorises the 16 channels; MetaSchedule only chooses the width tile.
    """
    b, c, y, x, k, kh, kw = sch.get_loops(block)
    xo, xi = sch.split(x, sch.sample_perfect_tile(x, n=2, max_innermost_factor=8))
    sch.reorder(b, c, y, xo, kh, kw, xi, k)
    outer = sch.fuse(b, c, y)
    sch.parallel(outer)
    sch.unroll(kh)
    sch.unroll(kw)
    sch.unroll(xi)
    sch.vectorize(k)
    # the requantize consumer and the reduction's init are left to MetaSchedule's own rules
    # and postprocessors: a rule that moves its consumers records a variable number of
    # loops in the trace, which the evolutionary search's replays then reject
    # ("old_outputs.size() == new_outputs.size()")
    return [sch]
