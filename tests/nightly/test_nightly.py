"""Nightly jobs end to end through the CLI, on a tiny model with a tiny budget: a second
night reuses everything and reports no change, a kill -9 mid-night resumes with nothing
lost, a planted regression (a heavier model under the same name) exits non-zero, and two
workers on one PostgreSQL database split the night's work."""

import glob
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

import pytest

from pose_tuner.cli import main
from pose_tuner.nightly import NightlyConfigError, load_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ZOO_JOB = """
[[jobs]]
model = "shufflenetv2_fpn"
target = "x86"
input_size = "64x64"
prune = [0.0]
quant = {quant}
schedules = ["default"]
[jobs.constraints]
max_latency_ms = 1000
"""


def write_config(tmp_path, job=ZOO_JOB.format(quant='["fp32"]'), extra="", defaults=""):
    path = tmp_path / "nightly.toml"
    path.write_text(f'name = "t"\nlog_dir = "{tmp_path / "logs"}"\n{extra}\n'
                    "[defaults]\nbaselines = false\naccuracy = false\nmeasure_budget_s = 0.3\n"
                    f"{defaults}\n{job}")
    return str(path)


def items(logs, night=None, db=None):
    con = sqlite3.connect(db or os.path.join(logs, "pareto.sqlite"))
    q = ("select r.night, i.kind, i.key, i.state, i.outcome, i.status, i.candidate_id, "
         "i.worker, i.latency_median_ms from work_items i join nightly_runs r on r.id = i.run_id")
    rows = con.execute(q + (" where r.night = ?" if night else "") + " order by i.id",
                       (night,) if night else ()).fetchall()
    con.close()
    return rows


