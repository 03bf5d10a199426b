"""Every x86 int8 kernel (pose_tuner/compile/kernels), over every x86 target that names one:
it builds for its target's CPU with its instructions in the assembly, and where this host
runs that CPU its dot products equal numpy's exact integer maths."""

import numpy as np
import pytest

pytest.importorskip("tvm")

from pose_tuner.compile.kernels import KERNELS, count_instructions, get_kernel  # noqa: E402
from pose_tuner.hardware.x86 import members  # noqa: E402

X86 = [cls() for cls in members()]


def _conv_tensorized(kernel_name: str, tvm_target: dict):
    """A packed 1x1 int8 conv (2 x 16 channels in and out, 6x5 pixels) whose 16-lane
    inner step is tensorized with the kernel's intrinsic, built for ``tvm_target``."""
    import tvm
    from tvm import s_tir, te

    intrin = get_kernel(kernel_name).register()
    data = te.placeholder((1, 2, 6, 5, 16), "uint8", name="data")
    kern = te.placeholder((2, 2, 1, 1, 4, 16, 4), "int8", name="kern")
    ico = te.reduce_axis((0, 2), "ico")
    icf = te.reduce_axis((0, 4), "icf")
    ics = te.reduce_axis((0, 4), "ics")
    acc = te.compute(
        (1, 2, 6, 5, 16),
        lambda b, o, y, x, oc: te.sum(
            data[b, ico, y, x, icf * 4 + ics].astype("int32")
            * kern[o, ico, 0, 0, icf, oc, ics].astype("int32"), axis=[ico, icf, ics]),
        name="conv")
    sch = s_tir.Schedule(te.create_prim_func([data, kern, acc]))
    block = sch.get_sblock("conv")
    b, o, y, x, oc, ico_, icf_, ics_ = sch.get_loops(block)
    sch.reorder(b, o, y, x, ico_, icf_, oc, ics_)
    sch.decompose_reduction(block, ico_)
    sch.tensorize(oc, intrin)
    return tvm.compile(sch.mod, target=tvm.target.Target(tvm_target))


def _exact(data, kern):
    d = data.reshape(1, 2, 6, 5, 4, 4).astype(np.int64)
    return np.einsum("bcyxfs,ocfps->boyxp", d, kern[:, :, 0, 0].astype(np.int64))


def test_every_x86_target_names_a_registered_kernel_its_weights_fit():
    assert {t.int8_kernel for t in X86} == set(KERNELS)
    for t in X86:
        assert t.int8_weight_bits <= get_kernel(t.int8_kernel).weight_bits, t.name


@pytest.mark.parametrize("target", X86, ids=lambda t: t.name)
def test_kernel_builds_with_its_instructions_and_is_exact_where_it_runs(target):
    import tvm

    from pose_tuner.hardware import TargetUnavailable

    kernel = get_kernel(target.int8_kernel)
    mod = _conv_tensorized(kernel.name, {**target.tvm_target(), "num-cores": 1})
    for mnemonic in kernel.mnemonics:
        assert sum(count_instructions(mod, mnemonic).values()) > 0, mnemonic
    try:
        target.check_available()
    except TargetUnavailable as exc:
        pytest.skip(f"compiled and inspected only: {exc}")
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (1, 2, 6, 5, 16)).astype(np.uint8)
    top = 2 ** (kernel.weight_bits - 1)
    kern = rng.integers(-top, top + 1 if kernel.weight_bits == 7 else top,
                        (2, 2, 1, 1, 4, 16, 4)).astype(np.int8)
    kern.flat[:64] = -top  # the extremes: every pair sum of 255 x -top
    data[...] = np.where(rng.random(data.shape) < 0.5, 255, data)
    out = tvm.runtime.tensor(np.zeros((1, 2, 6, 5, 16), np.int32))
    mod(tvm.runtime.tensor(data), tvm.runtime.tensor(kern), out)
    np.testing.assert_array_equal(out.numpy(), _exact(data, kern))
    if kernel.weight_bits == 7:  # why 7: full 8-bit weights saturate vpmaddubsw
        kern8 = np.full_like(kern, -128)
        mod(tvm.runtime.tensor(np.full_like(data, 255)), tvm.runtime.tensor(kern8), out)
        assert not np.array_equal(out.numpy(), _exact(np.full_like(data, 255), kern8))
