import json
import os
import struct
import time

import pytest

tvm = pytest.importorskip("tvm")


def test_tune_measures_trials_and_second_run_reuses_records(tiny_onnx, tmp_path):
    from pose_tuner.hardware import get_target
    from pose_tuner.measure.check import compare
    from pose_tuner.measure.inputs import structured_input
    from pose_tuner.measure.reference import ORTSession
    from pose_tuner.measure.runner import LocalVM, Timing
    from pose_tuner.compile.frontend import import_onnx
    from pose_tuner.compile.pipeline import compile_module, prepare
    from pose_tuner.compile.tuning import tune

    target = tvm.target.Target(get_target("x86").tvm_target())
    mod = prepare(import_onnx(tiny_onnx), target)
    work = str(tmp_path / "tuning")
    msgs = []
    t0 = time.time()
    first = tune(mod, target, work, max_trials=8, report=msgs.append)
    t_first = time.time() - t0
    assert first.tasks >= 3 and first.tasks_tuned == first.tasks
    assert first.trials_measured > 0 and first.trials_measured == first.trials_run
    assert first.unscheduled == ()  # every task has a measured schedule
    assert os.path.getsize(os.path.join(work, "database_tuning_record.json")) > 0
    assert any("trials" in m for m in msgs)
    # the second pass's split by measured latency is stored, so the re-run asks the same
    with open(os.path.join(work, "task_plans.json")) as f:
        plans = json.load(f)
    assert len(plans) == first.tasks and all(k.endswith("@8") for k in plans)
    assert sum(plans.values()) > 0

    t0 = time.time()
    second = tune(mod, target, work, max_trials=8)
    assert second.tasks_tuned == 0 and second.tasks_reused == first.tasks
    assert time.time() - t0 < t_first / 3

    ex = compile_module(mod, target, work)
    # the folded weights are bound as constants, not a tuple main takes apart every call
    assert "vm.builtin.tuple_getitem" not in ex.as_text()
    path = str(tmp_path / "m.so")
    ex.export_library(path)
    vm = LocalVM(path)
    x = structured_input((1, 3, 32, 32), seed=1)
    res = compare(vm.run(x), ORTSession(tiny_onnx).run(x))
    assert res.rel_err < 1e-4
    stats = vm.latency(x, Timing(budget_s=0.2, min_repeat=3))
    assert stats.runs >= 3 and 0 < stats.min_ms <= stats.median_ms <= stats.p90_ms


def test_cuda_build_carries_compiled_kernels(tiny_onnx, tmp_path):
    """Without a GPU: the model compiles for CUDA (dlight rules that lower the grouped
    sub-pixel convolutions), and the exported library carries the kernels compiled by
    nvcc for the target's arch (a fatbin with an sm_90 cubin), not CUDA source that a
    GPU machine would have to compile when loading it."""
    import shutil
    import struct

    from pose_tuner.hardware import get_target

    from pose_tuner.compile import frontend, pipeline
    from pose_tuner.compile.toolchains.cuda import fatbin_images
    from pose_tuner.hardware.cuda import cuda_driver_present

    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not installed")
    had_driver = cuda_driver_present()
    target = tvm.target.Target(get_target("cuda").tvm_target())
    ex = pipeline.compile_module(
        pipeline.prepare(frontend.import_onnx(tiny_onnx), target), target)
    path = tmp_path / "cuda.so"
    ex.export_library(str(path))
    data = path.read_bytes()
    assert fatbin_images(data) == ["sm_90 cubin"]
    assert b'extern "C" __global__' not in data
    # the image is a CUDA ELF (e_machine EM_CUDA = 190) holding the model's kernels
    elf = data.index(b"\x7fELF", data.index((0xBA55ED50).to_bytes(4, "little")))
    assert struct.unpack_from("<H", data, elf + 18)[0] == 190
    # the library loads back (the CUDA module is there, ready for a GPU)
    lib = tvm.runtime.load_module(str(path))
    kinds = []

    def walk(m):
        kinds.append(m.kind)
        for i in m.imports:
            walk(i)

    walk(lib)
    assert "relax.VMExecutable" in kinds and "library" in kinds
    # the placeholder driver this process may now hold is never taken for a GPU
    assert cuda_driver_present() is had_driver


