import pytest

from pose_tuner.hardware import TARGETS, TargetUnavailable, UnknownTarget, get_target, list_targets


def test_registry_lists_the_targets_with_tvm_json():
    import tvm

    names = [t.name for t in list_targets()]
    assert names == ["x86-vnni", "x86-avx512", "x86-avxvnni", "x86-avx2", "rasp4b", "cuda"]
    for t in list_targets():
        d = t.tvm_target()
        assert isinstance(d, dict)
        tgt = tvm.target.Target(d)  # TVM accepts it
        assert tgt.kind.name == d["kind"]


def test_unknown_target_names_the_known_ones():
    with pytest.raises(UnknownTarget) as e:
        get_target("rasp5")
    assert "x86-vnni" in str(e.value) and "rasp4b" in str(e.value) and "x86 (this host)" in str(e.value)


def test_rasp4b_tvm_target_is_aarch64_a72():
    d = get_target("rasp4b").tvm_target()
    assert d["mtriple"] == "aarch64-linux-gnu" and d["mcpu"] == "cortex-a72"


def test_rasp4b_without_a_tracker_fails_fast_with_attach_help(monkeypatch):
    monkeypatch.delenv("TVM_TRACKER_HOST", raising=False)
    with pytest.raises(TargetUnavailable) as e:
        get_target("rasp4b").check_available()
    assert "pose_tuner_device_server.py --tracker HOST:9190 --key rasp4b" in str(e.value)


def test_each_x86_target_is_available_iff_the_host_has_its_level():
    from pose_tuner.hardware.cpu_isa import host_isa

    host = host_isa()
    for name in ("x86-vnni", "x86-avx512", "x86-avxvnni", "x86-avx2"):
        t = get_target(name)
        assert t.tvm_target()["kind"] == "llvm" and t.tvm_target()["mcpu"] == t.mcpu
        if host.has(t.isa):
            t.check_available()
        else:
            with pytest.raises(TargetUnavailable) as e:
                t.check_available()
            # the reason, the target that runs here, and that it still builds
            assert t.isa_name in str(e.value) and "still compiles" in str(e.value)
            if host.best:
                assert f"--target {get_target('x86').name}" in str(e.value)


def test_cuda_without_a_driver_is_unavailable():
    from pose_tuner.hardware.cuda import cuda_driver_present

    if cuda_driver_present():
        pytest.skip("this machine has a CUDA driver")
    with pytest.raises(TargetUnavailable) as e:
        get_target("cuda").check_available()
    assert "libcuda" in str(e.value)
    assert set(TARGETS) == {"x86-vnni", "x86-avx512", "x86-avxvnni", "x86-avx2", "rasp4b", "cuda"}


def test_cuda_kernels_run_on_the_same_major_architecture_and_newer_minors():
    from pose_tuner.hardware.cuda import runs_on

    assert runs_on("sm_90", "sm_90") and runs_on("sm_80", "sm_86")
    assert not runs_on("sm_86", "sm_80") and not runs_on("sm_90", "sm_89")
    assert not runs_on("sm_75", "sm_80")  # another major: no
    assert runs_on("sm_90a", "sm_90") and not runs_on("sm_90a", "sm_91")
    # the message of a local GPU and of an RPC one, from the device's compute version
    from types import SimpleNamespace

    from pose_tuner.hardware.cuda import arch_mismatch

    assert arch_mismatch("sm_80", SimpleNamespace(compute_version="8.6"), "this GPU") is None
    assert arch_mismatch("sm_90", SimpleNamespace(compute_version="8.6"), "this GPU (A10)") == (
        "this GPU (A10) is sm_86; kernels built for sm_90 do not run on it: pass --cuda-arch sm_86")
    assert get_target("cuda", arch="sm_86").tvm_target()["arch"] == "sm_86"


def test_cuda_without_a_compiler_says_which_to_install(monkeypatch, tmp_path):
    import importlib.util

    from pose_tuner.compile.toolchains.cuda import compile_mode

    monkeypatch.delenv("TVM_CUDA_COMPILE_MODE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvcc
    try:
        has_nvrtc = importlib.util.find_spec("cuda.bindings") is not None
    except ModuleNotFoundError:
        has_nvrtc = False
    if has_nvrtc:
        assert compile_mode() == "nvrtc"
    else:
        with pytest.raises(TargetUnavailable, match="nvcc on PATH, or `pip install cuda-bindings`"):
            compile_mode()
    monkeypatch.setenv("TVM_CUDA_COMPILE_MODE", "NVCC")
    assert compile_mode() == "nvcc"


def test_missing_cuda_runtime_is_found_beside_nvcc():
    """TVM's CUDA runtime links libcudart.so.13: when the loader cannot find it, it is
    taken from the toolkit that holds nvcc (or the nvidia-cuda-runtime wheel)."""
    import shutil

    from pose_tuner.measure.cuda_runtime import _preload_cudart

    if shutil.which("nvcc") is None:
        pytest.skip("nvcc not installed")
    assert _preload_cudart("libcudart.so.13: cannot open shared object file: No such file")
    assert not _preload_cudart("libcudart.so.99: cannot open shared object file")
    assert not _preload_cudart("libfoo.so: cannot open shared object file")
