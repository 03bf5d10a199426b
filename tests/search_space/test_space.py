import pytest

from search_space import SearchPoint, SearchSpace, SearchSpaceError, parse_schedule


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
    with pytest.raises(SearchSpaceError, match="not supported yet"):
        SearchSpace(quant_modes=("int8",))
