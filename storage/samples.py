"""Recorded completions in the store: writes with a per-run cap, and the samples view's reads.

    write(db, run_id, [Sample(...), ...], cap=5000)   # StoreLogger's thread, one transaction
    steps(db, run_id)                                   # [(step, kind), ...] recorded
    read(db, run_id, step=80, kind="probe")             # that step's samples, by disagreement
    history(db, [run_id, ...], domain="add", prompt_index=0)   # one prompt across steps/runs

The cap bounds a run's rows however long it trains: when a write takes a run past `cap`
rows, only the steps at multiples of a doubled stride are kept (and the newest), so the
kept steps stay evenly spaced over training, as a downsampled curve's points do, and the
newest are always there. A step's rows are written in one batch, so a step is kept or dropped whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from sqlalchemy import delete, func, select

from storage.db import Database
from storage.entities import Sample
from storage.models import SampleRow

_COLUMNS = ("step", "cycle", "phase", "kind", "branch", "domain", "prompt_index", "prompt",
            "completion", "reward", "correct", "disagreement", "overlap", "wall_time")  # fmt: skip


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _to_row(run_id: int, s: Sample) -> dict:
    row = {c: getattr(s, c) for c in _COLUMNS}
    row.update(
        run_id=int(run_id),
        reward=float(s.reward) if math.isfinite(float(s.reward)) else 0.0,
        correct=bool(s.correct),
        disagreement=_finite_or_none(s.disagreement),
        overlap=_finite_or_none(s.overlap),
        detail={"tokens": list(s.tokens), "logp": list(s.logp), "peers": dict(s.peers)},
    )
    return row


def _entity(r: SampleRow) -> Sample:
    d = r.detail or {}
    return Sample(
        step=r.step, kind=r.kind, branch=r.branch, domain=r.domain,
        prompt_index=r.prompt_index, prompt=r.prompt, completion=r.completion,
        reward=r.reward, correct=r.correct, tokens=d.get("tokens", []),
        logp=d.get("logp", []), peers=d.get("peers", {}),
        disagreement=float("nan") if r.disagreement is None else r.disagreement,
        overlap=r.overlap, cycle=r.cycle, phase=r.phase, wall_time=r.wall_time,
        run_id=r.run_id,
    )  # fmt: skip


def thinned(rows_per_step: dict[int, int], cap: int) -> list[int]:
    """The steps to delete when a run holds more than `cap` rows: keep the multiples of the
    smallest stride g * 2^j (g: the recorded steps' common divisor) that fits the cap, and
    the newest step; so the kept steps stay evenly spaced over the whole run."""
    if sum(rows_per_step.values()) <= cap or len(rows_per_step) < 2:
        return []
    newest = max(rows_per_step)
    g = math.gcd(*rows_per_step)
    stride = g
    while True:
        stride *= 2
        keep = {s for s in rows_per_step if s % stride == 0 or s == newest}
        if sum(rows_per_step[s] for s in keep) <= cap or stride > newest:
            return sorted(set(rows_per_step) - keep)


def write(db: Database, run_id: int, samples: Iterable[Sample], cap: int) -> int:
    """Insert `samples` in one transaction and thin the run's steps past `cap` rows; returns
    the number of rows deleted by the thinning."""
    rows = [_to_row(run_id, s) for s in samples]
    if not rows:
        return 0
    with db.session(write=True) as s:
        s.execute(SampleRow.__table__.insert(), rows)
        counts = s.execute(
            select(SampleRow.step, func.count())
            .where(SampleRow.run_id == int(run_id))
            .group_by(SampleRow.step)
        )
        gone = thinned({int(a): int(n) for a, n in counts}, cap)
        if not gone:
            return 0
        res = s.execute(
            delete(SampleRow).where(SampleRow.run_id == int(run_id), SampleRow.step.in_(gone))
        )
        return int(res.rowcount or 0)


def steps(db: Database, run_id: int) -> list[tuple[int, str]]:
    """The recorded (step, kind) pairs of a run, ascending."""
    with db.session() as s:
        q = (
            select(SampleRow.step, SampleRow.kind)
            .where(SampleRow.run_id == int(run_id))
            .distinct()
            .order_by(SampleRow.step, SampleRow.kind)
        )
        return [(int(a), str(b)) for a, b in s.execute(q)]


def read(
    db: Database,
    run_id: int,
    step: int | None = None,
    kind: str | None = None,
    branch: str | None = None,
    limit: int = 500,
) -> list[Sample]:
    """A run's samples (one step's when `step` is given), the most divergent first."""
    q = select(SampleRow).where(SampleRow.run_id == int(run_id))
    if step is not None:
        q = q.where(SampleRow.step == int(step))
    if kind is not None:
        q = q.where(SampleRow.kind == kind)
    if branch is not None:
        q = q.where(SampleRow.branch == branch)
    q = q.order_by(
        SampleRow.step.desc(), SampleRow.disagreement.desc().nulls_last(), SampleRow.id
    ).limit(limit)
    with db.session() as s:
        return [_entity(r) for r in s.scalars(q)]


def history(
    db: Database,
    run_ids: Iterable[int],
    domain: str,
    prompt_index: int,
    kind: str = "probe",
    limit: int = 2000,
) -> list[Sample]:
    """One prompt's samples across the steps of each run in `run_ids` (by run, step, branch)."""
    ids = [int(r) for r in run_ids]
    q = (
        select(SampleRow)
        .where(
            SampleRow.run_id.in_(ids),
            SampleRow.domain == domain,
            SampleRow.prompt_index == int(prompt_index),
            SampleRow.kind == kind,
        )
        .order_by(SampleRow.run_id, SampleRow.step, SampleRow.branch)
        .limit(limit)
    )
    with db.session() as s:
        return [_entity(r) for r in s.scalars(q)]


def count(db: Database, run_id: int) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).where(SampleRow.run_id == int(run_id))) or 0)
