"""The latest value per (run, key) is kept as rows are written (metric_latest) and always
equals what a scan of the run's metrics gives: the highest step, the last written on ties,
after out-of-order batches, NaN/inf, a resume's truncation and a deleted run."""

from __future__ import annotations

import math
import random

from sqlalchemy import text

from storage import MetricPoint, RunStore

SCAN = """
SELECT key, step, value, is_nan, is_inf FROM metrics m
WHERE run_id = :r AND id = (SELECT MAX(id) FROM metrics m2 WHERE m2.run_id = :r
    AND m2.key = m.key AND m2.step = (SELECT MAX(step) FROM metrics m3
                                      WHERE m3.run_id = :r AND m3.key = m.key))
"""


def _scan(store: RunStore, run_id: int) -> dict[str, tuple[int, float]]:
    with store.db.engine.connect() as conn:
        rows = conn.execute(text(SCAN), {"r": run_id}).all()
    out = {}
    for key, step, value, is_nan, is_inf in rows:
        v = math.nan if is_nan else (math.copysign(math.inf, value) if is_inf else value)
        out[key] = (step, v)
    return out


def _latest(store: RunStore, run_id: int) -> dict[str, tuple[int, float]]:
    return {k: (p.step, p.value) for k, p in store.latest_metrics(run_id).items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k][0] == b[k][0] and (a[k][1] == b[k][1] or (math.isnan(a[k][1]) and math.isnan(b[k][1])))
        for k in a
    )


def test_latest_follows_every_write_and_matches_a_scan(store: RunStore):
    run = store.create_run("r", "copd", {})
    other = store.create_run("o", "copd", {})
    rng = random.Random(0)
    for batch in range(30):
        points = [
            MetricPoint(f"k{rng.randrange(6)}", rng.choice([rng.random(), math.nan, math.inf]),
                        step=rng.randrange(50))
            for _ in range(rng.randrange(1, 20))
        ]  # fmt: skip
        store.log_metrics(run.id, points)
        store.log_metrics(other.id, [MetricPoint("k0", float(batch), step=batch)])
        assert _same(_latest(store, run.id), _scan(store, run.id))
    assert _latest(store, other.id) == {"k0": (29, 29.0)}
    assert store.metric_keys(run.id) == sorted(_scan(store, run.id))
    assert store.latest_metrics(run.id, ["k0", "nope"]).keys() <= {"k0"}


def test_a_later_batch_at_an_older_step_does_not_replace_the_latest(store: RunStore):
    run = store.create_run("r", "copd", {})
    store.log_metrics(run.id, [MetricPoint("loss", 1.0, step=10)])
    store.log_metrics(run.id, [MetricPoint("loss", 2.0, step=4)])
    assert _latest(store, run.id) == {"loss": (10, 1.0)}
    store.log_metrics(run.id, [MetricPoint("loss", 3.0, step=10)])  # a tie: the last written
    assert _latest(store, run.id) == {"loss": (10, 3.0)}


def test_truncation_on_resume_recomputes_the_latest(store: RunStore):
    run = store.create_run("r", "copd", {})
    store.log_metrics(run.id, [MetricPoint("a", float(s), step=s) for s in range(20)])
    store.log_metrics(run.id, [MetricPoint("b", 5.0, step=15)])
    store.truncate_after(run.id, 7)
    assert _latest(store, run.id) == {"a": (7, 7.0)}  # b had no row at or before step 7
    store.truncate_after(run.id, -1)
    assert store.latest_metrics(run.id) == {}


def test_deleting_a_run_deletes_its_latest_rows(store: RunStore):
    run = store.create_run("r", "copd", {})
    store.log_metrics(run.id, [MetricPoint("a", 1.0, step=1)])
    store.delete_run(run.id)
    with store.db.engine.connect() as conn:
        n = conn.execute(text("SELECT COUNT(*) FROM metric_latest")).scalar()
    assert n == 0


def test_latest_of_many_runs_in_one_read_equals_each_runs(store: RunStore):
    ids = []
    for r in range(3):
        run = store.create_run(f"r{r}", "copd", {})
        store.log_metrics(
            run.id, [MetricPoint(f"k{i}", float(r * i), step=i) for i in range(r * 3)]
        )
        ids.append(run.id)
    many = store.latest_metrics_of(ids + [ids[0]])
    assert sorted(many) == ids and many[ids[0]] == {}  # a run without metrics: empty
    for run_id in ids:
        assert many[run_id] == store.latest_metrics(run_id)
    store.log_metrics(ids[2], [MetricPoint("k1x", 7.0, step=1), MetricPoint("ak_1", 8.0, step=1)])
    some = store.latest_metrics_of(ids, ("_1", "k5"))  # LIKE's `_` is no wildcard here
    assert {r: sorted(p) for r, p in some.items()} == {
        ids[0]: [],
        ids[1]: [],
        ids[2]: ["ak_1", "k5"],
    }
    assert store.latest_metrics_of(ids, ()) == {r: {} for r in ids}
