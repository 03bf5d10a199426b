import os
import sqlite3

import pytest

from pose_tuner.store.db import SCHEMA_VERSION, DatabaseError, ParetoDB
from pose_tuner.store.pareto import NoCandidate, best_under, pareto_front
from pose_tuner.store.records import CandidateRecord


def rec(**kw):
    base = dict(model_name="m", model_hash="h1", target="x86-vnni", backend="tvm",
                prune_ratio=0.0, quant="fp32", schedule="metaschedule", trials=64, status="ok",
                latency_median_ms=10.0, latency_p90_ms=11.0, model_size_bytes=1000)
    base.update(kw)
    return CandidateRecord(**base)


def test_upsert_replaces_the_same_point(tmp_path):
    db = ParetoDB(f"sqlite:///{tmp_path}/p.sqlite")
    a = db.upsert(rec(latency_median_ms=10.0))
    b = db.upsert(rec(latency_median_ms=8.0))
    assert a.id == b.id and a.created_at == b.created_at
    rows = db.records()
    assert len(rows) == 1 and rows[0].latency_median_ms == 8.0
    db.upsert(rec(trials=8))
    assert len(db.records(target="x86-vnni")) == 2
    assert db.find("h1", "x86-vnni", "tvm", 0.0, "fp32", "metaschedule", 8).trials == 8
    assert db.find("h1", "x86-vnni", "tvm", 0.0, "fp32", "default", 0) is None


def test_failed_record_keeps_its_error(tmp_path):
    db = ParetoDB(f"sqlite:///{tmp_path}/p.sqlite")
    db.upsert(rec(status="failed", error="boom", latency_median_ms=None))
    (r,) = db.records()
    assert not r.ok and r.error == "boom"


def test_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "p.sqlite"
    ParetoDB(f"sqlite:///{path}").upsert(rec())
    con = sqlite3.connect(path)
    con.execute("update meta set value=? where key='schema_version'", (str(SCHEMA_VERSION + 1),))
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match="newer than this"):
        ParetoDB(f"sqlite:///{path}")
    assert path.read_bytes() == before


