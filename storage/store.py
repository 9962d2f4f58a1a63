"""RunStore: the run store's API (runs, metrics, evaluations, events, checkpoints).

    from storage import RunStore
    store = RunStore.from_url()            # $COPD_DB_URL, else sqlite:///$COPD_HOME/copd.db
    run = store.create_run("demo", "copd", config={...})
    store.log_metrics(run.id, [MetricPoint("branch/add/reward/mean", 0.4, step=1)])
    df = store.metric_series([run.id], ["branch/add/reward/mean"], max_points=500)

Opening a store migrates its database to the newest schema (storage/migrate.py). Every method
runs in its own short session (storage/db.py), so one store object is safe to share between
threads and is cheap to keep for the life of a process. Entities come back, never ORM rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any

import pandas as pd
from sqlalchemy import and_, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from copd.common.tags import MAX_TAGS, TagError, check_notes, check_tags, control_char
from storage import rollup
from storage import samples as sample_rows
from storage.db import (
    Database,
    StoreError,
    check_url,
    default_db_url,
    make_engine,
    sqlite_path,
)
from storage.entities import (
    STATUSES,
    TERMINAL,
    Checkpoint,
    Evaluation,
    Event,
    IllegalTransition,
    MetricPoint,
    Run,
    RunStatus,
    Sample,
    check_transition,
    sources,
)
from storage.migrate import upgrade_database
from storage.models import (
    CheckpointRow,
    EvaluationRow,
    EventRow,
    MetricLatestRow,
    MetricRow,
    RunRow,
    RunTagRow,
    SampleRow,
    decode_float,
    encode_float,
)
from storage.queries import (
    REFILL_LATEST_SQL,
    data_version,
    latest_of_batch,
    latest_points,
    latest_points_of_runs,
    series_frame,
    upsert_latest_sql,
)

UPDATABLE = frozenset(
    {
        "name",
        "group",
        "config",
        "run_dir",
        "assigned_gpus",
        "requested_gpus",
        "cpu_slots",
        "code_revision",
        "progress",
    }
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(t: datetime) -> datetime:
    """SQLite hands datetimes back naive (they were stored as UTC)."""
    return t if t.tzinfo is not None else t.replace(tzinfo=timezone.utc)


class RunBusy(StoreError):
    """Another live process holds the run's writer lease; nothing was written."""


def _utc(dt: datetime | None) -> datetime | None:
    # SQLite hands datetimes back naive, PostgreSQL in the session's zone; all are UTC.
    if dt is None:
        return dt
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _as_ids(run_ids: int | Iterable[int]) -> list[int]:
    return [int(run_ids)] if isinstance(run_ids, int) else [int(r) for r in run_ids]


def _run_entity(r: RunRow, tags: Iterable[str] = ()) -> Run:
    return Run(
        id=r.id, name=r.name, method=r.method, group=r.group, status=RunStatus(r.status),
        config=dict(r.config or {}), seed=r.seed, created_at=_utc(r.created_at),
        started_at=_utc(r.started_at), ended_at=_utc(r.ended_at), pid=r.pid,
        pid_start_time=r.pid_start_time, host=r.host, heartbeat_at=_utc(r.heartbeat_at),
        progress=float(r.progress), error=r.error, code_revision=r.code_revision,
        run_dir=r.run_dir, requested_gpus=r.requested_gpus, assigned_gpus=r.assigned_gpus,
        cpu_slots=r.cpu_slots, tags=tuple(sorted(tags)), notes=r.notes or "",
    )  # fmt: skip


def _tags_by_run(s: Session, run_ids: Any) -> dict[int, list[str]]:
    """run id -> its tags, for the runs `run_ids` (ids, or a SELECT of ids) names."""
    out: dict[int, list[str]] = {}
    q = select(RunTagRow.run_id, RunTagRow.tag).where(RunTagRow.run_id.in_(run_ids))
    for run_id, tag in s.execute(q):
        out.setdefault(run_id, []).append(tag)
    return out


_ADD_TAG = text("INSERT INTO run_tags (run_id, tag) VALUES (:run_id, :tag) ON CONFLICT DO NOTHING")


def _first_start(now: datetime):
    """started_at for a move to running: the run's first start, kept across resumes."""
    return func.coalesce(RunRow.started_at, now)


