"""Would Winograd pay for the int8 deconvolutions on AVX2? Its int16 GEMM, tuned and timed.

    .venv/bin/python benchmarks/winograd_int16.py [--trials 256] [--log-dir D]

On AVX2 the tuned int8 deconvolutions of ``mobilenetv2_deconv`` already run at their
kernel's peak (``benchmarks/int8_roofline.py``), so only less work makes them faster.
Winograd F(2x2, 2x2) does each stride-2 phase's 2x2 convolution with 9 multiplications
per 2x2 output tile instead of 16, but its transformed operands leave 8 bits (inputs up
to +-510, weights +-256), so it multiplies int16 with ``vpmaddwd``: 16 multiply-adds per
instruction, as many as the u8 kernel's ``vpmaddubsw`` + ``vpmaddwd`` pair does per
multiply instruction. This probe builds only the stage that decides: the batched GEMM
(phases x 9 positions batches of [tiles x cin] x [cin x cout]) with an AVX2 ``vpmaddwd``
tensor intrinsic in MetaSchedule's x86 design space, tunes it, checks it exactly against
numpy, and prints its time, its GOPS and its *direct-equivalent* GOPS (the 16/9 more
operations the direct convolution does in that time), to compare with the int8 task's
GOPS from ``int8_roofline.py --log-dir``. The input and output transforms come on top.
The defaults are the head's last deconvolution (256 -> 256 channels, 32x24 -> 64x48).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time

import _bootstrap  # noqa: E402,F401  (the repository on sys.path; TVM's threads)

INTRIN = "dot_16x2_i16_avx2"


def register_intrinsic() -> str:
    """``C[16] int32 += A[2] int16 . B[16, 2] int16`` as two AVX2 ``vpmaddwd``."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(A: T.Buffer((2,), "int16", offset_factor=1),
             B: T.Buffer((16, 2), "int16", offset_factor=1),
             C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:2], B[0:16, 0:2])
            T.writes(C[0:16])
            for i in T.serial(16):
                for k in T.serial(2):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(A: T.Buffer((2,), "int16", offset_factor=1),
             B: T.Buffer((16, 2), "int16", offset_factor=1),
             C: T.Buffer((16,), "int32", offset_factor=1)) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:2], B[0:16, 0:2])
            T.writes(C[0:16])
            for h in T.unroll(2):
                a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int16x2"),
                                                            dtype="int32"), 8), dtype="int16x16")
                C[T.ramp(h * 8, 1, 8)] = C.vload([h * 8], dtype="int32x8") \
                    + T.call_llvm_pure_intrin(
                        T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), a,
                        B.vload([h * 8, 0], dtype="int16x16"), dtype="int32x8")

    TensorIntrin.register(INTRIN, desc, impl, override=True)
    return INTRIN


def gemm_module(batches: int, cin: int, cout: int, tiles: int):
    """M[b, o, t, 16] = sum over c of V[b, c/16, t, c%16] * U[b, o, c/16, c%16/2, 16, c%2]."""
    import tvm
    from tvm import te

    cb, ob = cin // 16, cout // 16
    v = te.placeholder((batches, cb, tiles, 16), "int16", name="V")
    u = te.placeholder((batches, ob, cb, 8, 16, 2), "int16", name="U")
    rc = te.reduce_axis((0, cb), "cb")
    rf = te.reduce_axis((0, 8), "f")
    rs = te.reduce_axis((0, 2), "s")
    m = te.compute((batches, ob, tiles, 16), lambda b, o, t, k: te.sum(
        v[b, rc, t, rf * 2 + rs].astype("int32") * u[b, o, rc, rf, k, rs].astype("int32"),
        axis=[rc, rf, rs]), name="M")
    return tvm.IRModule({"main": te.create_prim_func([v, u, m])})


def space():
    """The x86 int8 design space of the avx2 kernel with the int16 intrinsic tiled first."""
    from tvm.s_tir import meta_schedule as ms

    from pose_tuner.compile.kernels import design_space

    base = design_space("avx2")
    rules = list(base.sch_rules)
    # design_space's order: custom, constant scalars, inline, rfactor, then the u8 kernel's
    # tiling: the int16 tiling goes before it
    rules.insert(4, ms.schedule_rule.MultiLevelTilingWithIntrin(
        INTRIN, structure="SSRSRS", tile_binds=None, max_innermost_factor=64,
        vector_load_lens=None, reuse_read=None,
        reuse_write=ms.schedule_rule.ReuseType(req="may", levels=[1, 2], scope="global")))
    return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs=base.postprocs,
                                             mutator_probs="llvm")


