"""track_run: finished, failed (traceback stored), cancelled (RunCancelled, flag, Ctrl-C),
heartbeats with progress."""

from __future__ import annotations

import os
import time

import pytest

from storage import RunStore
from storage.tracking import RunCancelled, track_run


def test_finished_with_heartbeat_and_progress(store: RunStore):
    run = store.create_run("a", "copd", {})
    with track_run(store, run.id, heartbeat_s=0.05) as tr:
        r = store.get_run(run.id)
        assert r.status == "running" and r.pid == os.getpid() and r.pid_start_time > 0
        assert r.host and r.started_at is not None
        first_beat = r.heartbeat_at
        tr.progress = 0.4
        deadline = time.monotonic() + 30
        while store.get_run(run.id).progress != 0.4 and time.monotonic() < deadline:
            time.sleep(0.02)
        r = store.get_run(run.id)
        assert r.progress == 0.4 and r.heartbeat_at > first_beat
    r = store.get_run(run.id)
    assert r.status == "finished" and r.ended_at is not None and r.error is None


def test_failed_stores_traceback(store: RunStore):
    run = store.create_run("a", "copd", {})

    def deep_in_training():
        raise ValueError("loss exploded at step 7")

    with pytest.raises(ValueError), track_run(store, run.id, heartbeat_s=10):
        deep_in_training()
    r = store.get_run(run.id)
    assert r.status == "failed" and r.ended_at is not None
    assert r.error.startswith("ValueError: loss exploded at step 7")
    assert "Traceback" in r.error and "deep_in_training" in r.error
    assert len(r.error) < 4500


def test_cancelled_by_run_cancelled(store: RunStore):
    run = store.create_run("a", "copd", {})
    with track_run(store, run.id, heartbeat_s=10) as tr:
        tr.progress = 0.3
        raise RunCancelled("SIGTERM")
    r = store.get_run(run.id)
    assert r.status == "cancelled" and r.progress == 0.3 and tr.cancelled


def test_cancelled_by_flag_and_keyboard_interrupt(store: RunStore):
    a = store.create_run("a", "copd", {})
    with track_run(store, a.id, heartbeat_s=10) as tr:
        tr.cancelled = True
    assert store.get_run(a.id).status == "cancelled"
    b = store.create_run("b", "copd", {})
    with pytest.raises(KeyboardInterrupt), track_run(store, b.id, heartbeat_s=10):
        raise KeyboardInterrupt
    assert store.get_run(b.id).status == "cancelled"


def test_system_exit(store: RunStore):
    ok = store.create_run("ok", "copd", {})
    with pytest.raises(SystemExit), track_run(store, ok.id, heartbeat_s=10):
        raise SystemExit(0)
    assert store.get_run(ok.id).status == "finished"
    bad = store.create_run("bad", "copd", {})
    with pytest.raises(SystemExit), track_run(store, bad.id, heartbeat_s=10):
        raise SystemExit(3)
    assert store.get_run(bad.id).status == "failed"


def test_run_moved_meanwhile_keeps_its_status(store: RunStore, capsys):
    run = store.create_run("a", "copd", {})
    with track_run(store, run.id, heartbeat_s=10):
        store.set_status(run.id, "crashed")  # e.g. a supervisor gave up on it
    assert store.get_run(run.id).status == "crashed"
    assert "final status not recorded" in capsys.readouterr().err
