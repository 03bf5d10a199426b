"""Every registered int8 dot-product kernel (``pose_tuner.compile.kernels.KERNELS``) keeps
the ``Int8Kernel`` contract of :mod:`pose_tuner.compile.kernels.base`, checked from the
registry. Independent of this host's CPU: the ISA check compiles the kernel's own
implementation for every target that names it and inspects the assembly (milliseconds, in
one child process: LLVM aborts the process for a CPU that lacks the instructions); the
full tensorized build and the exactness run are :mod:`tests.compile.test_int8_kernels`.
The first ``register()`` imports TVM's x86 tensor intrinsics (only those:
:mod:`pose_tuner.compile.tensor_intrin`)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("tvm")

from pose_tuner.compile.kernels import KERNELS, Int8Kernel, get_kernel  # noqa: E402
from pose_tuner.hardware import TARGETS  # noqa: E402

NAMES = list(KERNELS)


def _kernel_targets():
    """(kernel, target naming it) for every target; a kernel no target names still gets a
    case, which fails: nothing would ever build it for a CPU that has its ISA."""
    for name in NAMES:
        users = [cls() for cls in TARGETS.values() if cls().int8_kernel == name]
        for t in users:
            yield pytest.param(name, t, id=f"{name}-{t.name}")
        if not users:
            yield pytest.param(name, None, id=f"{name}-(no target)")


@pytest.mark.parametrize("name", NAMES)
def test_registered_under_its_name_with_its_declarations(name):
    k = KERNELS[name]
    assert isinstance(k, Int8Kernel) and k.name == name and name
    assert get_kernel(name) is k
    assert dataclasses.is_dataclass(k) and type(k).__dataclass_params__.frozen
    assert isinstance(k.intrin, str) and k.intrin
    assert isinstance(k.mnemonics, tuple) and k.mnemonics
    assert all(isinstance(m, str) and m.strip() == m and m for m in k.mnemonics)
    assert isinstance(k.weight_bits, int) and 2 <= k.weight_bits <= 8


def test_names_and_intrinsics_are_unique():
    kernels = list(KERNELS.values())
    assert len({k.name for k in kernels}) == len(kernels)
    assert len({k.intrin for k in kernels}) == len(kernels), "two kernels register one name"
    with pytest.raises(KeyError, match="known: " + ", ".join(NAMES)):
        get_kernel("no-such-kernel")


@pytest.mark.parametrize("name", NAMES)
def test_register_is_idempotent_and_installs_its_impl_for_tvms_desc(name):
    import tvm
    from tvm.s_tir import TensorIntrin
    from tvm.s_tir.tensor_intrin import x86

    k = KERNELS[name]
    assert k.register() == k.intrin
    assert k.register() == k.intrin  # again: no duplicate-name error
    intrin = TensorIntrin.get(k.intrin)
    tvm.ir.assert_structural_equal(intrin.desc, x86.dot_product_16x4_u8i8i32_desc)
    # ours, not TVM's own intrinsic of the same name
    tvm.ir.assert_structural_equal(intrin.impl, k.impl())


@pytest.mark.parametrize("name", NAMES)
def test_design_space_is_built_with_the_kernel(name):
    from tvm.s_tir import meta_schedule as ms

    from pose_tuner.compile.kernels import design_space

    assert isinstance(design_space(name), ms.space_generator.SpaceGenerator)


def _compile_all(cases: dict[str, tuple[str, dict]]) -> dict[str, dict | str]:
    """case id -> {mnemonic: count in the assembly}, or why the build failed; built in
    child processes (:mod:`tests.conformance._compile_kernels`), again after a crash for
    the cases the crashed one did not reach."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    results: dict[str, dict | str] = {}
    while todo := [[cid, *cases[cid]] for cid in cases if cid not in results]:
        proc = subprocess.run([sys.executable, "-m", "tests.conformance._compile_kernels"],
                              input=json.dumps(todo), capture_output=True, text=True,
                              cwd=root, timeout=300)
        started = None
        for line in proc.stdout.splitlines():
            word, _, rest = line.partition(" ")
            if word == "START":
                started = rest
            elif word == "DONE":
                cid, _, counts = rest.partition(" ")
                results[cid], started = json.loads(counts), None
        if proc.returncode:
            why = f"build failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}"
            results[started or todo[0][0]] = why
    return results


@pytest.fixture(scope="module")
def compiled():
    cases = {p.id: (p.values[0], p.values[1].tvm_target())
             for p in KERNEL_TARGETS if p.values[1] is not None}
    return _compile_all(cases)


KERNEL_TARGETS = list(_kernel_targets())


@pytest.mark.parametrize("name, target", KERNEL_TARGETS)
def test_compiles_with_its_instructions_for_each_target_naming_it(name, target, request,
                                                                  compiled):
    """The target's CPU has the kernel's ISA: LLVM selects the intrinsics for its ``mcpu``
    (it aborts on a CPU without them) and the assembly holds every declared mnemonic."""
    assert target is not None, f"no registered target names int8 kernel {name!r}"
    k = KERNELS[name]
    assert target.int8_weight_bits <= k.weight_bits
    counts = compiled[request.node.callspec.id]
    assert isinstance(counts, dict), counts
    assert all(counts[m] > 0 for m in k.mnemonics), counts