def tune_gemm(batches: int, cin: int, cout: int, tiles: int, trials: int, work_dir: str):
    """(built runtime module, seconds of tuning) of the tuned GEMM for x86-avx2."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from pose_tuner.compile.tensor_intrin import import_only
    from pose_tuner.compile.tuning import InProcessBuilder
    from pose_tuner.hardware import get_target

    import_only(("x86",))
    register_intrinsic()
    mod = gemm_module(batches, cin, cout, tiles)
    target = tvm.target.Target(get_target("x86-avx2").tvm_target())
    t0 = time.time()
    # the tuner's own builder and runner timeout: MetaSchedule's default builder pool
    # times out on a busy 2-core machine and then nothing is built
    builder = InProcessBuilder()
    try:
        db = ms.tir_integration.tune_tir(mod, target, work_dir, max_trials_global=trials,
                                         num_trials_per_iter=min(32, trials), space=space(),
                                         builder=builder,
                                         runner=ms.runner.LocalRunner(timeout_sec=120),
                                         num_tuning_cores=2)
    finally:
        shutil.rmtree(builder.dir, ignore_errors=True)
    sch = ms.tir_integration.compile_tir(db, mod, target)
    if sch is None:
        raise RuntimeError("no schedule of the GEMM built")
    return tvm.compile(sch.mod, target=target).mod, time.time() - t0


def check_and_time(lib, batches: int, cin: int, cout: int, tiles: int, seed: int = 0):
    """(exact against numpy, vpmaddwd count in the assembly, best seconds per call) on
    operands spanning the transformed ranges (inputs +-510, weights +-256)."""
    import numpy as np
    import tvm

    from pose_tuner.compile.kernels import count_instructions

    dev = tvm.cpu()
    rng = np.random.default_rng(seed)
    cb, ob = cin // 16, cout // 16
    v = rng.integers(-510, 511, (batches, cb, tiles, 16)).astype("int16")
    u = rng.integers(-256, 257, (batches, ob, cb, 8, 16, 2)).astype("int16")
    args = [tvm.runtime.tensor(v, dev), tvm.runtime.tensor(u, dev),
            tvm.runtime.tensor(np.zeros((batches, ob, tiles, 16), "int32"), dev)]
    lib["main"](*args)
    ref = np.einsum("bctfs,bocfks->botk", v.reshape(batches, cb, tiles, 8, 2).astype(np.int64),
                    u.astype(np.int64))
    exact = bool(np.array_equal(ref, args[2].numpy()))
    madd = sum(count_instructions(lib, "vpmaddwd").values())
    secs = min(lib.time_evaluator("main", dev, number=10, repeat=7)(*args).results)
    return exact, madd, secs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cin", type=int, default=256)
    ap.add_argument("--cout", type=int, default=256)
    ap.add_argument("--tiles", type=int, default=16 * 12,
                    help="2x2 output tiles per phase (default: a 32x24 phase)")
    ap.add_argument("--phases", type=int, default=4)
    ap.add_argument("--trials", type=int, default=256)
    ap.add_argument("--log-dir", default=None,
                    help="MetaSchedule's work dir, kept (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    from pose_tuner.hardware.cpu_isa import host_features

    if "avx2" not in host_features():
        print("this CPU has no AVX2: the probe's kernel cannot run here", file=sys.stderr)
        return 2
    if args.cin % 16 or args.cout % 16:
        print("--cin and --cout must be multiples of 16", file=sys.stderr)
        return 2
    batches = args.phases * 9
    work_dir = args.log_dir or tempfile.mkdtemp(prefix="winograd_int16_")
    try:
        lib, tuned_s = tune_gemm(batches, args.cin, args.cout, args.tiles, args.trials, work_dir)
        exact, madd, secs = check_and_time(lib, batches, args.cin, args.cout, args.tiles)
    finally:
        if args.log_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    ops = 2 * batches * args.tiles * args.cin * args.cout
    print(f"GEMM {batches} x [{args.tiles} x {args.cin}] x [{args.cin} x {args.cout}] int16, "
          f"{args.trials} trials ({tuned_s:.0f} s): {secs * 1e6:.0f} us, "
          f"{ops / secs / 1e9:.0f} GOPS, "
          f"direct-equivalent {ops * 16 / 9 / secs / 1e9:.0f} GOPS; exact: {exact}; "
          f"vpmaddwd in its code: {madd}")
    return 0 if exact and madd else 1


if __name__ == "__main__":
    sys.exit(main())