def test_config_errors_name_the_file_and_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[jobs]]\nmodel = "m"\ntarget = "x86"\nspeed = 3\n')
    with pytest.raises(NightlyConfigError, match=r"jobs\[0\]: unknown key\(s\) speed"):
        load_config(str(bad))
    bad.write_text('name = "x"\n')
    with pytest.raises(NightlyConfigError, match="no jobs"):
        load_config(str(bad))
    bad.write_text('[[jobs]]\ntarget = "x86"\n')
    with pytest.raises(NightlyConfigError, match="'model' is required"):
        load_config(str(bad))
    bad.write_text('[[jobs]]\nmodel = "m"\ntarget = "t"\nquant = "fp32"\n')
    with pytest.raises(NightlyConfigError, match="must be a list"):
        load_config(str(bad))
    bad.write_text('[[jobs]]\nmodel = "m"\ntarget = "x86"\ncuda_arch = "sm_86"\n')
    with pytest.raises(NightlyConfigError, match="'cuda_arch' is for target cuda"):
        load_config(str(bad))
    bad.write_text('[[jobs]]\nmodel = "m"\ntarget = "cuda"\ncuda_arch = "sm_86"\n')
    assert load_config(str(bad)).jobs[0].cuda_arch == "sm_86"
    job = '[[jobs]]\nmodel = "m"\ntarget = "x86"\n'
    bad.write_text(f'[regression]\nnoisy_latency = 0.5\n{job}')
    assert load_config(str(bad)).noisy_latency_threshold == 0.5
    bad.write_text(f'[regression]\nnoisy_latency = 0\n{job}')
    with pytest.raises(NightlyConfigError, match="thresholds must be positive"):
        load_config(str(bad))
    bad.write_text(f'[regression]\nnoisy = 1\n{job}')
    with pytest.raises(NightlyConfigError, match="noisy_latency"):
        load_config(str(bad))
    assert main(["nightly", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "no nightly configuration at" in capsys.readouterr().err
    # the shipped example parses
    cfg = load_config(os.path.join(ROOT, "docs", "nightly.example.toml"))
    assert cfg.jobs[0].name == "shufflenetv2_fpn@x86"
    # where a worker keeps its files is not part of the night's identity
    a = write_config(tmp_path)
    digest = load_config(a).digest
    text = open(a).read().replace(str(tmp_path / "logs"), str(tmp_path / "other"))
    open(a, "w").write(text)
    assert load_config(a).digest == digest


def test_second_night_reuses_and_reports_no_change(tmp_path, capsys):
    logs = str(tmp_path / "logs")
    cfg = write_config(tmp_path, job=ZOO_JOB.format(quant='["fp32", "fp16"]'),
                       extra="[regression]\nlatency = 5.0\n", defaults="remeasure = 1")
    assert main(["nightly", "--config", cfg, "--night", "n1"]) == 0
    first = items(logs, "n1")
    assert [(k, s, o, st) for _, k, _, s, o, st, *_ in first] == [
        ("point", "done", "measured", "ok")] * 2
    assert main(["nightly", "--config", cfg, "--night", "n2"]) == 0
    out = capsys.readouterr().out
    assert "0 new or stale" in out and "No regression" in open(
        os.path.join(logs, "reports", "t", "n2", "report.md")).read()
    second = items(logs, "n2")
    assert [(k, o) for _, k, _, _, o, *_ in second] == [
        ("point", "reused"), ("point", "reused"), ("remeasure", "remeasured")]
    # the reused points are last night's rows, with the same figures
    assert [r[6] for r in second[:2]] == [r[6] for r in first]
    assert [r[8] for r in second[:2]] == [r[8] for r in first]
    assert second[2][5] == "ok" and second[2][8] > 0  # re-timed for real
    con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
    assert con.execute("select count(*) from candidates").fetchone() == (2,)
    # provenance of every point: TVM, tool, target JSON, device
    for tvm_v, tool, tj, dev in con.execute(
            "select tvm_version, tuner_version, target_json, device from candidates"):
        assert tvm_v and tool and json.loads(tj)["kind"] == "llvm" and dev
    con.close()
    html = open(os.path.join(logs, "reports", "t", "n2", "report.html")).read()
    assert html.startswith("<!doctype html>") and "p0.00-fp16-default" in html
    # the same night again: already finished, nothing runs
    assert main(["nightly", "--config", cfg, "--night", "n2"]) == 0
    assert "already finished" in capsys.readouterr().out


def test_kill_9_mid_night_resumes_without_losing_points(tmp_path):
    import psutil

    logs = str(tmp_path / "logs")
    cfg = write_config(tmp_path, job=ZOO_JOB.format(quant='["fp32", "fp16"]'),
                       defaults="remeasure = 0")
    cmd = [sys.executable, "-m", "pose_tuner.cli", "nightly", "--config", cfg, "--night", "k"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)
    seen, children = [], []
    for line in proc.stdout:
        seen.append(line)
        if "[2/2]" in line and "start" in line:  # the second point's child is starting
            time.sleep(1.5)
            children = psutil.Process(proc.pid).children(recursive=True)
            proc.kill()  # SIGKILL: no handler, no cleanup
            break
    proc.wait(30)
    assert children, "".join(seen)
    time.sleep(1.0)
    # the candidate process died with its parent
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    before = items(logs, "k")
    assert [(s, o) for _, _, _, s, o, *_ in before] == [("done", "measured"), ("claimed", None)]
    con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
    assert con.execute("select count(*), min(status) from candidates").fetchone() == (1, "ok")
    con.close()
    # the next run of the night takes the dead worker's item over and finishes
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "joined" in res.stdout and "finished: 0 regression(s)" in res.stdout
    after = items(logs, "k")
    assert [(s, o, st) for _, _, _, s, o, st, *_ in after] == [
        ("done", "measured", "ok"), ("done", "measured", "ok")]
    assert after[0][6:] == before[0][6:]  # the finished point was not touched
    con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
    assert con.execute("select count(*) from candidates").fetchone() == (2,)
    con.close()


def _heavy_onnx(path):
    """The tiny test model's interface (3x32x32 -> 5 heatmaps) with ~30x the work."""
    import torch

    torch.manual_seed(1)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(3, 96, 3, 1, 1), torch.nn.ReLU(),
        torch.nn.Conv2d(96, 96, 3, 1, 1), torch.nn.ReLU(),
        torch.nn.Conv2d(96, 96, 3, 1, 1), torch.nn.ReLU(),
        torch.nn.Conv2d(96, 5, 3, 2, 1)).eval()
    torch.onnx.export(m, (torch.randn(1, 3, 32, 32),), str(path), input_names=["input"],
                      output_names=["heatmaps"], opset_version=17, dynamo=False)


def test_planted_regression_exits_non_zero(tmp_path, tiny_onnx, capsys):
    logs = str(tmp_path / "logs")
    model = tmp_path / "pose.onnx"
    shutil.copy(tiny_onnx, model)
    job = (f'[[jobs]]\nmodel = "{model}"\ntarget = "x86"\nquant = ["fp32"]\n'
           'prune = [0.0]\nschedules = ["default"]\n')
    cfg = write_config(tmp_path, job=job, defaults="remeasure = 0")
    assert main(["nightly", "--config", cfg, "--night", "good"]) == 0
    _heavy_onnx(model)  # tonight's model is much slower: the same point regresses
    rc = main(["nightly", "--config", cfg, "--night", "bad"])
    out = capsys.readouterr().out
    assert rc == 3, out
    assert "REGRESSION" in out and "latency p0.00-fp32-default" in out
    md = open(os.path.join(logs, "reports", "t", "bad", "report.md")).read()
    assert "**1 regression(s)**" in md or "**2 regression(s)**" in md
    assert "**REGRESSION** latency `p0.00-fp32-default`" in md
    con = sqlite3.connect(os.path.join(logs, "pareto.sqlite"))
    assert con.execute("select night, regressions from nightly_runs order by id").fetchall()[0] \
        == ("good", 0)
    con.close()


# -- PostgreSQL: two workers split one night ---------------------------------------------
def _pg_bin(name):
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server (Debian's packages; `.ci/run` installs them)."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        if os.environ.get("PTUNER_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL server binaries not found (apt-get install postgresql)")
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg")
    base = tempfile.mkdtemp(prefix="ptuner-pg-")
    as_user = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(base, "data")
    subprocess.run(as_user + [initdb, "-D", data, "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    from pose_tuner.devices.emulator import free_port

    port = free_port()
    subprocess.run(as_user + [pg_ctl, "-D", data, "-l", os.path.join(base, "log"), "-w", "-o",
                              f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [pg_ctl, "-D", data, "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_on_postgres_split_the_night(tmp_path, postgres_url):
    import sqlalchemy as sa

    job = ZOO_JOB.format(quant='["fp32", "fp16"]').replace(
        "[jobs.constraints]", "baselines = true\n[jobs.constraints]")
    cfg = write_config(tmp_path, job=job, defaults="remeasure = 0")
    procs = []
    for w in ("worker-a", "worker-b"):  # each with its own files, like two machines
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "pose_tuner.cli", "nightly", "--config", cfg, "--night", "pg",
             "--db", postgres_url, "--worker", w, "--log-dir", str(tmp_path / w)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            env={**os.environ, "TVM_NUM_THREADS": "1"}))
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n----\n".join(outs)
    eng = sa.create_engine(postgres_url)
    with eng.connect() as conn:
        rows = conn.execute(sa.text(
            "select kind, key, state, worker, attempts from work_items order by id")).all()
        n_cand = conn.execute(sa.text("select count(*) from candidates")).scalar()
        runs = conn.execute(sa.text("select night, status from nightly_runs")).all()
    eng.dispose()
    assert runs == [("pg", "finished")]
    assert len(rows) == 2 + 5  # two points, five baselines of an x86 target
    assert all(state == "done" and attempts == 1 for _, _, state, _, attempts in rows), rows
    assert {w for *_, w, _ in rows} == {"worker-a", "worker-b"}, rows  # both took work
    assert n_cand == len(rows)  # every point and baseline measured once, no duplicates
    assert sum("finished: 0 regression(s)" in o for o in outs) == 1  # one report writer


def test_later_nights_refine_the_front_until_max_trials(tmp_path, tiny_onnx, capsys):
    """Not-yet-converged tuning gets the next night's spare budget: the front's
    MetaSchedule point is tuned again with twice the trials (reusing its records), and
    refinement stops at max_trials."""
    logs = str(tmp_path / "logs")
    job = (f'[[jobs]]\nmodel = "{tiny_onnx}"\ntarget = "x86"\nquant = ["fp32"]\n'
           'prune = [0.0]\nschedules = ["metaschedule:4"]\nmax_trials = 8\n'
           'converged_gain = -1.0\n')  # never converged by gain: max_trials ends it
    cfg = write_config(tmp_path, job=job, defaults="remeasure = 0",
                       extra="[regression]\nlatency = 5.0\n")
    for night in ("1", "2", "3"):
        assert main(["nightly", "--config", cfg, "--night", night]) == 0, capsys.readouterr()
    capsys.readouterr()
    got = {n: [(k, o, st) for n2, _, k, _, o, st, *_ in items(logs) if n2 == n]
           for n in ("1", "2", "3")}
    assert got["1"] == [("p0.00-fp32-ms4", "measured", "ok")]
    assert got["2"] == [("p0.00-fp32-ms4", "reused", "ok"),
                        ("p0.00-fp32-ms8", "measured", "ok")]
    assert got["3"] == [("p0.00-fp32-ms4", "reused", "ok"),
                        ("p0.00-fp32-ms8", "reused", "ok")]  # 16 > max_trials


def _item(key, ms, p90=None, ap=0.5, status="ok", kind="point", i=[0], **kw):
    i[0] += 1
    return dict(id=i[0], job="m@t", kind=kind, key=key, state="done", status=status,
                error=kw.get("error"), latency_median_ms=ms, latency_p90_ms=p90 or ms * 1.02,
                ap=ap, model_size_bytes=1000, model_hash="h", candidate_id=i[0],
                payload=json.dumps(kw.get("payload", {})), latency_noisy=kw.get("noisy"))


def test_regression_rules_on_two_nights():
    from pose_tuner.nightly.config import JobConfig, NightlyConfig
    from pose_tuner.nightly.report import compare_items, job_changes

    job = JobConfig(model="m", target="t", constraints=(("max_latency_ms", 5.0),))
    cfg = NightlyConfig(name="n", jobs=(job,))
    prev = [_item("a", 2.0), _item("b", 3.0, ap=0.50), _item("c", 4.0), _item("d", 1.0)]
    cur = [_item("a", 2.1),                  # +5 %: noise, not a regression
           _item("b", 3.0, ap=0.47),         # AP -0.03
           _item("c", 0, status="failed", error="boom"),
           _item("d", 1.5),                  # +50 % and above last p90
           _item("d", 1.3, kind="remeasure",
                 payload={"stored_median_ms": 1.0, "stored_p90_ms": 1.05})]
    got = {(c.key, c.what): c.regression for c in compare_items(cur, prev, cfg)}
    assert got == {("b", "ap"): True, ("c", "status"): True, ("d", "latency"): True,
                   ("d", "drift"): True}
    # best under a latency cap = most accurate: a more accurate, slower best is no regression
    prev = [_item("fast", 2.0, ap=0.49), _item("slow", 4.0, ap=0.49)]
    cur = [_item("fast", 2.0, ap=0.49), _item("slow", 4.0, ap=0.50), _item("new", 3.0, ap=0.55)]
    (best,) = [c for c in job_changes(job, cur, prev, cfg) if c.what == "best"]
    assert best.key == "new" and not best.regression
    cur = [_item("fast", 2.0, ap=0.40), _item("slow", 6.0, ap=0.49)]  # best now less accurate
    (best,) = [c for c in job_changes(job, cur, prev, cfg) if c.what == "best"]
    assert best.regression and "less accurate" in best.message


def test_noisy_latencies_count_only_beyond_the_noisy_threshold():
    from pose_tuner.nightly.config import JobConfig, NightlyConfig
    from pose_tuner.nightly.report import compare_items

    cfg = NightlyConfig(name="n", jobs=(JobConfig(model="m", target="t"),))
    assert cfg.noisy_latency_threshold == 1.0
    prev = [_item("a", 2.0), _item("b", 2.0, noisy=True), _item("c", 2.0),
            _item("d", 2.0, noisy=True)]
    cur = [_item("a", 3.0, noisy=True),      # +50 %, but timed on a busy machine tonight
           _item("b", 3.0),                  # the previous night's figure was the noisy one
           _item("c", 3.0),                  # a clean +50 %: a regression
           _item("c", 3.0, kind="remeasure", noisy=True, payload={"stored_median_ms": 2.0}),
           _item("d", 9.0),                  # 4.5x: more than a busy machine explains
           _item("d", 9.0, kind="remeasure", noisy=True, payload={"stored_median_ms": 2.0})]
    changes = compare_items(cur, prev, cfg)
    got = {(c.key, c.what, c.regression) for c in changes}
    assert got == {("a", "noisy", False), ("b", "noisy", False), ("c", "latency", True),
                   ("c", "noisy", False), ("d", "latency", True), ("d", "drift", True)}
    assert all("beyond the noisy threshold" in c.message for c in changes if c.key == "d")


def test_time_budget_skips_the_rest_and_the_next_night_continues(tmp_path, capsys):
    logs = str(tmp_path / "logs")
    cfg = write_config(tmp_path, job=ZOO_JOB.format(quant='["fp32", "fp16"]'),
                       defaults="remeasure = 0\ntime_budget_min = 0.002")  # ~0.1 s
    assert main(["nightly", "--config", cfg, "--night", "1"]) == 0
    md = open(os.path.join(logs, "reports", "t", "1", "report.md")).read()
    assert "### Failed and skipped" in md and "time budget of 0.002 min spent" in md
    assert [(s, o) for _, _, _, s, o, *_ in items(logs, "1")] == [("done", "measured"),
                                                                  ("skipped", None)]
    assert main(["nightly", "--config", cfg, "--night", "2"]) == 0  # picks up what was left
    assert [(s, o) for _, _, _, s, o, *_ in items(logs, "2")] == [("done", "reused"),
                                                                  ("done", "measured")]
