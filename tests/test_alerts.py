"""Alerts: each rule on a small series, once per (run, rule) in the store, the supervisor's
watcher, per-run thresholds from the config, and `copd alerts`."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from app.control import alerts
from copd.spec import ConfigError, RunConfig
from storage import RunStore
from storage.entities import MetricPoint


def _run(status="running", config=None, heartbeat_age_s=1.0, error=None, rid=1):
    now = datetime.now(timezone.utc)
    return SimpleNamespace(
        id=rid, status=status, method="copd",
        config=config if config is not None else RunConfig().to_dict(),
        heartbeat_at=now - timedelta(seconds=heartbeat_age_s), started_at=now, ended_at=None,
        error=error,
    )  # fmt: skip


def _series(rows):
    return pd.DataFrame(rows, columns=["key", "step", "value"])


def _rules(found):
    return [a.rule for a in found]


def test_nonfinite_loss_or_reward_fires_with_the_first_step():
    s = _series([
        ("branch/add/reward/mean", 1, 0.5), ("branch/add/loss/pg", 2, np.nan),
        ("branch/add/loss/pg", 3, np.inf), ("pair/add~rev/overlap_top10", 2, 0.6),
    ])  # fmt: skip
    found = alerts.evaluate(_run(), s)
    assert _rules(found) == ["nonfinite"]
    assert found[0].message == "nonfinite: branch/add/loss/pg is NaN at step 2"
    assert found[0].step == 2
    assert alerts.evaluate(_run(), s.iloc[[0, 3]]) == []


def test_reward_collapse_compares_smoothed_reward_with_its_best():
    up = [("branch/add/reward/mean", i, v) for i, v in enumerate([0.2, 0.5, 0.6, 0.62, 0.6])]
    assert alerts.evaluate(_run(), _series(up)) == []
    down = up + [("branch/add/reward/mean", 5 + i, 0.05) for i in range(3)]
    found = alerts.evaluate(_run(), _series(down))
    assert _rules(found) == ["reward_collapse"] and "best 0.607" in found[0].message
    one_dip = up + [("branch/add/reward/mean", 5, 0.0)]  # one bad step is noise
    assert alerts.evaluate(_run(), _series(one_dip)) == []
    cfg = RunConfig().to_dict()
    cfg["alerts"]["reward_drop"] = 0.0  # off per run
    assert alerts.evaluate(_run(config=cfg), _series(down)) == []


def test_overlap_below_threshold_uses_the_latest_step_mean():
    rows = [("pair/add~rev/overlap_top10", 0, 0.5), ("pair/rev~add/overlap_top10", 0, 0.5),
            ("pair/add~rev/overlap_top10", 10, 0.05), ("pair/rev~add/overlap_top10", 10, 0.09)]  # fmt: skip
    found = alerts.evaluate(_run(), _series(rows))
    assert _rules(found) == ["overlap_low"] and "0.070 < 0.1 at step 10" in found[0].message
    assert alerts.evaluate(_run(), _series(rows[:2])) == []
    experts = _run()
    experts.method = "expert"  # their branches never distill: drifting apart is the point
    assert alerts.evaluate(experts, _series(rows)) == []


def test_heartbeat_stall_and_crash():
    assert _rules(alerts.evaluate(_run(heartbeat_age_s=400), _series([]))) == ["heartbeat_stalled"]
    assert alerts.evaluate(_run(heartbeat_age_s=10), _series([])) == []
    crashed = _run(status="crashed", error="process exited with code -9\nTraceback")
    found = alerts.evaluate(crashed, _series([]))
    assert found[0].message == "crashed: run crashed: process exited with code -9"
    off = RunConfig().to_dict()
    off["alerts"]["enabled"] = False
    assert alerts.evaluate(_run(status="failed", config=off), _series([])) == []


def test_alerts_section_is_checked():
    with pytest.raises(ConfigError, match="alerts.overlap_min"):
        RunConfig.from_dict({"alerts": {"overlap_min": 2}}).validate()
    assert alerts.thresholds({}).overlap_min == 0.1  # runs recorded before the section
    assert alerts.thresholds({"alerts": {"nope": 1}}).enabled  # unreadable: the defaults


def test_each_alert_is_recorded_once_per_run_and_rule(tmp_path):
    store = RunStore.from_url(f"sqlite:///{tmp_path / 'a.db'}")
    run = store.create_run("nan", "copd", RunConfig().to_dict())
    store.mark_running(run.id, pid=999_999, pid_start_time=0.0, host="h")
    store.log_metrics(run.id, [MetricPoint("branch/add/reward/mean", 0.4, 1, 0, "rl", "add"),
                               MetricPoint("branch/add/reward/mean", float("nan"), 2, 0, "rl", "add")])  # fmt: skip
    store.log_event(run.id, "phase II started", step=1)
    watcher = alerts.AlertWatcher(store, recheck_s=0.0)
    first = watcher.tick()
    assert [(a.run_id, a.rule) for a in first] == [(run.id, "nonfinite")]
    for _ in range(3):  # every tick sees the NaN again: nothing new is recorded
        assert watcher.tick() == []
    assert alerts.AlertWatcher(store, recheck_s=0.0).tick() == []  # nor by another process
    store.set_status(run.id, "failed", error="loss became NaN")
    assert _rules(watcher.tick()) == ["crashed"]
    assert watcher.tick() == []
    events = alerts.alert_events(store, run.id)
    assert [alerts.rule_of(e.message) for e in events] == ["nonfinite", "crashed"]
    assert all(e.level == "alert" for e in events)
    assert alerts.alert_counts(store, store.list_runs()) == {run.id: 2}


def test_watcher_rechecks_a_running_run_at_most_every_recheck_s(tmp_path):
    store = RunStore.from_url(f"sqlite:///{tmp_path / 'b.db'}")
    run = store.create_run("r", "copd", RunConfig().to_dict())
    store.mark_running(run.id, pid=999_999, pid_start_time=0.0, host="h")
    watcher = alerts.AlertWatcher(store, recheck_s=60.0)
    now = time.time()
    assert watcher.tick(now) == []
    store.log_metrics(run.id, [MetricPoint("branch/add/loss/pg", float("inf"), 3, 0, "rl", "add")])
    assert watcher.tick(now + 1) == []  # not re-read yet
    assert _rules(watcher.tick(now + 61)) == ["nonfinite"]


def test_copd_alerts_lists_and_checks(tmp_path, capsys):
    from copd.cli import main

    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = RunStore.from_url(url)
    run = store.create_run("boom", "copd", RunConfig().to_dict())
    store.log_metrics(
        run.id, [MetricPoint("branch/rev/reward/mean", float("nan"), 4, 0, "rl", "rev")]
    )
    assert main(["alerts", "--db", url]) == 0
    assert "no alerts" in capsys.readouterr().err
    assert main(["alerts", "--db", url, "--check"]) == 0
    out = capsys.readouterr().out
    assert f"{run.id}\tboom\tnonfinite\t4\t" in out and "branch/rev/reward/mean is NaN" in out
    assert main(["alerts", "--db", url, "--run", str(run.id), "--check"]) == 0
    assert capsys.readouterr().out.count("nonfinite") == 2  # once in the tag, once in the text
