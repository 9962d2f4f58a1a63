"""RunStore round trips, the status machine, cascading deletes and the NaN/inf policy.

Round-trip tests run on SQLite and PostgreSQL (`any_store`, see conftest.py)."""

from __future__ import annotations

import math
import os
from datetime import timezone

import pytest

from storage import (
    Checkpoint,
    Evaluation,
    Event,
    IllegalTransition,
    MetricPoint,
    RunBusy,
    RunStore,
    code_revision,
    default_db_url,
)


def test_run_round_trip(any_store: RunStore):
    cfg = {"method": "copd", "branches": ["add", "rev"], "opd": {"beta": 0.5}}
    run = any_store.create_run("demo", "copd", cfg, seed=3, group="g1", run_dir="/r/1",
                               requested_gpus=2, cpu_slots=4, code_revision="abc1234")  # fmt: skip
    got = any_store.get_run(run.id)
    assert got == run
    assert (got.name, got.method, got.group, got.status) == ("demo", "copd", "g1", "queued")
    assert got.config == cfg and got.seed == 3
    assert (got.run_dir, got.requested_gpus, got.cpu_slots, got.code_revision) == (
        "/r/1", 2, 4, "abc1234"
    )  # fmt: skip
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset().total_seconds() == 0
    assert got.started_at is None and got.ended_at is None and got.progress == 0.0

    r = any_store.mark_running(
        run.id, pid=1234, pid_start_time=1.5e9, host="h", assigned_gpus="0,1"
    )
    assert (r.status, r.pid, r.pid_start_time, r.host, r.assigned_gpus) == (
        "running", 1234, 1.5e9, "h", "0,1"
    )  # fmt: skip
    assert r.started_at is not None and r.heartbeat_at is not None
    any_store.heartbeat(run.id, progress=0.25)
    assert any_store.get_run(run.id).progress == 0.25
    r = any_store.update_run(run.id, run_dir="/r/2", config={"x": 1})
    assert (r.run_dir, r.config) == ("/r/2", {"x": 1})
    with pytest.raises(TypeError, match="set_status"):
        any_store.update_run(run.id, status="finished")
    done = any_store.set_status(run.id, "finished")
    assert done.status == "finished" and done.ended_at is not None and done.progress == 1.0
    assert done.ended_at.tzinfo == timezone.utc


def test_list_runs_filters_and_groups(any_store: RunStore):
    a = any_store.create_run("a", "copd", {}, group="g1")
    b = any_store.create_run("b", "mixed", {}, group="g2")
    c = any_store.create_run("c", "copd", {})
    any_store.set_status(b.id, "cancelled")
    assert [r.id for r in any_store.list_runs()] == [c.id, b.id, a.id]  # newest first
    assert [r.id for r in any_store.list_runs(status="cancelled")] == [b.id]
    assert [r.id for r in any_store.list_runs(status=["queued", "cancelled"], limit=2)] == [
        c.id, b.id
    ]  # fmt: skip
    assert [r.id for r in any_store.list_runs(method="copd", group="g1")] == [a.id]
    assert any_store.list_groups() == ["g1", "g2"]
    with pytest.raises(ValueError, match="unknown"):
        any_store.list_runs(status="done")
    with pytest.raises(KeyError, match="run 999 does not exist"):
        any_store.get_run(999)


