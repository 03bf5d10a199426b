"""benchmarks/int8_roofline.py: the peak loop is each kernel's instructions on register
accumulators (inspected for every kernel, whatever this CPU runs), its sums are exact and
timed on this CPU's own kernel, and a tuning database's tasks are listed against it."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "int8_roofline.py")
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))


@pytest.mark.parametrize("kernel", ["vnni", "avx512", "avxvnni", "avx2"])
def test_the_peak_loop_is_the_kernels_instructions_in_registers(kernel):
    import tvm

    from int8_roofline import TILES, peak_kernel
    from pose_tuner.compile.kernels import get_kernel
    from pose_tuner.hardware import list_targets

    k = get_kernel(kernel)
    target = next(t for t in list_targets() if t.int8_kernel == kernel)
    lib = tvm.compile(peak_kernel(k.register(), 1, TILES[kernel], 16),
                      target=tvm.target.Target(target.tvm_target()))
    lines = [ln.split(None, 1) for ln in lib.jit().inspect_source("asm").splitlines()
             if ln.startswith(("\t", ".LBB")) and ln.split()]
    lines = [ln[1].split(None, 1) if ln[0].startswith("{") else ln for ln in lines]  # {vex}
    first = next(i for i, ln in enumerate(lines) if ln[0] == k.mnemonics[0])
    start = max(i for i in range(first) if lines[i][0].endswith(":"))  # the loop's label
    end = next(i for i in range(first, len(lines)) if lines[i][0].startswith("j"))
    loop = lines[start + 1:end]
    ops = [ln[0] for ln in loop]
    for mnemonic in k.mnemonics:  # every accumulator's step, unrolled
        assert ops.count(mnemonic) >= TILES[kernel], (mnemonic, ops)
    # the accumulators stay in registers: nothing is stored inside the step loop
    stores = [ln for ln in loop if ln[0].startswith("vmov") and "(" in ln[1].split(",")[-1]]
    assert not stores, stores


def test_peak_and_tasks_on_this_cpu(tiny_onnx, tmp_path):
    from pose_tuner.hardware import TargetUnavailable, get_target

    try:
        target = get_target("x86")
        target.check_available()
    except TargetUnavailable as exc:
        pytest.skip(str(exc))
    import tvm

    from pose_tuner.compile.frontend import import_onnx
    from pose_tuner.compile.pipeline import prepare
    from pose_tuner.compile.tuning import tune

    tvm_target = tvm.target.Target(target.tvm_target())
    work = tmp_path / "logs" / "tuning" / f"{target.name}-test"
    tune(prepare(import_onnx(tiny_onnx), tvm_target), tvm_target, str(work), max_trials=4)
    run = subprocess.run([sys.executable, SCRIPT, "--target", "x86", "--log-dir",
                          str(tmp_path / "logs"), "--steps", "64"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    head, _, table = run.stdout.partition("| us | GOPS | of peak | task |")
    assert f"{target.name} ({target.int8_kernel} kernel): peak" in head
    assert float(head.split("peak ")[1].split()[0]) > 0
    rows = [ln.split("|") for ln in table.splitlines() if ln.startswith("| ")]
    assert rows and all(float(r[1]) > 0 and r[3].strip().endswith("%") for r in rows)
    assert any("conv2d" in r[4] for r in rows)
