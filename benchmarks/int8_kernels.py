"""One conv layer, int8 against fp32, on an x86 target's int8 kernel.

    .venv/bin/python benchmarks/int8_kernels.py [--target x86] [--trials 32]

Builds a 1x1 convolution (``--channels`` -> ``--channels`` at ``--height`` x ``--width``)
twice, as the packed int8 conv + requantization of :mod:`pose_tuner.compile.int8.te` and as fp32
conv + ReLU, each tuned with ``--trials`` MetaSchedule trials in the target's design space (one
core), checks the int8 accumulation against numpy's exact integer maths, counts the
kernel's instructions in the assembly and times both on this CPU. A target this host
cannot run is compiled and inspected only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    ap.add_argument("--target", default="x86")
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--height", type=int, default=64)
    ap.add_argument("--width", type=int, default=48)
    ap.add_argument("--work-dir", default=None)
    args = ap.parse_args(argv)

    import tvm
    from tvm import relax

    from pose_tuner.hardware import TargetUnavailable, get_target

    from pose_tuner.compile import pipeline, tuning
    from pose_tuner.compile.int8.te import OC_BLOCK, pack_conv_weight, te_conv2d_nchwc_int8_requant
    from pose_tuner.compile.kernels import count_instructions, get_kernel

    tdef = get_target(args.target)
    kernel = get_kernel(tdef.int8_kernel)
    try:
        tdef.check_available()
        runs = True
    except TargetUnavailable as exc:
        print(f"compile and inspect only: {exc}")
        runs = False
    target = tvm.target.Target({**tdef.tvm_target(), "num-cores": 1})
    work = args.work_dir or tempfile.mkdtemp(prefix="int8-kernels-")
    rng = np.random.default_rng(0)
    c, h, w = args.channels, args.height, args.width
    cb = -(-c // OC_BLOCK)
    wmax = 2 ** (kernel.weight_bits - 1)
    wq = rng.integers(-wmax, wmax + (kernel.weight_bits == 7), (c, c, 1, 1)).astype(np.int8)

    def build(name, data, body):
        bb = relax.BlockBuilder()
        x = relax.Var("x", relax.TensorType(data.shape, str(data.dtype)))
        with bb.function("main", [x]):
            with bb.dataflow():
                out = bb.emit_output(body(bb, x))
            bb.emit_func_output(out)
        mod = pipeline.prepare(bb.get(), target)
        wd = os.path.join(work, f"{tdef.name}-{name}")
        stats = tuning.tune(mod, target, wd, args.trials, int8_kernel=kernel.name)
        ex = pipeline.compile_module(mod, target, wd)
        print(f"{name}: tuned, {stats.trials_measured} of {stats.trials_run} trials measured")
        if not runs:
            return None, None, ex
        vm = relax.VirtualMachine(ex, tvm.cpu())
        out = vm["main"](tvm.runtime.tensor(data)).numpy()
        timer = vm.time_evaluator("main", tvm.cpu(), number=20, repeat=7)
        return float(np.median(timer(tvm.runtime.tensor(data)).results) * 1e3), out, ex

    def int8_body(bb, x):  # requantization by 1: the int32 sums, clipped to u8 after a shift
        return bb.emit(bb.call_te(
            te_conv2d_nchwc_int8_requant, x, relax.const(pack_conv_weight(wq, OC_BLOCK, cb * 16)),
            relax.const(np.zeros((cb, OC_BLOCK), np.int32)),
            relax.const(np.full((cb, OC_BLOCK), 1.0 / 512, np.float32)),
            strides=[1, 1], dilation=[1, 1], out_zp=128, out_lo=0, out_hi=255,
            primfunc_name_hint="conv1x1_int8"))

    def fp32_body(bb, x):
        wf = rng.standard_normal((c, c, 1, 1)).astype(np.float32)
        return bb.emit(relax.op.nn.relu(bb.emit(relax.op.nn.conv2d(x, relax.const(wf)))))

    xi = rng.integers(0, 256, (1, cb, h, w, 16)).astype(np.uint8)
    i8, out, ex = build("int8", xi, int8_body)
    f32, _, _ = build("fp32", rng.standard_normal((1, c, h, w)).astype(np.float32), fp32_body)
    counts = {m: sum(count_instructions(ex, m).values()) for m in kernel.mnemonics}
    print(f"{tdef.name} ({kernel.name} kernel): " + ", ".join(f"{m} x{n}" for m, n in counts.items()))
    if not runs:
        return 0 if all(counts.values()) else 1
    acc = np.einsum("chw,oc->ohw", xi[0].transpose(0, 3, 1, 2).reshape(cb * 16, h, w)[:c]
                    .astype(np.int64), wq[:, :, 0, 0].astype(np.int64))
    want = np.clip(np.rint(acc / 512.0) + 128, 0, 255)
    got = out[0].transpose(0, 3, 1, 2).reshape(cb * 16, h, w)[:c]
    exact = bool(np.array_equal(got, want))
    print(f"int8 {i8:.3f} ms, fp32 {f32:.3f} ms, speedup {f32 / i8:.2f}x; int8 exact: {exact}; "
          f"databases in {work}")
    return 0 if exact and all(counts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