def test_metrics_evals_events_checkpoints_round_trip(any_store: RunStore):
    run = any_store.create_run("a", "copd", {})
    pts = [
        MetricPoint("branch/add/reward/mean", 0.5, step=1, cycle=0, phase="rl", scope="add",
                    wall_time=100.25),
        MetricPoint("branch/add/reward/mean", 0.75, step=2, cycle=1, phase="opd", scope="add",
                    wall_time=101.5),
        MetricPoint("pair/add~rev/sym_kl", 1e-12, step=1, scope="add~rev", wall_time=100.0),
    ]  # fmt: skip
    any_store.log_metrics(run.id, pts)
    df = any_store.metric_series(run.id, ["branch/add/reward/mean", "pair/add~rev/sym_kl"])
    assert list(df.columns) == ["run_id", "key", "scope", "step", "cycle", "phase", "value",
                                "wall_time"]  # fmt: skip
    back = [
        MetricPoint(r.key, r.value, r.step, r.cycle, r.phase, r.scope, r.wall_time)
        for r in df.itertuples()
    ]
    assert back == sorted(pts, key=lambda p: (p.key, p.step))
    assert set(df["run_id"]) == {run.id}
    assert any_store.metric_keys(run.id) == ["branch/add/reward/mean", "pair/add~rev/sym_kl"]
    latest = any_store.latest_metrics(run.id)
    assert latest["branch/add/reward/mean"] == pts[1]
    assert any_store.latest_metrics(run.id, keys=["pair/add~rev/sym_kl"]) == {
        "pair/add~rev/sym_kl": pts[2]
    }

    evals = [
        Evaluation("merged", "add", 0.9, 64, 10, 5.0),
        Evaluation("add", "rev", 0.1, 64, 10, 6.0),
    ]
    any_store.log_evals(run.id, evals)
    edf = any_store.evaluations([run.id])
    assert list(edf.columns) == ["run_id", "model", "benchmark", "score", "n", "step", "wall_time"]
    assert [Evaluation(r.model, r.benchmark, r.score, r.n, r.step, r.wall_time)
            for r in edf.itertuples()] == evals  # fmt: skip

    for i in range(5):
        any_store.log_event(run.id, f"event {i}", level="warning" if i == 3 else "info", step=i)
    evs = any_store.events(run.id, limit=3)
    assert [e.message for e in evs] == ["event 2", "event 3", "event 4"]  # newest last
    assert evs[1].level == "warning" and evs[1].step == 3
    assert isinstance(evs[0], Event)

    assert any_store.latest_checkpoint(run.id) is None
    any_store.add_checkpoint(run.id, 10, "/ck/10", wall_time=1.0)
    any_store.add_checkpoint(run.id, 30, "/ck/30", wall_time=3.0)
    any_store.add_checkpoint(run.id, 20, "/ck/20", wall_time=2.0)
    assert any_store.latest_checkpoint(run.id) == Checkpoint(30, "/ck/30", 3.0)
    assert [c.step for c in any_store.checkpoints(run.id)] == [10, 20, 30]


def test_nan_inf_round_trip(any_store: RunStore):
    run = any_store.create_run("a", "copd", {})
    values = [1.0, math.nan, math.inf, -math.inf, 1.7976931348623157e308, -0.0, 5e-324]
    any_store.log_metrics(run.id, [MetricPoint("loss", v, step=i) for i, v in enumerate(values)])
    for i, v in enumerate(values):
        any_store.log_metrics(run.id, [MetricPoint(f"k{i}", v, step=0)])
    df = any_store.metric_series(run.id, ["loss"])
    got = df["value"].tolist()
    assert math.isnan(got[1]) and got[2] == math.inf and got[3] == -math.inf
    assert got[0] == 1.0 and got[4] == 1.7976931348623157e308 and got[6] == 5e-324
    latest = any_store.latest_metrics(run.id)
    for i, v in enumerate(values):
        w = latest[f"k{i}"].value
        assert (math.isnan(v) and math.isnan(w)) or w == v
    any_store.log_evals(
        run.id, [Evaluation("m", "b", math.nan, 1, 0), Evaluation("m", "b", -math.inf, 1, 1)]
    )
    scores = any_store.evaluations(run.id)["score"].tolist()
    assert math.isnan(scores[0]) and scores[1] == -math.inf