def test_fatbin_images_reads_headers():
    from pose_tuner.compile.toolchains.cuda import fatbin_images

    def entry(kind, arch, payload):
        head = struct.pack("<HHIQIIHHI", kind, 0x101, 32, len(payload), 0, 0, 8, 1, arch)
        return head + payload

    body = entry(2, 90, b"\x7fELF" + bytes(60)) + entry(1, 80, b"//ptx\0")
    fat = struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body
    assert fatbin_images(b"junk" + fat + b"tail") == ["sm_90 cubin", "sm_80 ptx"]
    assert fatbin_images(b"no kernels here") == []


@pytest.mark.parametrize("quant", ["fp32", "fp16"])
def test_metaschedule_builds_cuda_candidates(tiny_onnx, quant):
    """Without a GPU: MetaSchedule's GPU rules accept the cuda target (they need its
    per-block limits), the design space of every task (fp16 too: TVM 0.27's tensor-core
    sketches of fp16 convolutions do not build) has a candidate that builds, and the
    tuning builder compiles its kernels into the library."""
    import shutil
    import tarfile

    from tvm.s_tir import meta_schedule as ms

    from pose_tuner.hardware import get_target

    from pose_tuner.compile import pipeline, tuning
    from pose_tuner.compile.toolchains.cuda import enable_codegen, fatbin_images

    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not installed")
    from pose_tuner.jobs.worker import import_float

    target = tvm.target.Target(get_target("cuda").tvm_target())
    mod = pipeline.prepare(import_float(tiny_onnx, quant, lambda _m: None), target)
    enable_codegen()
    tasks = [t for t in ms.relax_integration.extract_tasks(mod, target)
             if not t.mod.attrs or not t.mod.attrs.get("tirx.is_scheduled", False)]
    assert len(tasks) >= 4
    builder = tuning.InProcessBuilder()
    try:
        for task in tasks:
            # a sampled candidate may exceed the GPU's shared memory: a few seeds each
            for seed in range(4):
                ctx = ms.TuneContext(mod=task.dispatched[0], target=target,
                                     space_generator=tuning.space_generator(target),
                                     search_strategy="replay-trace", task_name=task.task_name,
                                     rand_state=seed)
                spaces = ctx.space_generator.generate_design_space(task.dispatched[0])
                results = builder.build([ms.builder.BuilderInput(s.mod, target)
                                         for s in spaces])
                built = [r for r in results if r.error_msg is None]
                if built:
                    break
            assert built, (task.task_name, results[0].error_msg[-500:])
        with tarfile.open(built[0].artifact_path) as tar:
            images = [img for m in tar.getmembers() for img in fatbin_images(
                tar.extractfile(m).read())]
        assert images == ["sm_90 cubin"]
    finally:
        shutil.rmtree(builder.dir, ignore_errors=True)


def test_unfused_batchnorm_epilogues_tune_and_match(opset8_bn_onnx, tmp_path):
    """The model as the user wrote it, not cleaned: opset 8, every conv followed by an
    unfused BatchNormalization (legacy ``spatial``), so the tuned kernels carry the
    subtract / divide / multiply / add epilogue and its constants are layout-free."""
    import onnxruntime as ort

    from pose_tuner.hardware import get_target
    from pose_tuner.measure.check import compare
    from pose_tuner.measure.inputs import structured_input
    from pose_tuner.measure.runner import LocalVM
    from pose_tuner.compile.frontend import import_onnx
    from pose_tuner.compile.pipeline import compile_module, prepare
    from pose_tuner.compile.tuning import tune

    target = tvm.target.Target(get_target("x86").tvm_target())
    mod = prepare(import_onnx(opset8_bn_onnx.path), target)
    names = [gv.name_hint for gv in mod.functions]
    assert any("subtract" in n and "divide" in n for n in names), names
    stats = tune(mod, target, str(tmp_path / "tuning"), max_trials=8)
    assert stats.trials_measured > 0
    path = str(tmp_path / "m.so")
    compile_module(mod, target, str(tmp_path / "tuning")).export_library(path)
    x = structured_input((1, 3, 32, 32), seed=3)
    ref = ort.InferenceSession(opset8_bn_onnx.path).run(None, {"input": x})[0]
    compare(LocalVM(path).run(x), ref)
