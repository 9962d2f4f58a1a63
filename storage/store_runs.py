"""The RunStore's run rows: create, read, list (with the query `where`), update and delete a
run; its tags and notes; the groups."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from copd.common.tags import MAX_TAGS, TagError, check_notes, check_tags, control_char
from storage.entities import STATUSES, Run, RunStatus
from storage.models import RunRow, RunTagRow
from storage.store_base import StorePart, run_row, utcnow

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


def _utc(dt: datetime | None) -> datetime | None:
    # SQLite hands datetimes back naive, PostgreSQL in the session's zone; all are UTC.
    if dt is None:
        return dt
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


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


class RunRecords(StorePart):
    """Runs as rows: create_run, get_run, list_runs, update_run, delete_run, tags, notes."""

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
            return str(run_row(s, run_id).run_dir)

    def get_run(self, run_id: int) -> Run:
        with self.db.session() as s:
            row = run_row(s, run_id)
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
            run_row(s, run_id)
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
            row = run_row(s, run_id)
            if append and row.notes:
                notes = check_notes(f"{row.notes.rstrip()}\n{notes}")
            row.notes = notes
        return self.get_run(run_id)

    def list_groups(self) -> list[str]:
        q = select(RunRow.group).where(RunRow.group.is_not(None)).distinct().order_by(RunRow.group)
        with self.db.session() as s:
            return list(s.scalars(q))

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
            row = run_row(s, run_id)
            for k, v in fields.items():
                setattr(row, k, dict(v) if k == "config" else v)
        return self.get_run(run_id)

    def delete_run(self, run_id: int) -> None:
        """Delete a run and (ON DELETE CASCADE) its metrics, evaluations, events, checkpoints."""
        with self.db.session(write=True) as s:
            res = s.execute(delete(RunRow).where(RunRow.id == int(run_id)))
            if res.rowcount == 0:
                raise KeyError(f"run {run_id} does not exist")
