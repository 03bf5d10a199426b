import pytest

from pose_tuner.search import (DEFAULT_SPACE_FILE, SearchPoint, SearchSpace, SearchSpaceError,
                          load_space, parse_schedule)


def test_parse_schedule():
    assert parse_schedule("default") == ("default", 0)
    assert parse_schedule("metaschedule:64") == ("metaschedule", 64)
    assert parse_schedule("ms:8") == ("metaschedule", 8)
    for bad in ("metaschedule:0", "metaschedule:x", "autotvm:10", "ms:-1"):
        with pytest.raises(SearchSpaceError):
            parse_schedule(bad)


def test_points_cheapest_first_and_deduplicated():
    space = SearchSpace(schedules=(("metaschedule", 64), ("default", 0), ("metaschedule", 8),
                                   ("default", 0)))
    pts = space.points()
    assert [p.schedule_label for p in pts] == ["default", "metaschedule:8", "metaschedule:64"]
    assert pts[1].key == "p0.00-fp32-ms8"


def test_invalid_points_and_spaces():
    with pytest.raises(SearchSpaceError):
        SearchPoint(schedule="metaschedule", trials=0)
    with pytest.raises(SearchSpaceError):
        SearchPoint(schedule="default", trials=5)
    with pytest.raises(SearchSpaceError):
        SearchPoint(quant="int4", schedule="default")
    with pytest.raises(SearchSpaceError):
        SearchSpace(schedules=())
    with pytest.raises(SearchSpaceError, match="unknown quantization"):
        SearchSpace(quant_modes=("int4",))


def test_default_space_file_is_the_joint_space():
    space = load_space()
    assert load_space(DEFAULT_SPACE_FILE) == space
    assert len(space.prune_ratios) > 1 and {"fp32", "int8"} <= set(space.quant_modes)
    assert ("default", 0) in space.schedules
    assert any(m == "metaschedule" for m, _ in space.schedules)
    # the file round-trips through to_dict
    assert SearchSpace.from_dict(space.to_dict()) == space


def test_space_file_options_and_variant_tags(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text("""
[pruning]
ratios = [0, 0.3]
importance = "group_norm"
round_to = 16
finetune_steps = 20
[quantization]
modes = ["fp32", "int8"]
calibration = "percentile"
calibration_images = 8
[schedule]
options = ["metaschedule:32"]
""")
    space = load_space(f)
    assert space.prune_ratios == (0.0, 0.3)
    assert space.schedules == (("metaschedule", 32),)
    pts = space.points()
    assert len(pts) == 4
    tags = {(p.prune_ratio, p.quant): space.variant_tag(p) for p in pts}
    assert tags[(0.0, "fp32")] == ""
    assert tags[(0.3, "fp32")] == "group_norm-r16-ft20"
    assert tags[(0.0, "int8")] == "percentile-n8"
    assert tags[(0.3, "int8")] == "group_norm-r16-ft20/percentile-n8"
    over = space.with_dimensions(quant_modes=["fp16"])
    assert over.quant_modes == ("fp16",) and over.pruning == space.pruning


@pytest.mark.parametrize("text,match", [
    ("[pruning]\nratios = [1.5]", "pruning ratio"),
    ("[pruning]\nimportance = 'random'", "importance"),
    ("[quantization]\ncalibration = 'magic'", "calibration"),
    ("[schedule]\noptions = ['autotvm:5']", "unknown schedule"),
    ("[tuning]\nx = 1", "unknown section"),
    ("[pruning]\nratio = [0.1]", "unknown key"),
    ("[pruning\n", "not valid TOML"),
])
def test_bad_space_files(tmp_path, text, match):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(SearchSpaceError, match=match):
        load_space(f)
    with pytest.raises(SearchSpaceError, match="does not exist"):
        load_space(tmp_path / "missing.toml")
