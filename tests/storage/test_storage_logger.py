"""StoreLogger: buffered writes (nothing before a threshold), rows land after close, scopes."""

from __future__ import annotations

import math
import time

from storage import RunStore
from storage.logger import StoreLogger, scope_of


def test_scope_rule():
    assert scope_of("branch/add/reward/mean") == "add"
    assert scope_of("pair/add~rev/sym_kl") == "add~rev"
    assert scope_of("base/rev/overlap_top10") == "rev"
    assert scope_of("merged/reward/mean") == "merged"
    assert scope_of("time/rollout_s") == "" and scope_of("branch/x") == ""


def test_rows_land_after_close(store: RunStore):
    run = store.create_run("a", "copd", {})
    lg = StoreLogger(store, run.id, flush_every_s=3600, flush_every_n=10_000)
    for step in range(20):
        lg.log_metrics({"branch/add/loss/pg": step / 10, "pair/add~rev/sym_kl": math.nan,
                        "time/step_s": 0.05}, step=step, cycle=step // 10, phase="rl")  # fmt: skip
    lg.log_eval("merged", "add", 0.75, 64, step=19)
    lg.log_event("cycle done", level="info", step=19)
    lg.log_checkpoint("/ck/19", step=19)  # written at once, after the pending points
    assert store.latest_checkpoint(run.id).path == "/ck/19"
    lg.close()
    lg.close()  # idempotent
    assert store.metric_count(run.id) == 60
    df = store.metric_series(run.id, ["branch/add/loss/pg", "pair/add~rev/sym_kl"])
    pg = df[df["key"] == "branch/add/loss/pg"]
    assert pg["value"].tolist() == [s / 10 for s in range(20)]
    assert set(pg["scope"]) == {"add"} and set(pg["phase"]) == {"rl"}
    assert pg["cycle"].tolist() == [s // 10 for s in range(20)]
    kl = df[df["key"] == "pair/add~rev/sym_kl"]
    assert set(kl["scope"]) == {"add~rev"} and kl["value"].isna().all()
    assert store.evaluations(run.id)["score"].tolist() == [0.75]
    assert [e.message for e in store.events(run.id)] == ["cycle done"]


def test_buffered_until_threshold(store: RunStore):
    run = store.create_run("a", "copd", {})
    lg = StoreLogger(store, run.id, flush_every_s=3600, flush_every_n=100)
    for step in range(9):
        lg.log_metrics({f"k{i}": 1.0 for i in range(10)}, step=step)  # 90 points < 100
    lg.log_event("not yet")
    time.sleep(0.3)  # give a wrongly eager writer thread the chance to write
    assert store.metric_count(run.id) == 0 and store.events(run.id) == []
    assert lg.pending() == 91
    lg.log_metrics({f"k{i}": 1.0 for i in range(10)}, step=9)  # 100: wakes the writer
    deadline = time.monotonic() + 30
    while store.metric_count(run.id) < 100 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.metric_count(run.id) == 100
    lg.log_metrics({"late": 2.0}, step=10)
    lg.flush()
    assert store.metric_count(run.id) == 101
    lg.close()


def test_periodic_flush(store: RunStore):
    run = store.create_run("a", "copd", {})
    lg = StoreLogger(store, run.id, flush_every_s=0.05, flush_every_n=10_000)
    lg.log_metrics({"k": 1.0}, step=0)
    deadline = time.monotonic() + 30
    while store.metric_count(run.id) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.metric_count(run.id) == 1 and lg.points_written == 1
    lg.close()


def test_write_failure_keeps_points_for_retry(store: RunStore, capsys):
    run = store.create_run("a", "copd", {})
    lg = StoreLogger(store, run.id, flush_every_s=3600, flush_every_n=10_000)
    lg.log_metrics({"k": 1.0}, step=0)
    real = store.log_metric_rows

    def broken(*a, **k):
        raise RuntimeError("disk full")

    store.log_metric_rows = broken
    try:
        lg._write_pending(raise_errors=False)  # what the writer thread does
    finally:
        store.log_metric_rows = real
    assert "will retry" in capsys.readouterr().err and lg.pending() == 1
    lg.close()
    assert store.metric_count(run.id) == 1