class RunStore:
    """The run store. Build it with `RunStore.from_url(url)`."""

    def __init__(self, db: Database):
        self.db = db

    @classmethod
    def from_url(cls, url: str | None = None) -> RunStore:
        """Open (creating or migrating as needed) the database at `url`; None means
        $COPD_DB_URL, else sqlite:///$COPD_HOME/copd.db."""
        url = check_url(url or default_db_url())
        if url.startswith("sqlite") and sqlite_path(url) is None:
            engine = make_engine(url)  # in-memory: migrate on the very engine the store uses
            upgrade_database(url, engine=engine)
            return cls(Database(url, engine))
        upgrade_database(url)
        return cls(Database(url))

    @property
    def url(self) -> str:
        return self.db.url

    def close(self) -> None:
        self.db.dispose()

    # ---- runs ---------------------------------------------------------------------------

    def create_run(
        self, name: str, method: str, config: dict[str, Any], seed: int = 0,
        group: str | None = None, run_dir: str | None = None, requested_gpus: int = 0,
        cpu_slots: int = 1, code_revision: str | None = None,
        run_dir_for: Callable[[int], str] | None = None, tags: Iterable[str] = (),
        notes: str = "",
    ) -> Run:  # fmt: skip
        """A new run in status queued, with its tags and notes (TagError, nothing recorded,
        when one is invalid). `run_dir_for(id)`, when given, makes the run's folder inside
        the transaction that creates the row, so no reader (a supervisor's tick) ever sees a
        queued run without its folder; if it raises, no row is recorded."""
        tags, notes = check_tags(tags), check_notes(notes)
        for field, value in (("name", name), ("group", group), ("method", method)):
            bad = control_char(value or "")
            if bad is not None:  # the store's own rule: every caller, not only the CLI's
                raise TagError(
                    f"{field}: {value[:40]!r} holds the control character {bad!r}; use "
                    "printable characters only"
                )
        row = RunRow(
            name=name, method=method, group=group, status=RunStatus.QUEUED.value,
            config=dict(config), seed=int(seed), created_at=utcnow(), progress=0.0,
            run_dir=run_dir, requested_gpus=int(requested_gpus), cpu_slots=int(cpu_slots),
            code_revision=code_revision, notes=notes,
        )  # fmt: skip
        with self.db.session(write=True) as s:
            s.add(row)
            s.flush()
            s.add_all(RunTagRow(run_id=row.id, tag=t) for t in tags)
            if run_dir_for is not None:
                row.run_dir = str(run_dir_for(int(row.id)))
            s.flush()
            return _run_entity(row, tags)

    def set_run_dir_if_unset(self, run_id: int, run_dir: str) -> str:
        """Record `run_dir` as the run's folder unless one is recorded already (a
        conditional UPDATE); the folder the run has afterwards."""
        with self.db.session(write=True) as s:
            s.execute(
                update(RunRow)
                .where(RunRow.id == int(run_id), RunRow.run_dir.is_(None))
                .values(run_dir=str(run_dir))
            )
            return str(self._row(s, run_id).run_dir)

    def _row(self, s: Session, run_id: int) -> RunRow:
        row = s.get(RunRow, int(run_id))
        if row is None:
            raise KeyError(f"run {run_id} does not exist")
        return row

    def get_run(self, run_id: int) -> Run:
        with self.db.session() as s:
            row = self._row(s, run_id)
            return _run_entity(row, _tags_by_run(s, [row.id]).get(row.id, ()))

    def list_runs(
        self, status: str | list[str] | None = None, group: str | None = None,
        method: str | None = None, limit: int | None = None, where: str | None = None,
    ) -> list[Run]:  # fmt: skip
        """Runs, newest first, filtered by status (one or several), group and method, then by
        the query `where` (copd/common/query.py: `opd.beta >= 1 and "ablation" in tags`;
        QueryError when it does not parse or fit), then cut to `limit`."""
        if where and where.strip():
            from storage.search import filter_runs

            runs = filter_runs(self.list_runs(status=status, group=group, method=method), where)
            return runs if limit is None else runs[: int(limit)]
        q = select(RunRow).order_by(RunRow.id.desc())
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            unknown = [x for x in statuses if x not in STATUSES]
            if unknown:
                raise ValueError(f"status {unknown} unknown; use one of {', '.join(STATUSES)}")
            q = q.where(RunRow.status.in_([RunStatus(x).value for x in statuses]))
        if group is not None:
            q = q.where(RunRow.group == group)
        if method is not None:
            q = q.where(RunRow.method == method)
        if limit is not None:
            q = q.limit(int(limit))
        with self.db.session() as s:
            rows = list(s.scalars(q))
            ids = [r.id for r in rows]
            # the tags of every listed run in one more query (a subquery past 500 ids)
            tags = _tags_by_run(s, ids if len(ids) <= 500 else q.with_only_columns(RunRow.id))
            return [_run_entity(r, tags.get(r.id, ())) for r in rows]

    def list_tags(self) -> list[str]:
        """Every tag some run holds, sorted."""
        with self.db.session() as s:
            return list(s.scalars(select(RunTagRow.tag).distinct().order_by(RunTagRow.tag)))

    def edit_tags(self, run_id: int, add: Iterable[str] = (), remove: Iterable[str] = ()) -> Run:
        """Add and remove tags of a run in one transaction (adding a tag it holds, or removing
        one it lacks, does nothing); TagError, nothing changed, for an invalid tag or past
        MAX_TAGS tags. Concurrent edits of different tags all land."""
        add, remove = check_tags(add), tuple(dict.fromkeys(remove))
        with self.db.session(write=True) as s:
            self._row(s, run_id)
            if remove:
                s.execute(
                    delete(RunTagRow).where(
                        RunTagRow.run_id == int(run_id), RunTagRow.tag.in_(remove)
                    )
                )
            if add:
                s.execute(_ADD_TAG, [{"run_id": int(run_id), "tag": t} for t in add])
                count = s.scalar(select(func.count()).where(RunTagRow.run_id == int(run_id)))
                if count > MAX_TAGS:
                    raise TagError(
                        f"run {run_id} would hold {count} tags; at most {MAX_TAGS}: remove some"
                    )
        return self.get_run(run_id)

    def set_notes(self, run_id: int, notes: str, append: bool = False) -> Run:
        """Replace a run's notes (with `append`, add `notes` as a new line after them, in the
        same transaction); TagError, nothing changed, when they are invalid."""
        notes = check_notes(notes)
        with self.db.session(write=True) as s:
            row = self._row(s, run_id)
            if append and row.notes:
                notes = check_notes(f"{row.notes.rstrip()}\n{notes}")
            row.notes = notes
        return self.get_run(run_id)

    def list_groups(self) -> list[str]:
        q = select(RunRow.group).where(RunRow.group.is_not(None)).distinct().order_by(RunRow.group)
        with self.db.session() as s:
            return list(s.scalars(q))

    def move(
        self, run_id: int, to: str, *, only_from: tuple[str, ...] | None = None, **fields: Any
    ) -> bool:
        """Move a run to status `to` in one conditional UPDATE, if its current status may
        move there (storage/entities.py MOVES; `only_from` narrows that); True when it moved.
        Exactly one of any number of concurrent callers wins a move. `fields`: columns set
        with it (started_at, pid, ...)."""
        if to not in STATUSES:
            raise ValueError(f"status {to!r} is unknown; use one of {', '.join(STATUSES)}")
        allowed = [s.value for s in sources(to) if only_from is None or s in only_from]
        with self.db.session(write=True) as s:
            res = s.execute(
                update(RunRow)
                .where(RunRow.id == int(run_id), RunRow.status.in_(allowed))
                .values(status=RunStatus(to).value, **fields)
            )
            return res.rowcount == 1

    def set_status(self, run_id: int, status: str, error: str | None = None) -> Run:
        """Move a run along the status machine (storage/entities.py); IllegalTransition if the
        move is not allowed. running sets started_at (the first start only: a resumed run
        keeps it, so its start and duration cover the whole run), terminal states set
        ended_at, and a resume (-> queued) clears the previous attempt's end time, error and
        process."""
        now = utcnow()
        fields: dict[str, Any] = {}
        if status == RunStatus.RUNNING:
            fields = {"started_at": _first_start(now), "heartbeat_at": now}
        elif status in TERMINAL:
            fields = {"ended_at": now}
            if error is not None:
                fields["error"] = error
            if status == RunStatus.FINISHED:
                fields["progress"] = 1.0
        elif status == RunStatus.QUEUED:
            fields = dict(ended_at=None, error=None, pid=None, pid_start_time=None,
                          heartbeat_at=None, assigned_gpus=None)  # fmt: skip
        if not self.move(run_id, status, **fields):
            check_transition(self.get_run(run_id).status, status)  # raises, naming the move
            raise IllegalTransition(f"run {run_id} changed status meanwhile; try again")
        return self.get_run(run_id)

    def mark_running(
        self, run_id: int, pid: int, pid_start_time: float | None, host: str | None,
        assigned_gpus: str | None = None, lease_s: float | None = None,
    ) -> Run:  # fmt: skip
        """queued -> running, recording the process. On a run already running it takes the
        run's writer lease, in one conditional UPDATE: granted when no process is recorded
        yet (the launcher claimed the run), when the recorded one is this process (the
        launcher recorded the child it spawned, the trainer then records itself), or when
        the holder's heartbeat is older than `lease_s` (it died without a status); else
        RunBusy naming the holder. One writer per run, however many try."""
        now = utcnow()
        proc = dict(pid=int(pid), pid_start_time=pid_start_time, host=host, heartbeat_at=now)
        if assigned_gpus is not None:
            proc["assigned_gpus"] = assigned_gpus
        if self.move(run_id, RunStatus.RUNNING, started_at=_first_start(now), **proc):
            return self.get_run(run_id)
        free = [RunRow.pid.is_(None), and_(RunRow.pid == int(pid), RunRow.host == host)]
        if lease_s is not None:
            stale = now - timedelta(seconds=float(lease_s))
            free += [RunRow.heartbeat_at.is_(None), RunRow.heartbeat_at < stale]
        with self.db.session(write=True) as s:
            res = s.execute(
                update(RunRow)
                .where(RunRow.id == int(run_id), RunRow.status == RunStatus.RUNNING.value)
                .where(or_(*free))
                .values(**proc)
            )
            if res.rowcount == 1:
                return self.get_run(run_id)
            row = self._row(s, run_id)
            if row.status != RunStatus.RUNNING:
                check_transition(row.status, RunStatus.RUNNING)
                raise IllegalTransition(f"run {run_id} changed status meanwhile; try again")
            beat = row.heartbeat_at
            age = (now - _aware(beat)).total_seconds() if beat is not None else float("nan")
            raise RunBusy(
                f"run {run_id} is being written by process {row.pid} on {row.host} (heartbeat "
                f"{age:.1f} s ago): one writer per run; cancel it first (copd cancel "
                f"{run_id}) or wait until it ends"
            )

    def claim(self, run_id: int, host: str | None, assigned_gpus: str | None = None) -> bool:
        """queued -> running in one conditional UPDATE, before a supervisor spawns the trainer:
        True for exactly one caller, however many supervisors (threads, processes, machines)
        try to start the same run; False when it is no longer queued. The process fields
        follow with `mark_running` once the trainer is spawned."""
        now = utcnow()
        return self.move(
            run_id, RunStatus.RUNNING, only_from=(RunStatus.QUEUED,),
            started_at=_first_start(now),
            heartbeat_at=now, host=host, pid=None, pid_start_time=None,
            assigned_gpus=assigned_gpus,
        )  # fmt: skip

    def heartbeat(self, run_id: int, progress: float | None = None) -> None:
        values: dict[str, Any] = {"heartbeat_at": utcnow()}
        if progress is not None:
            values["progress"] = min(1.0, max(0.0, float(progress)))
        with self.db.session(write=True) as s:
            res = s.execute(update(RunRow).where(RunRow.id == int(run_id)).values(**values))
            if res.rowcount == 0:
                raise KeyError(f"run {run_id} does not exist")

    def update_run(self, run_id: int, **fields: Any) -> Run:
        """Plain field updates, e.g. update_run(7, run_dir="runs/7", assigned_gpus="0,1").
        Status and process fields have their own methods (set_status, mark_running)."""
        bad = sorted(set(fields) - UPDATABLE)
        if bad:
            raise TypeError(
                f"update_run cannot set {bad}; settable: {sorted(UPDATABLE)} "
                "(use set_status / mark_running / heartbeat for the rest)"
            )
        with self.db.session(write=True) as s:
            row = self._row(s, run_id)
            for k, v in fields.items():
                setattr(row, k, dict(v) if k == "config" else v)
        return self.get_run(run_id)

    def delete_run(self, run_id: int) -> None:
        """Delete a run and (ON DELETE CASCADE) its metrics, evaluations, events, checkpoints."""
        with self.db.session(write=True) as s:
            res = s.execute(delete(RunRow).where(RunRow.id == int(run_id)))
            if res.rowcount == 0:
                raise KeyError(f"run {run_id} does not exist")

    # ---- writes of run data --------------------------------------------------------------

    def _insert(self, run_id: int, model: type, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        try:
            with self.db.session(write=True) as s:
                # Core insert on the table: one executemany, one transaction, and none of
                # the ORM bulk machinery (half the cost of a 500-row batch).
                s.connection().execute(insert(model.__table__), rows)
        except IntegrityError:
            self.get_run(run_id)  # raises KeyError "run N does not exist" when that is why
            raise

    def log_metrics(self, run_id: int, points: list[MetricPoint]) -> None:
        """Insert a batch of metric points in one transaction. NaN/inf are kept (models.py)."""
        self.log_metric_rows(
            run_id,
            [(p.key, p.value, p.step, p.cycle, p.phase, p.scope, p.wall_time) for p in points],
        )

    _METRIC_COLS = ("run_id", "step", "cycle", "phase", "scope", "key", "value", "is_nan",
                    "is_inf", "wall_time")  # fmt: skip

    def _marks(self, n: int) -> list[str]:
        """n placeholders in the driver's own parameter style."""
        style = self.db.engine.dialect.paramstyle
        return [f":{i + 1}" if style == "numeric" else "?" if style == "qmark" else "%s"
                for i in range(n)]  # fmt: skip

    def log_metric_rows(
        self, run_id: int, rows: list[tuple[str, float, int, int, str, str, float]]
    ) -> None:
        """log_metrics for plain (key, value, step, cycle, phase, scope, wall_time) tuples, the
        StoreLogger's path: one driver-level executemany, without building an entity or a
        parameter dict per point (a third of the cost of a large batch)."""
        if not rows:
            return
        params = []
        for key, value, step, cycle, phase, scope, wall_time in rows:
            v, is_nan, is_inf = encode_float(value)
            params.append((run_id, int(step), int(cycle), phase, scope, key, v, is_nan, is_inf,
                           float(wall_time)))  # fmt: skip
        marks = self._marks(len(self._METRIC_COLS))
        sql = f"INSERT INTO metrics ({', '.join(self._METRIC_COLS)}) VALUES ({', '.join(marks)})"
        try:
            with self.db.session(write=True) as s:
                conn = s.connection()
                conn.exec_driver_sql(sql, params)
                # the latest value per key, in the same transaction (one row per key)
                conn.exec_driver_sql(upsert_latest_sql(marks), latest_of_batch(params))
                # and the min/max blocks of the downsampler (storage/rollup.py)
                blocks = rollup.rollup_of_batch(params)
                conn.exec_driver_sql(rollup.upsert_sql(self._marks(len(rollup.COLUMNS))), blocks)
        except IntegrityError:
            self.get_run(run_id)  # raises KeyError "run N does not exist" when that is why
            raise

    def log_evals(self, run_id: int, evals: list[Evaluation]) -> None:
        rows = []
        for e in evals:
            v, is_nan, is_inf = encode_float(e.score)
            rows.append(
                {"run_id": run_id, "model": e.model, "benchmark": e.benchmark, "score": v,
                 "is_nan": is_nan, "is_inf": is_inf, "n": int(e.n), "step": int(e.step),
                 "wall_time": float(e.wall_time)}
            )  # fmt: skip
        self._insert(run_id, EvaluationRow, rows)

    def log_event(
        self, run_id: int, message: str, level: str = "info", step: int | None = None,
        wall_time: float | None = None,
    ) -> None:  # fmt: skip
        ev = (
            Event(message, level, step)
            if wall_time is None
            else Event(message, level, step, wall_time)
        )
        self.log_events(run_id, [ev])

    def log_events(self, run_id: int, events: list[Event]) -> None:
        rows = [
            {"run_id": run_id, "message": e.message, "level": e.level, "step": e.step,
             "wall_time": float(e.wall_time)}
            for e in events
        ]  # fmt: skip
        self._insert(run_id, EventRow, rows)

    def add_checkpoint(
        self, run_id: int, step: int, path: str, wall_time: float | None = None
    ) -> Checkpoint:
        ck = (
            Checkpoint(int(step), str(path))
            if wall_time is None
            else Checkpoint(int(step), str(path), wall_time)
        )
        row = {"run_id": run_id, "step": ck.step, "path": ck.path, "wall_time": ck.wall_time}
        self._insert(run_id, CheckpointRow, [row])
        return ck

    def remove_checkpoints(self, run_id: int, paths: Iterable[str]) -> int:
        """Forget the checkpoint rows of these paths (their folders were pruned); the count."""
        paths = [str(p) for p in paths]
        if not paths:
            return 0
        with self.db.session(write=True) as s:
            res = s.execute(
                delete(CheckpointRow).where(
                    CheckpointRow.run_id == int(run_id), CheckpointRow.path.in_(paths)
                )
            )
            return int(res.rowcount or 0)

    def log_samples(self, run_id: int, samples: list[Sample], cap: int = 5000) -> int:
        """Insert recorded completions in one transaction, thinning the run's recorded steps
        past `cap` rows (storage/samples.py); the number of rows the thinning deleted."""
        try:
            return sample_rows.write(self.db, run_id, samples, cap)
        except IntegrityError:
            self.get_run(run_id)  # raises KeyError "run N does not exist" when that is why
            raise

    def truncate_after(self, run_id: int, step: int) -> dict[str, int]:
        """Delete the run's metrics, evaluations and checkpoint rows with step > `step`
        (a resume from the checkpoint at `step`; -1 deletes them all). Events stay: they are
        the run's history, resumes included. Returns the deleted counts per table."""
        counts = {}
        with self.db.session(write=True) as s:
            self._row(s, run_id)
            for name, model in (
                ("metrics", MetricRow),
                ("evaluations", EvaluationRow),
                ("checkpoints", CheckpointRow),
                ("samples", SampleRow),
            ):
                res = s.execute(
                    delete(model).where(model.run_id == int(run_id), model.step > int(step))
                )
                counts[name] = int(res.rowcount or 0)
            if counts["metrics"]:
                s.execute(delete(MetricLatestRow).where(MetricLatestRow.run_id == int(run_id)))
                s.execute(text(REFILL_LATEST_SQL), {"run_id": int(run_id)})
                for w in rollup.WIDTHS:  # the blocks from the one holding `step` on
                    b = rollup.block_of(int(step), w)
                    s.execute(text(rollup.TRUNCATE_DELETE_SQL), {"r": int(run_id), "w": w, "b": b})
                    s.execute(
                        text(rollup.TRUNCATE_REFILL_SQL),
                        {"r": int(run_id), "w": w, "start": b * w, "s": int(step)},
                    )
        return counts

    # ---- reads ---------------------------------------------------------------------------

    def latest_checkpoint(self, run_id: int) -> Checkpoint | None:
        q = (
            select(CheckpointRow)
            .where(CheckpointRow.run_id == int(run_id))
            .order_by(CheckpointRow.step.desc(), CheckpointRow.id.desc())
            .limit(1)
        )
        with self.db.session() as s:
            r = s.scalars(q).first()
            return None if r is None else Checkpoint(r.step, r.path, r.wall_time)

    def checkpoints(self, run_id: int) -> list[Checkpoint]:
        q = (
            select(CheckpointRow)
            .where(CheckpointRow.run_id == int(run_id))
            .order_by(CheckpointRow.step, CheckpointRow.id)
        )
        with self.db.session() as s:
            return [Checkpoint(r.step, r.path, r.wall_time) for r in s.scalars(q)]

    def metric_keys(self, run_ids: int | list[int]) -> list[str]:
        ids = _as_ids(run_ids)
        q = (  # one row per (run, key) in metric_latest: no scan of the metrics
            select(MetricLatestRow.key)
            .where(MetricLatestRow.run_id.in_(ids))
            .distinct()
            .order_by(MetricLatestRow.key)
        )
        with self.db.session() as s:
            return list(s.scalars(q))

    def metric_series(
        self, run_ids: int | list[int], keys: str | list[str], max_points: int = 500
    ) -> pd.DataFrame:
        """Columns [run_id, key, scope, step, cycle, phase, value, wall_time] sorted by run, key,
        step; each (run, key) series downsampled to <= max_points rows keeping every bucket's
        min and max (storage/queries.py)."""
        key_list = [keys] if isinstance(keys, str) else list(keys)
        with self.db.session() as s:
            return series_frame(s, _as_ids(run_ids), key_list, int(max_points))

    def data_version(self, run_ids: int | list[int]) -> tuple:
        """A signature of everything the dashboard draws of these runs' data: it changes
        whenever a metric, evaluation or event of one of them is written or removed (row
        counts per run from the coarsest rollup blocks, the newest wall time per run, the
        newest event and evaluation ids). A few index reads, whatever the runs' length."""
        with self.db.session() as s:
            return data_version(s, _as_ids(run_ids))

    def latest_metrics_of(
        self, run_ids: Iterable[int], suffixes: tuple[str, ...] | None = None
    ) -> dict[int, dict[str, MetricPoint]]:
        """latest_metrics of many runs at once (the Runs page's table): run id -> key ->
        point, from the summary in one query per 500 runs; with `suffixes`, only the keys
        that end in one of them."""
        with self.db.session() as s:
            return latest_points_of_runs(s, [int(r) for r in run_ids], suffixes)

    def latest_metrics(self, run_id: int, keys: list[str] | None = None) -> dict[str, MetricPoint]:
        """Per key, the point with the highest step (ties: the last written), read from the
        summary kept as rows are written (one row per key, whatever the run's length)."""
        with self.db.session() as s:
            return latest_points(s, int(run_id), None if keys is None else list(keys))

    def metric_count(self, run_ids: int | list[int]) -> int:
        q = (
            select(func.count())
            .select_from(MetricRow)
            .where(MetricRow.run_id.in_(_as_ids(run_ids)))
        )
        with self.db.session() as s:
            return int(s.scalar(q) or 0)

    def evaluations(self, run_ids: int | list[int]) -> pd.DataFrame:
        """Columns [run_id, model, benchmark, score, n, step, wall_time], by run, step, id."""
        q = (
            select(EvaluationRow)
            .where(EvaluationRow.run_id.in_(_as_ids(run_ids)))
            .order_by(EvaluationRow.run_id, EvaluationRow.step, EvaluationRow.id)
        )
        cols = ["run_id", "model", "benchmark", "score", "n", "step", "wall_time"]
        with self.db.session() as s:
            rows = [
                (r.run_id, r.model, r.benchmark, decode_float(r.score, r.is_nan, r.is_inf),
                 r.n, r.step, r.wall_time)
                for r in s.scalars(q)
            ]  # fmt: skip
        df = pd.DataFrame(rows, columns=cols)
        return df.astype({"run_id": "int64", "score": "float64", "n": "int64", "step": "int64",
                          "wall_time": "float64"})  # fmt: skip

    def samples(
        self, run_id: int, step: int | None = None, kind: str | None = None,
        branch: str | None = None, limit: int = 500,
    ) -> list[Sample]:  # fmt: skip
        """A run's recorded completions (one step's when `step` is given), most divergent first."""
        return sample_rows.read(self.db, run_id, step, kind, branch, limit)

    def sample_steps(self, run_id: int) -> list[tuple[int, str]]:
        """The (step, kind) pairs at which a run recorded samples, ascending."""
        return sample_rows.steps(self.db, run_id)

    def sample_history(
        self, run_ids: int | Iterable[int], domain: str, prompt_index: int, kind: str = "probe"
    ) -> list[Sample]:
        """One prompt's recorded completions across steps, for each run of `run_ids`."""
        return sample_rows.history(self.db, _as_ids(run_ids), domain, prompt_index, kind)

    def sample_count(self, run_id: int) -> int:
        return sample_rows.count(self.db, run_id)

    def event_counts(self, level: str) -> dict[int, int]:
        """run id -> number of its events of `level` (runs without any left out): one
        grouped read for every run (Home's alert counts), not one read per run."""
        q = (
            select(EventRow.run_id, func.count())
            .where(EventRow.level == level)
            .group_by(EventRow.run_id)
        )
        with self.db.session() as s:
            return {int(rid): int(n) for rid, n in s.execute(q)}

    def events(self, run_id: int, limit: int = 200) -> list[Event]:
        """The last `limit` events of a run, oldest first (newest last)."""
        q = (
            select(EventRow)
            .where(EventRow.run_id == int(run_id))
            .order_by(EventRow.id.desc())
            .limit(int(limit))
        )
        with self.db.session() as s:
            rows = list(s.scalars(q))
        return [Event(r.message, r.level, r.step, r.wall_time) for r in reversed(rows)]