def test_status_machine(store: RunStore):
    run = store.create_run("a", "copd", {})
    with pytest.raises(IllegalTransition, match="'queued' to 'finished'"):
        store.set_status(run.id, "finished")
    with pytest.raises(ValueError, match="unknown"):
        store.set_status(run.id, "paused")
    store.set_status(run.id, "running")
    failed = store.set_status(run.id, "failed", error="boom")
    assert failed.error == "boom" and failed.ended_at is not None
    with pytest.raises(IllegalTransition, match="'failed' to 'running'"):
        store.set_status(run.id, "running")
    resumed = store.set_status(run.id, "queued")  # resume
    assert resumed.status == "queued" and resumed.ended_at is None and resumed.error is None
    store.mark_running(run.id, pid=1, pid_start_time=None, host="h")  # the launcher's child
    store.mark_running(run.id, pid=1, pid_start_time=2.0, host="h")  # which re-records itself
    assert store.get_run(run.id).pid_start_time == 2.0
    with pytest.raises(RunBusy, match="written by process 1 on h"):  # one writer per run
        store.mark_running(run.id, pid=2, pid_start_time=3.0, host="h", lease_s=60)
    store.mark_running(run.id, pid=2, pid_start_time=3.0, host="h", lease_s=0)  # 1 went stale
    assert store.get_run(run.id).pid == 2
    store.set_status(run.id, "finished")
    for target in ("queued", "running", "failed", "cancelled", "crashed"):
        with pytest.raises(IllegalTransition, match="final"):
            store.set_status(run.id, target)
    with pytest.raises(IllegalTransition):
        store.mark_running(run.id, pid=3, pid_start_time=None, host="h")
    for terminal in ("cancelled", "crashed"):
        r = store.create_run("b", "copd", {})
        store.set_status(r.id, "running")
        store.set_status(r.id, terminal)
        assert store.set_status(r.id, "queued").status == "queued"
    q = store.create_run("c", "copd", {})
    assert store.set_status(q.id, "cancelled").status == "cancelled"  # queued -> cancelled


def test_delete_cascades(store: RunStore):
    keep = store.create_run("keep", "copd", {})
    gone = store.create_run("gone", "copd", {})
    for r in (keep, gone):
        store.log_metrics(r.id, [MetricPoint("k", 1.0, step=s) for s in range(10)])
        store.log_evals(r.id, [Evaluation("m", "b", 0.5, 8, 1)])
        store.log_event(r.id, "hello")
        store.add_checkpoint(r.id, 5, "/ck")
    store.delete_run(gone.id)
    with pytest.raises(KeyError):
        store.get_run(gone.id)
    with store.db.session() as s:
        for table in ("metrics", "evaluations", "events", "checkpoints"):
            ids = {row[0] for row in s.connection().exec_driver_sql(f"SELECT run_id FROM {table}")}
            assert ids == {keep.id}, table
    assert store.metric_count(keep.id) == 10
    with pytest.raises(KeyError, match="does not exist"):
        store.delete_run(gone.id)
    with pytest.raises(KeyError, match="does not exist"):
        store.log_metrics(gone.id, [MetricPoint("k", 1.0, step=0)])


def test_sqlite_connection_settings(store: RunStore):
    with store.db.session() as s:
        pragma = {p: s.connection().exec_driver_sql(f"PRAGMA {p}").scalar()
                  for p in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")}  # fmt: skip
    assert pragma == {"journal_mode": "wal", "busy_timeout": 30000, "foreign_keys": 1,
                      "synchronous": 1}  # fmt: skip


def test_default_db_url(monkeypatch, tmp_path):
    monkeypatch.delenv("COPD_DB_URL", raising=False)
    monkeypatch.setenv("COPD_HOME", str(tmp_path / "home"))
    assert default_db_url() == f"sqlite:///{tmp_path / 'home' / 'copd.db'}"
    monkeypatch.delenv("COPD_HOME")
    assert default_db_url() == f"sqlite:///{os.path.expanduser('~/.copd/copd.db')}"
    monkeypatch.setenv("COPD_DB_URL", "postgresql+psycopg://u@h/db")
    assert default_db_url() == "postgresql+psycopg://u@h/db"
    monkeypatch.setenv("COPD_DB_URL", f"sqlite:///{tmp_path / 'env.db'}")
    s = RunStore.from_url()
    s.create_run("a", "m", {})
    s.close()
    assert (tmp_path / "env.db").exists()


def test_in_memory_store_is_shared_across_threads():
    import threading

    s = RunStore.from_url("sqlite://")
    run = s.create_run("a", "m", {})
    seen = []
    t = threading.Thread(target=lambda: seen.append(s.get_run(run.id).name))
    t.start()
    t.join()
    assert seen == ["a"]


def test_code_revision(tmp_path):
    rev = code_revision()
    assert rev is None or len(rev.split("-")[0]) >= 4
    assert code_revision(tmp_path) is None  # not a git checkout
    assert code_revision(tmp_path / "missing") is None
