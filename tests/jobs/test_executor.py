import time

from pose_tuner.jobs.executor import run_in_child, run_on_device

CHILD = "tests.jobs.crashing_child"


def test_child_result_and_progress(tmp_path):
    lines = []
    r = run_in_child({"do": "ok"}, 60, str(tmp_path / "c.log"), lines.append, module=CHILD)
    assert r == {"status": "ok", "value": 42}
    assert lines == ["started"]


def test_segfault_becomes_a_failed_result(tmp_path):
    r = run_in_child({"do": "segfault"}, 60, str(tmp_path / "c.log"), module=CHILD)
    assert r["status"] == "failed" and "SIGSEGV" in r["error"]


def test_timeout_kills_the_child(tmp_path):
    t = time.time()
    r = run_in_child({"do": "hang"}, 2, str(tmp_path / "c.log"), module=CHILD)
    assert r["status"] == "failed" and "timed out after 2 s" in r["error"]
    assert time.time() - t < 30


def test_nonzero_exit_is_reported(tmp_path):
    r = run_in_child({"do": "exit"}, 60, str(tmp_path / "c.log"), module=CHILD)
    assert r["status"] == "failed" and "exited with code 3" in r["error"]


def test_a_dropped_device_is_retried_once(tmp_path):
    drops = tmp_path / "drops"
    said = []
    spec = {"do": "drop", "drops": str(drops), "rpc": {"tracker": "h:9190", "key": "k"}}
    drops.write_text("1")
    r = run_on_device(spec, 60, str(tmp_path / "c.log"), on_retry=said.append, module=CHILD)
    assert r["status"] == "ok" and len(said) == 1 and "retrying once" in said[0]
    drops.write_text("2")  # dropped again on the retry: that run fails, no third try
    r = run_on_device(spec, 60, str(tmp_path / "c.log"), module=CHILD)
    assert r["status"] == "failed" and drops.read_text() == "0"
    drops.write_text("1")  # a local run (no "rpc") is not retried
    local = {k: v for k, v in spec.items() if k != "rpc"}
    r = run_on_device(local, 60, str(tmp_path / "c.log"), module=CHILD)
    assert r["status"] == "failed" and drops.read_text() == "0"
