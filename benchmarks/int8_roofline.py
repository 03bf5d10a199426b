"""The int8 peak of an x86 target's kernel on this CPU, and how near each tuned task gets.

    .venv/bin/python benchmarks/int8_roofline.py [--target x86] [--log-dir logs] [--top 15]

First the peak: the target's int8 kernel (its tensor intrinsic, the 16 x 4 u8 x s8 step of
the packed convolutions) tensorized into a register tile of ``--tile`` accumulators,
``--steps`` steps per call (the tile by default fills the kernel's register file:
:data:`TILES`), one tile per thread on every thread (``TVM_NUM_THREADS``):
weights and activations sit in L1, so nothing but the instructions bounds it. Printed as
GOPS (two ops per multiply-add) for all threads and per thread, from the fastest of its
repeats (on a shared machine the peak is what the cores do when nothing else runs; the
tasks' times are the tuner's best, measured earlier: compare the fractions, not the
digits).

Then, with ``--log-dir`` (a ``tuner search`` log dir), every task of the target's tuning
database by its best measured time: GOPS (``estimate_tir_flops`` over the best run time)
and that as a fraction of the peak. A task far below it is where a better schedule could
help; one near it can only get faster by doing less work. A target this host cannot run
is refused (its kernel cannot be timed here).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

import _bootstrap  # noqa: E402,F401  (the repository on sys.path; TVM's threads)

#: accumulators per thread by kernel: an accumulator of 16 int32 is one zmm (32 of them)
#: or two ymm (16 of them, and the 256-bit kernels need 2 for the weights, 1 for the
#: broadcast activations and 2 for their int16/int32 partial sums)
TILES = {"vnni": 12, "avx512": 12, "avxvnni": 4, "avx2": 4}


def peak_kernel(intrin: str, threads: int, tile: int, steps: int, reps: int = 1):
    """A PrimFunc running ``steps`` x ``reps`` tensorized steps of ``intrin`` into ``tile``
    register accumulators of 16 int32 on each of ``threads`` threads (activations differ
    per accumulator and step, weights per step, as in a convolution's register tile; the
    ``steps`` operands are read ``reps`` times, so that they stay in L1 while a call runs
    long enough for the thread pool's start to vanish)."""
    import tvm
    from tvm import te

    a = te.placeholder((threads, steps, tile, 4), "uint8", name="A")
    b = te.placeholder((steps, 16, 4), "int8", name="B")
    r = te.reduce_axis((0, steps * reps), name="r")
    k = te.reduce_axis((0, 4), name="k")
    c = te.compute(
        (threads, tile, 16),
        lambda t, j, i: te.sum(a[t, r % steps, j, k].astype("int32")
                               * b[r % steps, i, k].astype("int32"), axis=[r, k]),
        name="C")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, b, c]))
    block = sch.get_sblock("C")
    t, j, i, r_, k_ = sch.get_loops(block)
    sch.reorder(t, r_, j, i, k_)
    acc = sch.cache_write(block, 0, "global")
    sch.reverse_compute_at(acc, t)
    inner = sch.blockize(i)
    sch.parallel(t)
    sch.unroll(j)
    sch.decompose_reduction(inner, r_)
    sch.tensorize(inner, intrin)
    return sch.mod


