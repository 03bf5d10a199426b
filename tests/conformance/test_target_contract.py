"""Every registered hardware target (``pose_tuner.hardware.TARGETS``) keeps the ``Target``
contract of :mod:`pose_tuner.hardware.base`. Parametrised from the registry itself, so a
newly registered target is checked by tests it did not write. A target class with a
``tracker`` option is checked both as it comes and configured with a tracker (an address
of TEST-NET-1, which nothing answers: checks that must not touch the network would hang
or fail there). Nothing here depends on this host's CPU or GPU."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest

from pose_tuner.baselines import BASELINES
from pose_tuner.hardware import TARGETS, Target, TargetUnavailable, get_target
from pose_tuner.hardware.x86 import HOST_ALIAS, members
from pose_tuner.search import QUANT_MODES

from tests.conformance._helpers import finishes

#: TEST-NET-1 (RFC 5737): never routed, so a connection attempt would hang, not fail
TRACKER = "192.0.2.1:9190"

#: the device kinds of the contract and the TVM target kind each builds for
KIND_OF_DEVICE = {"cpu": "llvm", "cuda": "cuda"}

NAMES = list(TARGETS)


def _instances():
    for name, cls in TARGETS.items():
        yield pytest.param(cls(), id=name)
        if "tracker" in cls.__dataclass_fields__:
            yield pytest.param(cls(tracker=TRACKER), id=f"{name}+tracker")


INSTANCES = list(_instances())


@pytest.fixture(autouse=True)
def no_tracker_in_env(monkeypatch):
    """A remote target without a tracker must fail fast, not find one in the environment."""
    monkeypatch.delenv("TVM_TRACKER_HOST", raising=False)
    monkeypatch.delenv("TVM_TRACKER_PORT", raising=False)


def _tracker(target) -> str | None:
    return getattr(target, "tracker", None)


# --- the registry ---------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_registered_under_its_own_nonempty_name(name):
    cls = TARGETS[name]
    assert issubclass(cls, Target)
    t = cls()
    assert t.name == name and name.strip() == name and name
    assert name != HOST_ALIAS, f"{HOST_ALIAS!r} is the host alias, not a target name"
    assert isinstance(t.description, str) and t.description.strip()
    assert get_target(name) == t
    # what the search passes for options the user did not give: ignored, not an error
    assert get_target(name, tracker=None, rpc_key=None, arch=None) == t


def test_target_names_are_unique():
    """Registry keys hide a clash (the later class wins), so compare the classes' names."""
    classes = [*members(), *(c for c in TARGETS.values() if c not in members())]
    names = [c().name for c in classes]
    assert len(names) == len(set(names)), names
    assert all(TARGETS[c().name] is c for c in classes)


# --- a description --------------------------------------------------------------------

@pytest.mark.parametrize("target", INSTANCES)
def test_is_a_hashable_frozen_dataclass(target):
    cls = type(target)
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.name = "other"  # type: ignore[misc]
    assert hash(target) == hash(dataclasses.replace(target))
    assert dataclasses.replace(target) == target


@pytest.mark.parametrize("target", INSTANCES)
def test_describe_is_json_with_the_declared_fields(target):
    d = target.describe()
    assert json.loads(json.dumps(d)) == d
    declared = {
        "name": target.name, "description": target.description, "remote": target.remote,
        "device": target.device, "baselines": list(target.baselines),
        "quant_modes": list(target.quant_modes), "int8_kernel": target.int8_kernel,
        "int8_weight_bits": target.int8_weight_bits, "tvm_target": target.tvm_target(),
    }
    assert {k: d.get(k, "<missing>") for k in declared} == declared


@pytest.mark.parametrize("target", INSTANCES)
def test_tvm_target_is_a_json_dict_tvm_accepts_of_the_device_kind(target):
    tvm = pytest.importorskip("tvm")
    assert target.device in KIND_OF_DEVICE, f"device {target.device!r} is not cpu or cuda"
    d = target.tvm_target()
    assert isinstance(d, dict)
    assert json.loads(json.dumps(d)) == d
    assert tvm.target.Target(d).kind.name == KIND_OF_DEVICE[target.device]


@pytest.mark.parametrize("target", INSTANCES)
def test_baselines_are_registered_baselines(target):
    assert isinstance(target.baselines, tuple)
    assert len(set(target.baselines)) == len(target.baselines)
    assert set(target.baselines) <= set(BASELINES), set(target.baselines) - set(BASELINES)


@pytest.mark.parametrize("target", INSTANCES)
def test_quant_modes_are_the_spaces_and_refusal_names_the_target(target):
    modes = target.quant_modes
    assert isinstance(modes, tuple) and modes and len(set(modes)) == len(modes)
    assert set(modes) <= set(QUANT_MODES), set(modes) - set(QUANT_MODES)
    for q in modes:
        assert target.refusal(q) is None, q
    for q in [*(m for m in QUANT_MODES if m not in modes), "int4"]:
        reason = target.refusal(q)
        assert isinstance(reason, str) and target.name in reason and q in reason, (q, reason)


