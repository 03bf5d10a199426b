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
    """The packed depthwise block's one schedule: parallel over (batch, channel block,
    row); per tile of up to 8 output columns the 9 (KH x KW) taps unrolled over the tile
    and the 16 channels of a block vectorised, then the tile requantized in place.

    MetaSchedule's generic tiling of this block gave schedules from 4 to 100 us for the same
    264k-op depthwise layer at one trial per task (the default budget), many of them not
    parallel or not vectorised over the 16 channels of a block. A sampled width tile
    (0.3.0) still left the requantize consumer to the generic rules, which ran it as a
    second pass over the int32 sums with a 64-lane vector whose multiplier loads gathered
    lane by lane: 3-6x slower than this schedule on every depthwise layer of the default
    model. The tile is the largest divisor of the output width up to 8, not sampled: a
    trace that moves the consumer must replay with the same loops, and the evolutionary
    search's replays reject one whose tile changed ("old_outputs.size() ==
    new_outputs.size()").
    """
    b, c, y, x, k, kh, kw = sch.get_loops(block)
    width = int(sch.get(x).extent)
    xo, xi = sch.split(x, [None, max(d for d in range(1, 9) if width % d == 0)])
    sch.reorder(b, c, y, xo, kh, kw, xi, k)
    sch.parallel(sch.fuse(b, c, y))
    sch.unroll(kh)
    sch.unroll(kw)
    sch.unroll(xi)
    sch.vectorize(k)
    for consumer in sch.get_consumers(block):  # the requantize block
        sch.reverse_compute_at(consumer, xo)
        sch.vectorize(sch.get_loops(consumer)[-1])
    # the reduction's init is left to MetaSchedule's RewriteReductionBlock: decomposed
    # here, RewriteParallelVectorizeUnroll rejects every candidate, and the kernel is
    # built without a schedule
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
