"""MetaSchedule's custom schedule rules for the packed int8 depthwise and max-pool blocks.

The blocks made by :func:`pose_tuner.compile.int8.te.te_depthwise_nchwc_int8_requant` and
:func:`pose_tuner.compile.int8.te.te_max_pool_packed` are annotated with
:data:`DEPTHWISE_RULE` and :data:`POOL_RULE`; ``ApplyCustomRule`` then calls
:func:`schedule_depthwise` / :func:`schedule_max_pool` (registered by
:func:`register_schedule_rules`) instead of MetaSchedule's generic rules.
"""

from __future__ import annotations

#: MetaSchedule's custom rule for the depthwise block (``s_tir.meta_schedule.cpu.<name>``)
DEPTHWISE_RULE = "pose_tuner_depthwise_nchwc_int8"
#: ... and for the packed max-pool block
POOL_RULE = "pose_tuner_max_pool_nchwc_int8"


def register_schedule_rules() -> None:
    """Register :func:`schedule_depthwise` and :func:`schedule_max_pool` as MetaSchedule's
    custom rules for their blocks (``ApplyCustomRule`` looks them up by name for LLVM
    targets). Idempotent."""
    import tvm

    for rule, fn in ((DEPTHWISE_RULE, schedule_depthwise), (POOL_RULE, schedule_max_pool)):
        name = f"s_tir.meta_schedule.cpu.{rule}"
        if tvm.get_global_func(name, allow_missing=True) is None:
            tvm.register_global_func(name, fn)


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


def schedule_max_pool(sch, block):
    """The packed max-pool block's one schedule: parallel over (batch, channel block, row),
    the window's taps unrolled, the 16 channels of a block vectorised.

    MetaSchedule's generic rules sampled schedules from 27 to 288 us for the default
    model's stem max-pool (16 trials, some with an rfactor of the 3x3 window), and a task
    gets one or two trials at the default budget. This one has no decision to sample.
    """
    b, c, y, x, k, rh, rw = sch.get_loops(block)
    sch.reorder(b, c, y, x, rh, rw, k)
    sch.parallel(sch.fuse(b, c, y))
    sch.unroll(rh)
    sch.unroll(rw)
    sch.vectorize(k)
    return [sch]
