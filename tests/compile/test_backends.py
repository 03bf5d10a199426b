"""The compile backends (pose_tuner/compile/backends/): one per TVM target kind, each held to
the contract of ``Backend``; the x86 int8 intrinsics only for targets that name a kernel."""

import json
import subprocess
import sys

import pytest

tvm = pytest.importorskip("tvm")

from pose_tuner.compile.backends import (  # noqa: E402
    BACKENDS, Backend, UnsupportedTargetKind, backend_for,
)
from pose_tuner.hardware import TARGETS, get_target  # noqa: E402


@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_every_backend_keeps_the_contract(kind):
    backend = BACKENDS[kind]
    assert isinstance(backend, Backend) and backend.kind == kind
    assert backend_for({"kind": kind}) is backend
    target = tvm.target.Target({"kind": kind})
    assert backend_for(target) is backend
    assert backend.space_generator(target, None) is not None
    backend.register_intrinsics(())  # nothing asked: always fine
    mod = tvm.IRModule()
    assert backend.prepare_for_device(mod, target) is not None
    assert callable(backend.artifact_info)


def test_host_cpu_kernels_only_where_the_device_is_the_host_cpu():
    """The int8 rewrite's packed channel gathers are plain loops for the host CPU: a GPU
    build would run them as host code on device memory."""
    assert {kind for kind, b in BACKENDS.items() if b.host_kernels} == {"llvm"}


def test_every_hardware_target_has_a_backend():
    for name in TARGETS:
        assert backend_for(get_target(name).tvm_target()).kind in BACKENDS


def test_an_unknown_target_kind_is_refused_with_the_known_ones():
    with pytest.raises(UnsupportedTargetKind, match=r"'rocm'.*cuda, llvm"):
        backend_for({"kind": "rocm"})


def test_cuda_refuses_cpu_int8_kernels():
    cuda = tvm.target.Target(get_target("cuda").tvm_target())
    with pytest.raises(ValueError, match="no int8 kernels"):
        backend_for(cuda).space_generator(cuda, "vnni")
    with pytest.raises(ValueError, match="CPU tensor intrinsics"):
        backend_for(cuda).register_intrinsics(["vnni"])


# In a fresh process: what tuning and building register for each target.
REGISTERED = r"""
import json, sys
import tvm
from pose_tuner.compile.kernels import base
from pose_tuner.compile.tuning import register_intrinsics, recorded_kernels
target = tvm.target.Target(json.loads(sys.argv[1]))
kernel = sys.argv[2] or None
register_intrinsics(target, kernel, sys.argv[3])
print(json.dumps({"intrins": sorted(base._REGISTERED),
                  "x86": "tvm.s_tir.tensor_intrin.x86" in sys.modules,
                  "recorded": recorded_kernels(sys.argv[3])}))
"""


def _in_fresh_process(script: str, *args: str) -> dict:
    """The JSON that ``script`` prints last, run with ``args`` in a fresh interpreter."""
    run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])


def _registered(tvm_target: dict, kernel: str | None, work_dir) -> dict:
    return _in_fresh_process(REGISTERED, json.dumps(tvm_target), kernel or "", str(work_dir))


def test_x86_intrinsics_only_for_the_kernel_a_target_names(tmp_path):
    pi = get_target("rasp4b")
    assert pi.int8_kernel is None
    got = _registered(pi.tvm_target(), None, tmp_path / "empty")
    assert got == {"intrins": [], "x86": False, "recorded": []}
    got = _registered(get_target("cuda").tvm_target(), None, tmp_path / "empty")
    assert got == {"intrins": [], "x86": False, "recorded": []}
    vnni = get_target("x86-vnni")
    got = _registered(vnni.tvm_target(), vnni.int8_kernel, tmp_path / "empty")
    assert got["intrins"] == ["dot_16x4_vnni"]
    # records tuned with a kernel need it registered to be applied, named or not
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "database_tuning_record.json").write_text(
        '[0, [[["SampleCategorical", ...], ["Tensorize", ["dot_16x4_avx2"]]]]]\n')
    got = _registered(get_target("x86-avx2").tvm_target(), None, tmp_path / "db")
    assert got["recorded"] == ["avx2"] and got["intrins"] == ["dot_16x4_avx2"]


# In a fresh process: which of TVM's tensor-intrinsic modules tuning a target imports.
INTRIN_MODULES = r"""
import json, sys
import tvm
from tvm.s_tir import TensorIntrin, meta_schedule as ms
from pose_tuner.compile.tuning import register_intrinsics
target = tvm.target.Target(json.loads(sys.argv[1]))
register_intrinsics(target, sys.argv[2] or None)
ms.TuneContext(target=target)  # imports tvm.s_tir.tensor_intrin, as every tuning does
import tvm.s_tir.tensor_intrin as package
loaded = sorted(m.rsplit(".", 1)[1] for m in sys.modules
                if m.startswith("tvm.s_tir.tensor_intrin."))
names = [v for m in loaded for k, v in vars(getattr(package, m)).items()
         if k.endswith("_INTRIN") and isinstance(v, str)]
for name in names:
    TensorIntrin.get(name)  # raises if not registered
print(json.dumps({"loaded": loaded, "intrinsics": len(names)}))
"""


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_tuning_imports_only_the_tensor_intrinsics_of_the_targets_architecture(name):
    """TVM's tensor_intrin package imports its intrinsics for every device (~20 s); tuning
    a target imports the modules its backend names, with their intrinsics registered."""
    import importlib.util

    hw = get_target(name)
    target = tvm.target.Target(hw.tvm_target())
    modules = backend_for(target).tensor_intrin_modules(target)
    assert modules, "every backend of ours names its modules"
    for m in modules:
        assert importlib.util.find_spec(f"tvm.s_tir.tensor_intrin.{m}") is not None, m
    got = _in_fresh_process(INTRIN_MODULES, json.dumps(hw.tvm_target()), hw.int8_kernel or "")
    # a module may import a helper of the package (arm_cpu: dot_product_common)
    assert set(modules) <= set(got["loaded"])
    assert not {"cuda", "x86", "arm_cpu", "rocm", "hexagon"} - set(modules) & set(got["loaded"])
    assert got["intrinsics"] > 0
