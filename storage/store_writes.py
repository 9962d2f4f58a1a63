"""The RunStore's writes of run data: metrics (with their latest values and rollup blocks
in the same transaction), evaluations, events, checkpoints, samples, and the truncation a
resume makes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, insert, text
from sqlalchemy.exc import IntegrityError

from storage import rollup
from storage import samples as sample_rows
from storage.entities import Checkpoint, Evaluation, Event, MetricPoint, Sample
from storage.models import (
    CheckpointRow,
    EvaluationRow,
    EventRow,
    MetricLatestRow,
    MetricRow,
    SampleRow,
    encode_float,
)
from storage.queries import REFILL_LATEST_SQL, latest_of_batch, upsert_latest_sql
from storage.store_base import StorePart, run_row


class RunDataWrites(StorePart):
    """Batched writes of a run's data, each in one transaction."""

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
            run_row(s, run_id)
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
