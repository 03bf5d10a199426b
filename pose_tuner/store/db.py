"""The Pareto database: every candidate and baseline measured, in SQL.

SQLite under ``logs/`` by default; any SQLAlchemy URL works (``postgresql://...`` for a
shared tuning farm). One row per (model hash, target, backend, pruning ratio,
quantization, schedule, trials, variant, target configuration): measuring the same point
again replaces its row (``--force``) rather than adding one.

Nightly jobs (:mod:`pose_tuner.nightly`) add two tables: ``nightly_runs`` (one row per
configuration name and night) and ``work_items`` (one row per thing a night does: a
point, a baseline or a re-measurement, with what it found), so nights can be compared
after candidate rows have been replaced.

The schema is versioned in the ``meta`` table; a database written by a newer version is
refused untouched.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable

from pose_tuner.store.records import CandidateRecord

SCHEMA_VERSION = 6
KEY_FIELDS = ("model_hash", "target", "backend", "prune_ratio", "quant", "schedule", "trials",
              "variant", "target_config")


class DatabaseError(RuntimeError):
    """The database cannot be used; the message says why and what to do."""


def default_url(log_dir: str) -> str:
    return "sqlite:///" + os.path.abspath(os.path.join(log_dir, "pareto.sqlite"))


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class ParetoDB:
    def __init__(self, url: str):
        import sqlalchemy as sa

        self.sa = sa
        self.url = url
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///"):]
            parent = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(parent, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot create the database folder {parent}: {exc.strerror}; "
                                    "pass --db or --log-dir with a writable place") from None
            if os.path.exists(path) and not os.access(path, os.W_OK):
                raise DatabaseError(f"database {path} is not writable; fix its permissions or pass --db")
            if not os.access(parent, os.W_OK):
                raise DatabaseError(f"database folder {parent} is not writable; pass --db or --log-dir")
        try:
            # SQLite: concurrent workers on one file wait for each other's short writes
            connect_args = {"timeout": 60} if url.startswith("sqlite") else {}
            self.engine = sa.create_engine(url, future=True, connect_args=connect_args)
        except Exception as exc:  # noqa: BLE001
            raise DatabaseError(f"bad database URL {url!r}: {exc}") from None
        md = sa.MetaData()
        self.meta = sa.Table(
            "meta", md,
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.String(256), nullable=False),
        )
        types = {
            "model_name": sa.String(128), "model_hash": sa.String(64), "target": sa.String(64),
            "cleaned_hash": sa.String(64),
            "backend": sa.String(32), "prune_ratio": sa.Float, "quant": sa.String(16),
            "schedule": sa.String(32), "trials": sa.Integer, "status": sa.String(16),
            "variant": sa.String(128), "finetune_steps": sa.Integer,
            "target_config": sa.String(64),
            "error": sa.Text, "error_kind": sa.String(32), "latency_noisy": sa.Boolean,
            "timing_conditions": sa.Text, "input_shape": sa.String(64), "latency_runs": sa.Integer,
            "model_size_bytes": sa.BigInteger, "param_count": sa.BigInteger,
            "artifact_path": sa.Text, "model_path": sa.Text,
            "accuracy_dataset": sa.String(200), "accuracy_people": sa.Integer, "emulated": sa.Boolean, "tune_trials_run": sa.Integer,
            "tvm_version": sa.String(64), "tuner_version": sa.String(64), "host": sa.String(128),
            "target_json": sa.Text, "device": sa.String(256),
            "created_at": sa.String(40), "updated_at": sa.String(40),
        }
        cols = [sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)]
        for name in CandidateRecord.field_names():
            if name != "id":
                cols.append(sa.Column(name, types.get(name, sa.Float),
                                      nullable=name not in KEY_FIELDS + ("status", "model_name")))
        self.candidates = sa.Table(
            "candidates", md, *cols, sa.UniqueConstraint(*KEY_FIELDS, name="uq_point")
        )
        self.runs = sa.Table(
            "nightly_runs", md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(128), nullable=False),
            sa.Column("night", sa.String(64), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),  # running | finished
            sa.Column("config_digest", sa.String(16), nullable=False),
            sa.Column("config_json", sa.Text, nullable=False),
            sa.Column("started_at", sa.String(40)), sa.Column("finished_at", sa.String(40)),
            sa.Column("tuner_version", sa.String(64)), sa.Column("tvm_version", sa.String(64)),
            sa.Column("regressions", sa.Integer), sa.Column("report_path", sa.Text),
            sa.UniqueConstraint("name", "night", name="uq_run"),
        )
        self.items = sa.Table(
            "work_items", md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("run_id", sa.Integer, sa.ForeignKey("nightly_runs.id"), nullable=False),
            sa.Column("job", sa.String(200), nullable=False),   # model@target
            sa.Column("kind", sa.String(16), nullable=False),   # point | baseline | remeasure
            sa.Column("key", sa.String(200), nullable=False),   # point key or baseline name
            sa.Column("priority", sa.Float, nullable=False),    # lower first
            sa.Column("payload", sa.Text, nullable=False),      # JSON: what to do
            # pending | claimed | done | skipped (time budget)
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("worker", sa.String(200)), sa.Column("attempts", sa.Integer, default=0),
            sa.Column("claimed_at", sa.Float), sa.Column("heartbeat_at", sa.Float),
            sa.Column("finished_at", sa.Float),
            # what the item found (a snapshot: candidate rows may be replaced later)
            sa.Column("outcome", sa.String(16)),  # measured | reused | remeasured
            sa.Column("candidate_id", sa.Integer), sa.Column("status", sa.String(16)),
            sa.Column("error", sa.Text), sa.Column("model_hash", sa.String(64)),
            sa.Column("latency_median_ms", sa.Float), sa.Column("latency_p90_ms", sa.Float),
            sa.Column("ap", sa.Float), sa.Column("model_size_bytes", sa.BigInteger),
            sa.Column("tvm_version", sa.String(64)), sa.Column("tuner_version", sa.String(64)),
            sa.Column("target_config", sa.String(64)), sa.Column("device", sa.String(256)),
            # v6: the latency was noisy (not compared), the artifact's peak memory
            sa.Column("latency_noisy", sa.Boolean), sa.Column("peak_memory_mb", sa.Float),
            sa.UniqueConstraint("run_id", "job", "kind", "key", name="uq_item"),
        )
        self._md = md
        self._init_schema()

    def _init_schema(self) -> None:
        sa = self.sa
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    # workers starting together on a fresh database create it once
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7202611)"))
                insp = sa.inspect(conn)
                if insp.has_table("meta"):
                    row = conn.execute(
                        sa.select(self.meta.c.value).where(self.meta.c.key == "schema_version")
                    ).first()
                    version = int(row[0]) if row else 0
                    if version > SCHEMA_VERSION:
                        raise DatabaseError(
                            f"database {self.url} has schema v{version}, newer than this "
                            f"pose-tuner (v{SCHEMA_VERSION}); upgrade pose-tuner or use another --db"
                        )
                    if version == 1:
                        self._migrate_v1(conn)
                    elif version in (2, 3, 4, 5):
                        self._add_columns(conn)
                    elif version < SCHEMA_VERSION:
                        raise DatabaseError(
                            f"database {self.url} has an unknown schema v{version}; "
                            "use another --db"
                        )
                elif insp.get_table_names():
                    raise DatabaseError(
                        f"{self.url} holds tables that are not a pose-tuner database; "
                        "use another --db"
                    )
                self._md.create_all(conn)
                if not conn.execute(sa.select(self.meta.c.value)).first():
                    conn.execute(self.meta.insert().values(key="schema_version",
                                                           value=str(SCHEMA_VERSION)))
        except DatabaseError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            raise DatabaseError(f"cannot open database {self.url}: {exc.__class__.__name__}: "
                                f"{str(exc).splitlines()[0]}") from None

    def _add_columns(self, conn) -> None:
        """v2 to v5 -> v6 by adding the columns they lack, NULL on old rows: v3's
        provenance columns ``target_json`` and ``device``, v4's ``cleaned_hash``, v5's
        ``error_kind`` (filled in for old failed rows: :func:`legacy_error_kind`), v6's
        ``fps`` (filled in), ``latency_noisy``, ``timing_conditions`` and
        ``peak_memory_mb``; the nightly tables (v3) are created by ``create_all``, and
        their v6 column ``latency_noisy`` added."""
        sa = self.sa
        have = {c["name"] for c in sa.inspect(conn).get_columns("candidates")}
        for name, typ in (("target_json", "TEXT"), ("device", "VARCHAR(256)"),
                          ("cleaned_hash", "VARCHAR(64)"), ("error_kind", "VARCHAR(32)"),
                          ("fps", "FLOAT"), ("latency_noisy", "BOOLEAN"),
                          ("timing_conditions", "TEXT"), ("peak_memory_mb", "FLOAT")):
            if name not in have:
                conn.execute(sa.text(f"ALTER TABLE candidates ADD COLUMN {name} {typ}"))
        if sa.inspect(conn).has_table("work_items"):
            items = {c["name"] for c in sa.inspect(conn).get_columns("work_items")}
            for name, typ in (("latency_noisy", "BOOLEAN"), ("peak_memory_mb", "FLOAT")):
                if name not in items:
                    conn.execute(sa.text(f"ALTER TABLE work_items ADD COLUMN {name} {typ}"))
        c = self.candidates.c
        conn.execute(self.candidates.update().where(c.latency_median_ms > 0, c.fps.is_(None))
                     .values(fps=1000.0 / c.latency_median_ms))
        self._fill_error_kinds(conn)
        self._set_version(conn)

    def _fill_error_kinds(self, conn) -> None:
        """Give the failed and skipped rows of an older database their error kind."""
        sa = self.sa
        c = self.candidates.c
        rows = conn.execute(sa.select(c.id, c.status, c.error).where(
            c.status != "ok", c.error_kind.is_(None))).all()
        for row_id, status, error in rows:
            conn.execute(self.candidates.update().where(c.id == row_id)
                         .values(error_kind=legacy_error_kind(status, error)))

    def _set_version(self, conn) -> None:
        conn.execute(self.meta.update().where(self.meta.c.key == "schema_version")
                     .values(value=str(SCHEMA_VERSION)))

    def _migrate_v1(self, conn) -> None:
        """v1 -> v5: the ``variant`` and ``target_config`` key columns and ``finetune_steps``
        (rows keep their ids; v1 rows are plain-model points: variant '', target config
        unknown (''), not fine-tuned), and the later columns (NULL)."""
        sa = self.sa
        old = sa.Table("candidates", sa.MetaData(), autoload_with=conn)
        rows = [dict(r._mapping) for r in conn.execute(sa.select(old))]
        old.drop(conn)
        self.candidates.create(conn)
        for r in rows:
            if r.get("status") != "ok":
                r["error_kind"] = legacy_error_kind(r.get("status"), r.get("error"))
            r.setdefault("variant", "")
            r.setdefault("target_config", "")
            r.setdefault("finetune_steps", 0 if r.get("prune_ratio") else None)
            conn.execute(self.candidates.insert().values(
                **{k: v for k, v in r.items() if k in self.candidates.c}))
        self._set_version(conn)

    # -- queries ---------------------------------------------------------------
    def _row_to_record(self, row) -> CandidateRecord:
        d = dict(row._mapping)
        d["emulated"] = bool(d.get("emulated"))
        return CandidateRecord(**d)

    def find(self, model_hash: str, target: str, backend: str, prune_ratio: float,
             quant: str, schedule: str, trials: int, variant: str = "",
             target_config: str = "") -> CandidateRecord | None:
        c = self.candidates.c
        q = self.sa.select(self.candidates).where(
            c.model_hash == model_hash, c.target == target, c.backend == backend,
            c.prune_ratio == prune_ratio, c.quant == quant, c.schedule == schedule,
            c.trials == trials, c.variant == variant, c.target_config == target_config,
        )
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return self._row_to_record(row) if row else None

    def get(self, record_id: int) -> CandidateRecord | None:
        q = self.sa.select(self.candidates).where(self.candidates.c.id == record_id)
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        return self._row_to_record(row) if row else None

    def upsert(self, rec: CandidateRecord) -> CandidateRecord:
        """Insert the record, or replace the row of the same point; returns it with its id."""
        values = {k: v for k, v in rec.as_dict().items() if k != "id"}
        now = _now()
        values["updated_at"] = now
        key = {k: values[k] for k in KEY_FIELDS}
        c = self.candidates.c
        with self.engine.begin() as conn:
            existing = conn.execute(
                self.sa.select(c.id, c.created_at).where(*[c[k] == v for k, v in key.items()])
            ).first()
            if existing:
                values["created_at"] = existing.created_at or now
                conn.execute(self.candidates.update().where(c.id == existing.id).values(**values))
                rid = existing.id
            else:
                values["created_at"] = values.get("created_at") or now
                rid = conn.execute(self.candidates.insert().values(**values)).inserted_primary_key[0]
        return CandidateRecord(**{**values, "id": rid})

    def records(self, target: str | None = None, model_hash: str | None = None,
                model_name: str | None = None, status: str | None = None,
                backends: Iterable[str] | None = None) -> list[CandidateRecord]:
        c = self.candidates.c
        q = self.sa.select(self.candidates).order_by(c.id)
        if target:
            q = q.where(c.target == target)
        if model_hash:
            q = q.where(c.model_hash == model_hash)
        if model_name:
            q = q.where(c.model_name == model_name)
        if status:
            q = q.where(c.status == status)
        if backends is not None:
            q = q.where(c.backend.in_(list(backends)))
        with self.engine.connect() as conn:
            return [self._row_to_record(r) for r in conn.execute(q)]

    def close(self) -> None:
        self.engine.dispose()


#: how releases before schema v5 worded each kind of failure (read once, when an older
#: database is migrated; nothing reads messages afterwards)
_LEGACY_WORDING = (
    ("timed out after", "timeout"),
    ("candidate process", "crash"),
    ("numericalmismatch", "numerical_mismatch"),
    ("pruning:", "variant"),
    ("accuracy:", "accuracy"),
    ("tuning measured none", "tuning"),
    ("rpcerror", "device_lost"), ("rpc session", "device_lost"), ("rpccode", "device_lost"),
    ("connection", "device_lost"), ("socket", "device_lost"),
    ("session timeout", "device_lost"), ("broken pipe", "device_lost"),
    ("tracker", "device_lost"),
)


def legacy_error_kind(status: str | None, error: str | None) -> str:
    """The error kind of a row written before schema v5, from its status and message."""
    text = (error or "").lower()
    if status == "skipped":
        return "refused" if "does not run" in text else "unavailable"
    return next((kind for words, kind in _LEGACY_WORDING if words in text), "error")