def measure_peak(target, kernel_name: str, tile: int, steps: int) -> tuple[float, int]:
    """(GOPS over all threads, threads) of the kernel's register-tile loop on this CPU."""
    import numpy as np
    import tvm

    from pose_tuner.compile.kernels import get_kernel

    threads = target.num_threads()
    intrin = get_kernel(kernel_name).register()
    reps = 256
    lib = tvm.compile(peak_kernel(intrin, threads, tile, steps, reps),
                      target=tvm.target.Target(target.tvm_target())).jit()
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.integers(0, 255, (threads, steps, tile, 4)).astype("uint8"),
                               dev),
            tvm.runtime.tensor(rng.integers(-64, 64, (steps, 16, 4)).astype("int8"), dev),
            tvm.runtime.tensor(np.zeros((threads, tile, 16), "int32"), dev)]
    lib["main"](*args)
    # the sums are checked: a loop the compiler shortened would not give them
    want = reps * np.einsum("tsjk,sik->tji", args[0].numpy().astype("int64"),
                            args[1].numpy().astype("int64"))
    if not np.array_equal(args[2].numpy(), want):
        raise SystemExit("the peak kernel's sums are wrong: not timing it")
    # the fastest of the repeats: noise only ever slows a loop that has no memory traffic
    secs = min(lib.time_evaluator("main", dev, number=5, repeat=60)(*args).results)
    return 2 * threads * tile * steps * reps * 64 / secs / 1e9, threads


def task_rows(work_dir: str, target):
    """(best seconds, FLOPs, name) of every task in a tuning database with a run."""
    import numpy as np
    import tvm
    import tvm_ffi
    from tvm.s_tir.analysis import estimate_tir_flops

    from pose_tuner.compile import tuning

    tuning.register_intrinsics(tvm.target.Target(target.tvm_target()), target.int8_kernel,
                               work_dir)
    best: dict = {}
    for rec in tuning.open_database(work_dir).get_all_tuning_records():
        secs = [float(s) for s in rec.run_secs or []]
        if not secs or min(secs) >= 1e9:
            continue
        mod = rec.workload.mod
        key = tvm_ffi.structural_hash(mod)
        run = float(np.mean(secs))
        if key not in best or run < best[key][0]:
            best[key] = (run, float(estimate_tir_flops(mod)), _task_name(mod))
    return sorted(best.values(), key=lambda row: -row[0])


def _task_name(mod) -> str:
    """A readable name for a workload (the PrimFunc of a record is always ``main``): its
    blocks in order, ``+``-joined."""
    import tvm

    sch = tvm.s_tir.Schedule(mod)
    return "+".join(sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root")))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("--target", default="x86")
    ap.add_argument("--log-dir", default=None, help="a tuner search log dir (its tuning/ DB)")
    ap.add_argument("--top", type=int, default=15, help="tasks to list, slowest first")
    ap.add_argument("--tile", type=int, default=None,
                    help="accumulators per thread (default: by kernel, TILES)")
    ap.add_argument("--steps", type=int, default=256, help="kernel steps per call")
    args = ap.parse_args(argv)

    from pose_tuner.hardware import TargetUnavailable, get_target

    target = get_target(args.target)
    if not target.int8_kernel:
        raise SystemExit(f"target {target.name} names no int8 kernel")
    try:
        target.check_available()
    except TargetUnavailable as exc:
        raise SystemExit(str(exc)) from None
    tile = args.tile or TILES[target.int8_kernel]
    peak, threads = measure_peak(target, target.int8_kernel, tile, args.steps)
    print(f"{target.name} ({target.int8_kernel} kernel): peak {peak:.0f} GOPS on {threads} "
          f"threads ({peak / threads:.0f} per thread), {tile} accumulators x "
          f"{args.steps} steps in L1")
    if not args.log_dir:
        return 0
    dirs = sorted(glob.glob(os.path.join(args.log_dir, "tuning", f"{target.name}-*")))
    if not dirs:
        raise SystemExit(f"no tuning database of {target.name} under {args.log_dir}/tuning")
    for work_dir in dirs:
        rows = task_rows(work_dir, target)
        total = sum(r[0] for r in rows)
        print(f"\n{work_dir}: {len(rows)} tasks, their best runs sum to {total * 1e3:.2f} ms "
              "(each counted once)")
        print("\n| us | GOPS | of peak | task |\n|---:|---:|---:|---|")
        for secs, flops, name in rows[:args.top]:
            gops = flops / secs / 1e9
            print(f"| {secs * 1e6:.1f} | {gops:.0f} | {gops / peak:.0%} | {name} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
