"""The x86 family: ISA levels from CPU features, the PTUNER_HOST_ISA switch, the x86
alias, and what targets refuse. Detection is replaced by fixed feature sets, so these
tests say the same on every CPU."""

import pytest

from pose_tuner.hardware import TargetUnavailable, get_target
from pose_tuner.hardware import cpu_isa

AVX2_HOST = ("zen3", frozenset({"avx2", "fma", "sse4_2"}))
VNNI_HOST = ("cascadelake", frozenset({"avx2", "fma", "avx512f", "avx512bw", "avx512dq",
                                       "avx512vl", "avx512_vnni"}))
ADL_HOST = ("alderlake", frozenset({"avx2", "fma", "avx_vnni"}))


@pytest.fixture
def host(monkeypatch):
    def use(detected, isa=None):
        monkeypatch.setattr(cpu_isa, "_detected", lambda: detected)
        if isa is None:
            monkeypatch.delenv(cpu_isa.HOST_ISA_ENV, raising=False)
        else:
            monkeypatch.setenv(cpu_isa.HOST_ISA_ENV, isa)
    return use


@pytest.mark.parametrize("detected, levels, alias", [
    (AVX2_HOST, ("avx2",), "x86-avx2"),
    (VNNI_HOST, ("vnni", "avx512", "avx2"), "x86-vnni"),
    (ADL_HOST, ("avxvnni", "avx2"), "x86-avxvnni"),
])
def test_levels_and_the_alias_follow_the_features(host, detected, levels, alias):
    host(detected)
    assert cpu_isa.host_isa().levels == levels
    assert get_target("x86").name == alias
    get_target(alias).check_available()


def test_host_isa_switch_makes_a_vnni_host_look_like_avx2(host):
    host(VNNI_HOST, "avx2")
    isa = cpu_isa.host_isa()
    assert isa.levels == ("avx2",) and "PTUNER_HOST_ISA=avx2" in isa.explain()
    assert get_target("x86").name == "x86-avx2"
    with pytest.raises(TargetUnavailable, match="use --target x86-avx2"):
        get_target("x86-vnni").check_available()
    host(VNNI_HOST, "avx512")
    assert cpu_isa.host_isa().levels == ("avx512", "avx2")


def test_a_member_narrower_than_the_cpu_asks_other_stacks_to_hold_to_its_isa(host):
    # the CPU's own flags decide, not PTUNER_HOST_ISA: vendor stacks read those flags
    host(VNNI_HOST, "avx2")
    assert get_target("x86").isa_below_host() == "avx2"
    assert get_target("x86-avx512").isa_below_host() == "avx512"
    host(VNNI_HOST)
    assert get_target("x86").isa_below_host() is None
    host(AVX2_HOST)
    assert get_target("x86-avx2").isa_below_host() is None
    assert get_target("x86-vnni").isa_below_host() is None  # not runnable here at all
    assert get_target("rasp4b").isa_below_host() is None


def test_host_isa_switch_refuses_unknown_values_and_bigger_hosts(host):
    host(AVX2_HOST, "sse")
    with pytest.raises(TargetUnavailable, match="allowed values: avx2, avx512, avxvnni, vnni"):
        get_target("x86")
    host(AVX2_HOST, "vnni")
    with pytest.raises(TargetUnavailable, match="asks for more than this CPU has"):
        get_target("x86-avx2").check_available()


def test_a_host_without_avx2_has_no_x86_target(host):
    host(("x86_64", frozenset({"sse4_2"})))
    with pytest.raises(TargetUnavailable, match="needs an x86-64 CPU with AVX2"):
        get_target("x86")
    with pytest.raises(TargetUnavailable, match="no x86 target runs here"):
        get_target("x86-avx2").check_available()


def test_targets_refuse_modes_they_do_not_run():
    from dataclasses import replace

    t = replace(get_target("x86-avx2"), quant_modes=("fp32", "int8"))
    assert t.refusal("int8") is None
    assert "does not run fp16" in t.refusal("fp16")


def test_search_space_drops_points_the_target_refuses():
    from dataclasses import replace

    from pose_tuner.search.space import SearchPoint
    from pose_tuner.search.loop import runnable_points

    t = replace(get_target("x86-avx2"), quant_modes=("fp32",))
    said = []
    points = [SearchPoint(0.0, q, "default", 0) for q in ("fp32", "int8")]
    assert runnable_points(points, t, said.append) == points[:1]
    assert said == ["search space: 1 candidate(s) dropped: target x86-avx2 does not run int8 "
                    "(it runs fp32)"]


def test_cli_refuses_a_bad_host_isa_value_in_one_line(host, capsys, tmp_path):
    from pose_tuner.cli import main

    host(AVX2_HOST, "avx1024")
    assert main(["search", "--target", "x86", "--log-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "allowed values: avx2, avx512, avxvnni, vnni" in err[0]


def test_levels_come_from_the_host_flags_not_the_named_microarchitecture(monkeypatch):
    """A Zen 4 VM that hides rdseed is named the generic x86_64_v4 by archspec, whose
    feature list has no AVX-512 VNNI; the host's own flags have it, and they decide."""
    import archspec.cpu
    from archspec.cpu import detect

    generic = archspec.cpu.TARGETS["x86_64_v4"]
    assert "avx512_vnni" not in generic.features
    raw = detect.Microarchitecture("zen4-vm", [], "AuthenticAMD",
                                   set(VNNI_HOST[1]) | {"avx_vnni", "avx512_bf16"}, {})
    monkeypatch.setattr(archspec.cpu, "host", lambda: generic)
    monkeypatch.setattr(detect, "detected_info", lambda: raw)
    monkeypatch.delenv(cpu_isa.HOST_ISA_ENV, raising=False)
    cpu_isa._detected.cache_clear()
    try:
        isa = cpu_isa.host_isa()
        assert isa.microarchitecture == "x86_64_v4"
        assert isa.levels == ("vnni", "avx512", "avxvnni", "avx2")
        assert "avx512_bf16" in cpu_isa.host_features()
    finally:
        cpu_isa._detected.cache_clear()