@pytest.mark.parametrize("target", INSTANCES)
def test_int8_kernel_is_registered_and_exact_for_the_weight_bits(target):
    from pose_tuner.compile.kernels import KERNELS

    bits = target.int8_weight_bits
    assert isinstance(bits, int) and 2 <= bits <= 8
    if target.int8_kernel is None:
        return
    assert target.int8_kernel in KERNELS, f"{target.int8_kernel!r} is not in KERNELS"
    # the kernels are x86 LLVM intrinsics: a target naming one builds with LLVM for a CPU
    assert target.device == "cpu" and target.tvm_target()["kind"] == "llvm"
    assert bits <= KERNELS[target.int8_kernel].weight_bits


def _isa_targets():
    return [p for p in INSTANCES if getattr(p.values[0], "isa", None)]


@pytest.mark.parametrize("target", _isa_targets())
def test_mcpu_has_exactly_the_features_of_its_isa_level(target):
    """X86Target's contract: its CPU name has the level's features (so its kernel builds)
    and none that only a higher level adds (so its builds run on every CPU of the level)."""
    tvm = pytest.importorskip("tvm")
    from tvm.target import codegen

    from pose_tuner.hardware.cpu_isa import LEVELS

    def llvm(feature: str) -> str:  # archspec's avx512_vnni is LLVM's avx512vnni
        return feature.replace("_", "")

    assert target.isa in LEVELS
    every = {llvm(f) for level in LEVELS.values() for f in level}
    has = set(codegen.llvm_get_cpu_features(tvm.target.Target(target.tvm_target())))
    assert has & every == {llvm(f) for f in LEVELS[target.isa]}


@pytest.mark.parametrize("target", INSTANCES)
def test_num_threads_is_a_positive_int(target):
    n = target.num_threads()
    assert isinstance(n, int) and n >= 1


# --- this machine and its devices -----------------------------------------------------

@pytest.mark.parametrize("target", INSTANCES)
def test_check_available_passes_or_says_why_and_never_hangs(target):
    """Checked without the network: with a tracker nothing answers it returns at once."""
    try:
        finishes(target.check_available, timeout_s=15)
    except TargetUnavailable as exc:
        assert str(exc).strip()


@pytest.mark.parametrize("target", INSTANCES)
def test_rpc_spec_is_none_iff_local(target):
    if not target.remote:
        assert target.rpc_spec() is None
        return
    try:
        spec = finishes(target.rpc_spec, timeout_s=5)
    except TargetUnavailable as exc:
        # remote without a tracker: fails fast, before any work, with how to attach one
        assert _tracker(target) is None and str(exc).strip()
        with pytest.raises(TargetUnavailable):
            finishes(target.check_available, timeout_s=5)
        return
    assert spec is not None, "a remote target must say where its devices are"
    if _tracker(target) is not None:
        assert spec.tracker == _tracker(target)
    assert spec.device == target.device
    if hasattr(target, "rpc_key"):
        assert spec.key == target.rpc_key


@pytest.mark.parametrize("name", [n for n in NAMES if "tracker" in TARGETS[n].__dataclass_fields__])
def test_a_bad_tracker_address_is_target_unavailable(name):
    t = TARGETS[name](tracker="no-port-here")
    assert t.remote
    with pytest.raises(TargetUnavailable, match="no-port-here"):
        t.rpc_spec()
    with pytest.raises(TargetUnavailable):
        t.check_available()


@pytest.mark.parametrize("target", INSTANCES)
def test_attach_help_is_a_str_and_says_something_for_remote_targets(target):
    text = target.attach_help()
    assert isinstance(text, str)
    if target.remote:
        assert text.strip()


@pytest.mark.parametrize("target", INSTANCES)
def test_may_be_emulated_only_for_a_pool(target):
    assert isinstance(target.may_be_emulated, bool) and isinstance(target.remote, bool)
    if target.may_be_emulated:
        assert target.remote, "an emulation is a pool served from this machine"


@pytest.mark.parametrize("target", INSTANCES)
def test_device_identity_is_a_nonempty_str(target):
    """Local targets: always. Remote ones: with a tracker, without asking it."""
    if target.remote and _tracker(target) is None:
        pytest.skip("remote without a tracker: identity needs the pool (rpc_spec raises)")
    for emulated in (False, True) if target.may_be_emulated else (False,):
        ident = finishes(lambda e=emulated: target.device_identity(emulated=e), timeout_s=5)
        assert isinstance(ident, str) and ident.strip()


@pytest.mark.parametrize("target", INSTANCES)
def test_device_mismatch_is_none_or_a_message_naming_the_device(target):
    dev = SimpleNamespace(compute_version="5.0", device_type=1, exist=True)
    why = target.device_mismatch(dev, "the device under test")
    assert why is None or (isinstance(why, str) and "the device under test" in why)
