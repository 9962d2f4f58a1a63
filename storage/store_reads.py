"""The RunStore's reads of run data: checkpoints, metric keys, downsampled series, latest
values, the data signature, evaluations, samples and events."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from sqlalchemy import func, select

from storage import samples as sample_rows
from storage.entities import Checkpoint, Event, MetricPoint, Sample
from storage.models import (
    CheckpointRow,
    EvaluationRow,
    EventRow,
    MetricLatestRow,
    MetricRow,
    decode_float,
)
from storage.queries import data_version, latest_points, latest_points_of_runs, series_frame
from storage.store_base import StorePart


def _as_ids(run_ids: int | Iterable[int]) -> list[int]:
    return [int(run_ids)] if isinstance(run_ids, int) else [int(r) for r in run_ids]


class RunDataReads(StorePart):
    """Reads of a run's data (many runs' where the method takes `run_ids`)."""

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
