"""The work queue of a night, in the database: workers claim items with row locks.

One ``nightly_runs`` row per (configuration name, night) and one ``work_items`` row per
thing the night does. Any number of workers (processes, machines) sharing the database
join the same run and split its items:

* an item is claimed by a conditional update (``state = 'pending'`` -> ``'claimed'``),
  after ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers never take
  the same item;
* a worker refreshes the heartbeat of its items while it works on them; an item whose
  worker died (no heartbeat for ``lease_s``, or a dead process on this host) goes back to
  pending and is taken again, once: the second loss fails it with the reason;
* every state change is one short transaction, so a worker killed at any moment
  (``kill -9`` included) leaves no half-written row, and the next run of the night
  continues where it stopped.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from dataclasses import dataclass

from pose_tuner.store.db import ParetoDB, _now

#: an item whose worker died this many times is failed instead of retried
MAX_ATTEMPTS = 2


class NightlyError(RuntimeError):
    """The night cannot run; the message says why and what to do."""


@dataclass(frozen=True)
class Item:
    id: int
    run_id: int
    job: str
    kind: str
    key: str
    payload: dict
    attempts: int


@dataclass(frozen=True)
class Run:
    id: int
    name: str
    night: str
    status: str
    started_at: str
    config_digest: str
    regressions: int | None = None
    report_path: str | None = None
    tuner_version: str | None = None
    tvm_version: str | None = None


def _to_run(row) -> Run | None:
    return Run(**{k: getattr(row, k) for k in Run.__dataclass_fields__}) if row else None


def default_worker() -> str:
    return f"{platform.node()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WorkQueue:
    def __init__(self, db: ParetoDB, worker: str | None = None, lease_s: float = 600.0):
        self.db, self.sa = db, db.sa
        self.worker = worker or default_worker()
        self.lease_s = lease_s
        self._postgres = db.engine.dialect.name == "postgresql"
        self._beat_stop: threading.Event | None = None

    # -- runs ------------------------------------------------------------------------
    def _run(self, conn, name: str, night: str) -> Run | None:
        r = self.db.runs.c
        row = conn.execute(self.sa.select(self.db.runs).where(r.name == name, r.night == night)).first()
        return _to_run(row)

    def find_run(self, name: str, night: str) -> Run | None:
        with self.db.engine.connect() as conn:
            return self._run(conn, name, night)

    def open_run(self, name: str, night: str, digest: str, config_json: str, plan,
                 versions: dict) -> tuple[Run, bool]:
        """The run of ``name`` for ``night``: joined if it exists (another worker's, or an
        interrupted one), else created with the items ``plan()`` returns (dicts with job,
        kind, key, priority, payload). Returns (run, created)."""
        existing = self.find_run(name, night)
        if existing is None:
            items = plan()
            try:
                with self.db.engine.begin() as conn:
                    rid = conn.execute(self.db.runs.insert().values(
                        name=name, night=night, status="running", config_digest=digest,
                        config_json=config_json, started_at=_now(), **versions,
                    )).inserted_primary_key[0]
                    if items:
                        conn.execute(self.db.items.insert(), [
                            {**it, "payload": json.dumps(it["payload"]), "run_id": rid,
                             "state": "pending", "attempts": 0} for it in items])
                return self.find_run(name, night), True
            except self.sa.exc.IntegrityError:  # another worker created it meanwhile
                existing = self.find_run(name, night)
                if existing is None:
                    raise
        if existing.config_digest != digest:
            raise NightlyError(
                f"night {night!r} of {name!r} was started with another version of the "
                "configuration; finish it with that one, or start a new night with --night")
        return existing, False

    def finish_run(self, run_id: int) -> bool:
        """Mark the run finished if no item is pending or claimed; True for the one caller
        that did it (that worker writes the report)."""
        i, r = self.db.items.c, self.db.runs.c
        with self.db.engine.begin() as conn:
            left = conn.execute(self.sa.select(self.sa.func.count()).select_from(self.db.items)
                                .where(i.run_id == run_id, i.state.in_(("pending", "claimed"))))
            if left.scalar():
                return False
            res = conn.execute(self.db.runs.update().where(r.id == run_id, r.status == "running")
                               .values(status="finished", finished_at=_now()))
            return res.rowcount == 1

    def set_report(self, run_id: int, regressions: int, path: str) -> None:
        r = self.db.runs.c
        with self.db.engine.begin() as conn:
            conn.execute(self.db.runs.update().where(r.id == run_id)
                         .values(regressions=regressions, report_path=path))

    def previous_run(self, run: Run) -> Run | None:
        """The latest finished run of the same name created before ``run``."""
        r = self.db.runs.c
        q = (self.sa.select(self.db.runs)
             .where(r.name == run.name, r.status == "finished", r.id < run.id)
             .order_by(r.id.desc()).limit(1))
        with self.db.engine.connect() as conn:
            row = conn.execute(q).first()
        return _to_run(row)

    def items(self, run_id: int) -> list[dict]:
        i = self.db.items.c
        with self.db.engine.connect() as conn:
            rows = conn.execute(self.sa.select(self.db.items).where(i.run_id == run_id)
                                .order_by(i.priority, i.id))
            return [dict(r._mapping) for r in rows]

    # -- items -----------------------------------------------------------------------
    def _reclaim(self, conn, run_id: int) -> None:
        """Give back the items of dead workers (a second loss fails the item)."""
        i = self.db.items.c
        now = time.time()
        host = platform.node()
        rows = conn.execute(self.sa.select(i.id, i.worker, i.heartbeat_at, i.attempts)
                            .where(i.run_id == run_id, i.state == "claimed")).all()
        for row in rows:
            whost, _, pid = (row.worker or "").rpartition(":")
            dead = (row.heartbeat_at or 0) < now - self.lease_s or (
                whost == host and pid.isdigit() and row.worker != self.worker
                and not _pid_alive(int(pid)))
            if not dead:
                continue
            if row.attempts >= MAX_ATTEMPTS:
                values = dict(state="done", status="failed", finished_at=now, outcome="lost",
                              error=f"the worker running it died {row.attempts} times "
                                    f"(last: {row.worker}); see its log")
            else:
                values = dict(state="pending", worker=None)
            conn.execute(self.db.items.update()
                         .where(i.id == row.id, i.state == "claimed", i.worker == row.worker)
                         .values(**values))

    def claim(self, run_id: int) -> Item | None:
        """Take the next pending item (lowest priority first); None when none is left."""
        i = self.db.items.c
        while True:
            with self.db.engine.begin() as conn:
                self._reclaim(conn, run_id)
                q = (self.sa.select(self.db.items)
                     .where(i.run_id == run_id, i.state == "pending")
                     .order_by(i.priority, i.id).limit(1))
                if self._postgres:
                    q = q.with_for_update(skip_locked=True)
                row = conn.execute(q).first()
                if row is None:
                    return None
                now = time.time()
                res = conn.execute(
                    self.db.items.update().where(i.id == row.id, i.state == "pending")
                    .values(state="claimed", worker=self.worker, claimed_at=now,
                            heartbeat_at=now, attempts=(row.attempts or 0) + 1))
                if res.rowcount == 1:
                    return Item(row.id, row.run_id, row.job, row.kind, row.key,
                                json.loads(row.payload), (row.attempts or 0) + 1)
            # another worker took it between our select and update: try the next one

    def complete(self, item: Item, state: str = "done", **outcome) -> None:
        """Store what the item found (``state`` done, or skipped with the reason)."""
        i = self.db.items.c
        with self.db.engine.begin() as conn:
            conn.execute(self.db.items.update()
                         .where(i.id == item.id, i.worker == self.worker, i.state == "claimed")
                         .values(state=state, finished_at=time.time(), **outcome))

    def release(self, item: Item) -> None:
        """Give an item back unfinished (this worker was stopped cleanly): pending again,
        the attempt not counted."""
        i = self.db.items.c
        with self.db.engine.begin() as conn:
            conn.execute(self.db.items.update()
                         .where(i.id == item.id, i.worker == self.worker, i.state == "claimed")
                         .values(state="pending", worker=None, attempts=item.attempts - 1))

    def skip_pending(self, run_id: int, job: str, reason: str) -> int:
        """Skip the job's items nobody has started (its time budget is spent)."""
        i = self.db.items.c
        with self.db.engine.begin() as conn:
            res = conn.execute(self.db.items.update()
                               .where(i.run_id == run_id, i.job == job, i.state == "pending")
                               .values(state="skipped", error=reason, finished_at=time.time()))
            return res.rowcount

    def job_started_at(self, run_id: int, job: str) -> float | None:
        """When the first item of ``job`` was claimed in this run (any worker)."""
        i = self.db.items.c
        with self.db.engine.connect() as conn:
            return conn.execute(self.sa.select(self.sa.func.min(i.claimed_at))
                                .where(i.run_id == run_id, i.job == job)).scalar()

    def counts(self, run_id: int) -> dict[str, int]:
        i = self.db.items.c
        with self.db.engine.connect() as conn:
            rows = conn.execute(self.sa.select(i.state, self.sa.func.count())
                                .where(i.run_id == run_id).group_by(i.state)).all()
        return {s: n for s, n in rows}

    # -- heartbeat -------------------------------------------------------------------
    def start_heartbeat(self, every_s: float | None = None) -> None:
        """Refresh this worker's claimed items in the background until stop_heartbeat()."""
        every = every_s or max(5.0, self.lease_s / 6)
        stop = self._beat_stop = threading.Event()
        i = self.db.items.c

        def beat():
            while not stop.wait(every):
                try:
                    with self.db.engine.begin() as conn:
                        conn.execute(self.db.items.update()
                                     .where(i.worker == self.worker, i.state == "claimed")
                                     .values(heartbeat_at=time.time()))
                except Exception:  # noqa: BLE001 - a missed beat is retried next time
                    pass

        threading.Thread(target=beat, name="nightly-heartbeat", daemon=True).start()

    def stop_heartbeat(self) -> None:
        if self._beat_stop is not None:
            self._beat_stop.set()