def test_foreign_database_is_refused(tmp_path):
    path = tmp_path / "other.sqlite"
    con = sqlite3.connect(path)
    con.execute("create table users (id int)")
    con.commit()
    con.close()
    with pytest.raises(DatabaseError, match="not a pose-tuner database"):
        ParetoDB(f"sqlite:///{path}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_is_refused(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    with pytest.raises(DatabaseError, match="not writable"):
        ParetoDB(f"sqlite:///{d}/p.sqlite")


def test_unwritable_folder_is_refused_even_for_root(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(DatabaseError, match="cannot create the database folder"):
        ParetoDB(f"sqlite:///{f}/sub/p.sqlite")


def test_pareto_front_latency_ap_size():
    rs = [rec(id=1, latency_median_ms=10, ap=0.7), rec(id=2, latency_median_ms=5, ap=0.6),
          rec(id=3, latency_median_ms=12, ap=0.65), rec(id=4, latency_median_ms=4, ap=0.5),
          rec(id=5, status="failed", latency_median_ms=None)]
    assert [r.id for r in pareto_front(rs)] == [4, 2, 1]


def test_pareto_front_without_ap_uses_latency_and_size():
    rs = [rec(id=1, latency_median_ms=10, model_size_bytes=100),
          rec(id=2, latency_median_ms=5, model_size_bytes=200),
          rec(id=3, latency_median_ms=6, model_size_bytes=300)]
    assert [r.id for r in pareto_front(rs)] == [2, 1]


def test_emulated_latencies_never_mix_with_real_ones():
    rs = [rec(id=1, latency_median_ms=10), rec(id=2, latency_median_ms=1, emulated=True)]
    assert [r.id for r in pareto_front(rs)] == [1]
    assert best_under(rs).id == 1 and best_under(rs, max_latency_ms=20).id == 1
    with pytest.raises(NoCandidate, match="fastest has 10.00 ms"):
        best_under(rs, max_latency_ms=5)
    assert best_under(rs[1:]).id == 2  # emulated rows only: they are what there is


def test_table_says_which_rows_are_emulated():
    from pose_tuner.store.report import table
    assert "device" not in table([rec(id=1)]).splitlines()[0]
    lines = table([rec(id=1), rec(id=2, emulated=True)]).splitlines()
    assert lines[0].split()[-1] == "device"
    assert lines[2].split()[-1] == "real" and lines[3].split()[-1] == "emulated"


def test_best_under_constraints():
    rs = [rec(id=1, latency_median_ms=10, ap=0.7), rec(id=2, latency_median_ms=5, ap=0.6),
          rec(id=3, latency_median_ms=4, ap=0.5)]
    assert best_under(rs, max_latency_ms=6).id == 2
    assert best_under(rs, min_ap=0.55).id == 2
    assert best_under(rs).id == 3
    with pytest.raises(NoCandidate, match="fastest has 4.00 ms"):
        best_under(rs, max_latency_ms=1)
    with pytest.raises(NoCandidate, match="no candidate has a measured accuracy"):
        best_under([rec()], min_ap=0.5)


def test_variants_are_distinct_points(tmp_path):
    db = ParetoDB(f"sqlite:///{tmp_path}/p.sqlite")
    db.upsert(rec(prune_ratio=0.5, variant="l1-r8-ft0", finetune_steps=0))
    db.upsert(rec(prune_ratio=0.5, variant="l1-r8-ft200", finetune_steps=200))
    assert len(db.records()) == 2
    r = db.find("h1", "x86-vnni", "tvm", 0.5, "fp32", "metaschedule", 64, "l1-r8-ft200")
    assert r.finetune_steps == 200


def test_v1_database_is_migrated_keeping_rows(tmp_path):
    """A schema-v1 file (no variant / finetune_steps columns) opens as v2 with its rows."""
    path = tmp_path / "v1.sqlite"
    con = sqlite3.connect(path)
    con.execute("create table meta (key varchar(64) primary key, value varchar(256) not null)")
    con.execute("insert into meta values ('schema_version', '1')")
    con.execute("""create table candidates (id integer primary key autoincrement,
        model_name varchar(128) not null, model_hash varchar(64) not null, target varchar(64) not null,
        backend varchar(32) not null, prune_ratio float not null, quant varchar(16) not null,
        schedule varchar(32) not null, trials integer not null, status varchar(16) not null,
        latency_median_ms float, created_at varchar(40),
        constraint uq_point unique (model_hash, target, backend, prune_ratio, quant, schedule, trials))""")
    con.execute("""insert into candidates (model_name, model_hash, target, backend, prune_ratio,
        quant, schedule, trials, status, latency_median_ms, created_at)
        values ('m', 'h1', 'x86-vnni', 'tvm', 0.0, 'fp32', 'default', 0, 'ok', 12.5, 'then')""")
    con.commit()
    con.close()
    db = ParetoDB(f"sqlite:///{path}")
    (r,) = db.records()
    assert r.id == 1 and r.latency_median_ms == 12.5 and r.variant == "" and r.created_at == "then"
    assert db.find("h1", "x86-vnni", "tvm", 0.0, "fp32", "default", 0) is not None
    con = sqlite3.connect(path)
    assert con.execute("select value from meta").fetchone()[0] == str(SCHEMA_VERSION)
    con.close()


@pytest.mark.parametrize("version", [2, 3, 4, 5])
def test_older_database_gains_the_new_columns_and_nightly_tables(tmp_path, version):
    path = tmp_path / f"v{version}.sqlite"
    db = ParetoDB(f"sqlite:///{path}")
    db.upsert(rec(latency_median_ms=7.0))
    # failures as older releases stored them: a message only
    db.upsert(rec(trials=4, status="failed", error="RPCError: no device under key 'k'"))
    db.upsert(rec(trials=16, status="failed", error="NumericalMismatch: rel err 0.3"))
    db.upsert(rec(quant="int8", status="skipped", error="target t does not run int8"))
    db.close()
    con = sqlite3.connect(path)  # make it what that pose-tuner wrote
    v6 = ("fps", "latency_noisy", "timing_conditions", "peak_memory_mb")
    dropped = {2: ("target_json", "device", "cleaned_hash", "error_kind"),
               3: ("cleaned_hash", "error_kind"), 4: ("error_kind",), 5: ()}[version] + v6
    for col in dropped:
        con.execute(f"alter table candidates drop column {col}")
    if version > 2:
        for col in ("latency_noisy", "peak_memory_mb"):
            con.execute(f"alter table work_items drop column {col}")
    if version == 2:
        con.execute("drop table work_items")
        con.execute("drop table nightly_runs")
    con.execute(f"update meta set value='{version}'")
    con.commit()
    con.close()
    db = ParetoDB(f"sqlite:///{path}")
    kinds = {(r.trials, r.quant): r.error_kind for r in db.records()}
    assert kinds == {(64, "fp32"): None, (4, "fp32"): "device_lost",
                     (16, "fp32"): "numerical_mismatch", (64, "int8"): "refused"}
    r = db.find("h1", "x86-vnni", "tvm", 0.0, "fp32", "metaschedule", 64)
    assert r.latency_median_ms == 7.0 and r.device is None and r.cleaned_hash is None
    assert r.fps == pytest.approx(1000 / 7.0) and r.peak_memory_mb is None
    assert r.latency_noisy is None
    db.upsert(rec(trials=8, device="host / cpu", target_json='{"kind": "llvm"}',
                  cleaned_hash="c0ffee", status="failed", error="x", error_kind="timeout"))
    new = db.find("h1", "x86-vnni", "tvm", 0.0, "fp32", "metaschedule", 8)
    assert new.device == "host / cpu" and new.cleaned_hash == "c0ffee"
    assert new.error_kind == "timeout"
    con = sqlite3.connect(path)
    assert con.execute("select value from meta").fetchone()[0] == str(SCHEMA_VERSION) == "6"
    assert "peak_memory_mb" in {r[1] for r in con.execute("pragma table_info(work_items)")}
    assert con.execute("select count(*) from work_items").fetchone() == (0,)
    con.close()


def test_front_ignores_points_without_a_measured_accuracy():
    """A latency-only row (AP None) neither joins nor hides the accuracy front."""
    a = rec(id=1, latency_median_ms=10.0, ap=0.5)
    b = rec(id=2, latency_median_ms=20.0, ap=0.6)
    c = rec(id=3, latency_median_ms=5.0, ap=None)
    assert {r.id for r in pareto_front([a, b, c])} == {1, 2}
    assert {r.id for r in pareto_front([c])} == {3}


def test_best_under_a_memory_cap():
    a = rec(id=1, trials=1, latency_median_ms=5.0, ap=0.5, peak_memory_mb=90.0)
    b = rec(id=2, trials=2, latency_median_ms=8.0, ap=0.5, peak_memory_mb=30.0)
    assert best_under([a, b]).id == 1
    assert best_under([a, b], max_memory_mb=50).id == 2
    with pytest.raises(NoCandidate, match="no candidate meets"):
        best_under([a, b], max_memory_mb=10)
    old = rec(id=3, latency_median_ms=5.0, ap=0.5)
    with pytest.raises(NoCandidate, match="no candidate has a measured peak memory"):
        best_under([old], max_memory_mb=100)


def test_noisy_figures_are_stored_with_their_conditions(tmp_path):
    db = ParetoDB(f"sqlite:///{tmp_path / 'n.sqlite'}")
    r = db.upsert(rec(latency_noisy=True, timing_conditions='{"others_cpu": 0.6}', fps=100.0,
                      peak_memory_mb=12.5))
    back = db.find("h1", "x86-vnni", "tvm", 0.0, "fp32", "metaschedule", 64)
    assert back.id == r.id and back.latency_noisy is True and back.peak_memory_mb == 12.5
    assert back.timing_conditions == '{"others_cpu": 0.6}' and back.fps == 100.0
