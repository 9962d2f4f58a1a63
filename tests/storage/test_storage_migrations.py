"""Alembic migrations: a database at revision 0001 is upgraded in place on open, data kept;
the ORM models equal the head schema; concurrent first opens do not race."""

from __future__ import annotations

import multiprocessing as mp

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from storage import MetricPoint, RunStore, StoreError
from storage.db import make_engine
from storage.migrate import current_revision, head_revision, upgrade_database
from storage.models import Base


def test_upgrade_from_0001_keeps_data(db_url: str):
    upgrade_database(db_url, revision="0001")
    eng = make_engine(db_url)
    assert current_revision(eng) == "0001"
    cols = {c["name"] for c in sa.inspect(eng).get_columns("runs")}
    assert "cpu_slots" not in cols and "code_revision" not in cols
    with eng.begin() as conn:  # a run written by the old schema, with child rows
        conn.exec_driver_sql(
            "INSERT INTO runs (id, name, method, run_group, status, config, seed, created_at,"
            " progress, requested_gpus) VALUES (1, 'old', 'copd', 'g', 'finished',"
            " '{\"lr\": 0.1}', 7, '2026-01-02 03:04:05.000000', 1.0, 0)"
        )
        for step in range(3):
            conn.exec_driver_sql(
                "INSERT INTO metrics (run_id, step, cycle, phase, scope, key, value, is_nan,"
                f" is_inf, wall_time) VALUES (1, {step}, 0, 'rl', '', 'loss', {step}.5, 0, 0, 1.0)"
            )
        conn.exec_driver_sql(
            "INSERT INTO checkpoints (run_id, step, path, wall_time) VALUES (1, 2, '/ck', 1.0)"
        )
    eng.dispose()

    store = RunStore.from_url(db_url)  # upgrades to head on open
    assert current_revision(store.db.engine) == head_revision()
    run = store.get_run(1)
    assert (run.name, run.group, run.status, run.config, run.seed) == (
        "old", "g", "finished", {"lr": 0.1}, 7
    )  # fmt: skip
    assert run.cpu_slots == 1 and run.code_revision is None  # the new columns' defaults
    assert store.metric_series(1, ["loss"])["value"].tolist() == [0.5, 1.5, 2.5]
    assert store.latest_checkpoint(1).path == "/ck"
    new = store.create_run("new", "copd", {}, cpu_slots=3, code_revision="abc")
    assert (store.get_run(new.id).cpu_slots, store.get_run(new.id).code_revision) == (3, "abc")
    # 0003 filled the latest-value summary from the rows the old schema wrote
    latest = store.latest_metrics(1)
    assert (latest["loss"].step, latest["loss"].value) == (2, 2.5)
    store.log_metrics(1, [MetricPoint("loss", 9.0, step=3)])
    assert store.latest_metrics(1)["loss"].value == 9.0
    store.close()


def test_upgrade_from_0003_gives_runs_notes_and_tags(db_url: str):
    """A store of the schema before tags and notes (0003): its runs come back with empty
    notes and no tags, and take both afterwards; deleting a run deletes its tags."""
    upgrade_database(db_url, revision="0003")
    eng = make_engine(db_url)
    assert "notes" not in {c["name"] for c in sa.inspect(eng).get_columns("runs")}
    assert "run_tags" not in sa.inspect(eng).get_table_names()
    with eng.begin() as conn:
        for rid in (1, 2):
            conn.exec_driver_sql(
                "INSERT INTO runs (id, name, method, run_group, status, config, seed, created_at,"
                " progress, requested_gpus, cpu_slots) VALUES"
                f" ({rid}, 'old{rid}', 'copd', 'g', 'finished', '{{\"opd\": {{\"beta\": {rid}}}}}',"
                " 0, '2026-01-02 03:04:05.000000', 1.0, 0, 1)"
            )
    eng.dispose()

    store = RunStore.from_url(db_url)
    assert current_revision(store.db.engine) == head_revision()
    old = store.get_run(1)
    assert (old.notes, old.tags, old.config) == ("", (), {"opd": {"beta": 1}})
    store.edit_tags(1, add=["ablation", "beta"])
    store.set_notes(2, "kept")
    assert [r.id for r in store.list_runs(where='"ablation" in tags')] == [1]
    assert [r.id for r in store.list_runs(where="opd.beta >= 2")] == [2]
    assert store.get_run(2).notes == "kept"
    store.delete_run(1)
    with store.db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM run_tags").scalar() == 0
    store.close()


def test_models_match_head_schema(store: RunStore):
    with store.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], "storage/models.py and the migrations disagree: add a revision"


def _open_and_write(url: str, q) -> None:
    store = RunStore.from_url(url)
    run = store.create_run("p", "copd", {})
    store.log_metrics(run.id, [MetricPoint("k", 1.0, step=0)])
    q.put(run.id)
    store.close()


def test_parallel_first_open(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_open_and_write, args=(url, q)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    ids = sorted(q.get(timeout=5) for _ in procs)
    store = RunStore.from_url(url)
    assert [r.id for r in store.list_runs()] == ids[::-1]
    assert store.metric_count(ids) == 3


def test_unknown_newer_revision_is_refused(db_url: str):
    RunStore.from_url(db_url).close()
    eng = make_engine(db_url)
    with eng.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    eng.dispose()
    with pytest.raises(StoreError, match="'9999', which this copd does not know"):
        RunStore.from_url(db_url)
