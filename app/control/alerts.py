"""Alerts: rules evaluated on a run's stored metrics and status, recorded as events.

    alerts = evaluate(run, series, now=time.time())   # pure: which rules fire now
    check_run(store, run)                             # evaluate, record the new ones once
    watcher = AlertWatcher(store); watcher.tick()     # the supervisor's pass over the runs
    copd alerts [--run ID] [--check]                  # list them (and evaluate first)

Rules (thresholds per run in the config's `alerts` section, copd/spec/runtime.py):
`nonfinite` (a NaN/inf in a loss or a reward), `reward_collapse` (a branch's reward falls
below (1 - reward_drop) x its best so far), `overlap_low` (the latest mean top-k overlap
between a CoPD run's branches below overlap_min; independent experts drift apart by
design), `heartbeat_stalled` (a running run's heartbeat older
than stall_s) and `crashed` (the run ended crashed or failed). Each fires at most once per
(run, rule): an alert is an event of level "alert" whose message starts with the rule's
name, so any process can tell it was already recorded. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from copd.common import names as N
from copd.spec import ConfigError
from copd.spec.runtime import (
    AlertsConfig,
)
from copd.spec.serialize import from_dict

if TYPE_CHECKING:
    from storage import Event, Run, RunStore

ALERT_LEVEL = "alert"
RULES = ("nonfinite", "reward_collapse", "overlap_low", "heartbeat_stalled", "crashed")
OVERLAP_SUFFIX = "/" + N.overlap_key(10)
REWARD_SUFFIX = "/" + N.REWARD_MEAN
OVERLAP_METHODS = ("copd",)  # methods whose branches are meant to stay close
SMOOTH_POINTS = 3  # the reward rule compares means of this many points, not single ones
EVENT_LIMIT = 100_000  # every event of a run, when looking for its recorded alerts
RECHECK_S = 10.0  # a running run's metrics are re-read at most this often
RECENT_S = 7 * 24 * 3600.0  # ended runs the watcher checks once after it starts


@dataclass(frozen=True)
class Alert:
    """One fired rule of one run."""

    run_id: int
    rule: str
    message: str  # starts with "<rule>: "
    step: int | None = None


def thresholds(config: dict | None) -> AlertsConfig:
    """The run's `alerts` section (defaults for runs recorded before it existed, or for a
    section that does not parse)."""
    section = (config or {}).get("alerts")
    if not isinstance(section, dict):
        return AlertsConfig()
    try:
        return from_dict(AlertsConfig, section, "alerts")
    except ConfigError:
        return AlertsConfig()


def watched_keys(keys: list[str]) -> list[str]:
    """The metric keys the rules read: losses and rewards (branch/*/loss*, branch/*/reward*)
    and the branch-pair overlaps."""
    return [
        k
        for k in keys
        if (N.parse(k).kind == "branch" and N.parse(k).key.startswith(("loss", "reward")))
        or (N.parse(k).kind == "pair" and k.endswith(OVERLAP_SUFFIX))
    ]


def _utc_ts(dt: datetime | None) -> float | None:
    if dt is None:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def evaluate(run: Run, series: pd.DataFrame, now: float | None = None) -> list[Alert]:
    """The rules that hold for `run` now, given its watched series (the store's long
    frame: key, step, value, ...). Pure; the caller records each alert once."""
    from storage import RunStatus  # here: `copd --help` loads this module, not the store

    cfg = thresholds(run.config)
    if not cfg.enabled:
        return []
    now = time.time() if now is None else now
    out: list[Alert] = []
    rid = run.id

    def add(rule: str, text: str, step: Any = None) -> None:
        out.append(Alert(rid, rule, f"{rule}: {text}", None if step is None else int(step)))

    df = series if len(series) else pd.DataFrame(columns=["key", "step", "value"])
    vals = df["value"].to_numpy(dtype=float) if len(df) else np.array([])
    if cfg.nonfinite and len(df):
        bad = df[~np.isfinite(vals) & (df["key"].map(lambda k: N.parse(k).kind) != "pair")]
        if len(bad):
            first = bad.sort_values("step").iloc[0]
            v = float(first["value"])
            word = "NaN" if math.isnan(v) else ("+inf" if v > 0 else "-inf")
            add(
                "nonfinite", f"{first['key']} is {word} at step {int(first['step'])}", first["step"]
            )
    if cfg.reward_drop > 0 and len(df):
        for key, g in df[df["key"].str.endswith(REWARD_SUFFIX)].groupby("key", sort=True):
            g = g.sort_values("step")
            v = g["value"].to_numpy(dtype=float)
            ok = np.isfinite(v)
            if ok.sum() < SMOOTH_POINTS + 1:
                continue
            smooth = pd.Series(v[ok]).rolling(SMOOTH_POINTS).mean().dropna().to_numpy()
            best, latest = float(smooth.max()), float(smooth[-1])
            if best >= cfg.reward_min_best and latest < (1 - cfg.reward_drop) * best:
                step = g["step"].to_numpy()[ok][-1]
                add(
                    "reward_collapse",
                    f"{key} fell to {latest:.3f} (best {best:.3f}) by step {int(step)}",
                    step,
                )
                break
    # Only where branches teach each other: independent experts drift apart by design.
    if cfg.overlap_min > 0 and len(df) and getattr(run, "method", "copd") in OVERLAP_METHODS:
        ov = df[df["key"].str.endswith(OVERLAP_SUFFIX) & np.isfinite(vals)]
        if len(ov):
            last = int(ov["step"].max())
            mean = float(ov.loc[ov["step"] == last, "value"].mean())
            if mean < cfg.overlap_min:
                add(
                    "overlap_low",
                    f"top-10 overlap between branches {mean:.3f} < {cfg.overlap_min:g} "
                    f"at step {last}",
                    last,
                )
    if cfg.stall_s > 0 and run.status == RunStatus.RUNNING:
        beat = _utc_ts(run.heartbeat_at) or _utc_ts(run.started_at)
        if beat is not None and now - beat > cfg.stall_s:
            add("heartbeat_stalled", f"no heartbeat for {now - beat:.0f} s (> {cfg.stall_s:g} s)")
    if cfg.crashed and run.status in (RunStatus.CRASHED, RunStatus.FAILED):
        first = (run.error or "").strip().splitlines()
        add("crashed", f"run {run.status}" + (f": {first[0]}" if first else ""))
    return out


# ---------------------------------------------------------------------- the store side
def alert_events(store: RunStore, run_id: int) -> list[Event]:
    """The run's recorded alerts (events of level "alert"), oldest first."""
    return [e for e in store.events(run_id, limit=EVENT_LIMIT) if e.level == ALERT_LEVEL]


def rule_of(message: str) -> str:
    return message.split(":", 1)[0].strip()


def check_run(store: RunStore, run: Run, now: float | None = None) -> list[Alert]:
    """Evaluate the rules on `run`'s stored metrics and record the alerts not recorded yet
    (one per rule); returns the newly recorded ones."""
    keys = watched_keys(store.metric_keys(run.id))
    series = store.metric_series([run.id], keys, max_points=500) if keys else pd.DataFrame()
    fired = evaluate(run, series, now)
    if not fired:
        return []
    seen = {rule_of(e.message) for e in alert_events(store, run.id)}
    new = [a for a in fired if a.rule not in seen]
    for a in new:
        store.log_event(run.id, a.message, level=ALERT_LEVEL, step=a.step)
    return new


def alert_counts(store: RunStore, runs: list[Run]) -> dict[int, int]:
    """run id -> number of recorded alerts of `runs` (runs without any left out), in one
    read of the store."""
    counts = store.event_counts(ALERT_LEVEL)
    return {r.id: counts[r.id] for r in runs if counts.get(r.id)}


class AlertWatcher:
    """The supervisor's alert pass: running runs at most every `recheck_s`, runs that ended
    (recently, or while it watched) once more after they end."""

    def __init__(self, store: RunStore, recheck_s: float = RECHECK_S, recent_s: float = RECENT_S):
        self.store = store
        self.recheck_s = recheck_s
        self.recent_s = recent_s
        self.started = time.time()
        self._last: dict[int, float] = {}
        self._final: set[int] = set()  # ended runs already checked in their end state

    def tick(self, now: float | None = None) -> list[Alert]:
        from storage import RunStatus

        now = time.time() if now is None else now
        new: list[Alert] = []
        for run in self.store.list_runs():
            if run.status == RunStatus.QUEUED:
                continue
            if run.status == RunStatus.RUNNING:
                if now - self._last.get(run.id, 0.0) < self.recheck_s:
                    continue
                self._final.discard(run.id)  # resumed: check its new end too
            else:
                ended = _utc_ts(run.ended_at) or now
                if run.id in self._final or (
                    run.id not in self._last and ended < self.started - self.recent_s
                ):
                    continue
                self._final.add(run.id)
            self._last[run.id] = now
            try:
                new += check_run(self.store, run, now)
            except Exception as exc:  # one run's bad data must not stop the others
                print(f"copd alerts: run {run.id}: {exc!r}", file=sys.stderr)
        return new


# ---------------------------------------------------------------------- CLI
def register(subparsers: Any) -> None:
    """Add `copd alerts` to copd's argparse subparsers."""
    p = subparsers.add_parser(
        "alerts", help="list the alerts recorded for runs (NaN, reward collapse, low overlap, ...)"
    )
    p.add_argument("--run", type=int, default=None, help="only this run")
    p.add_argument(
        "--check",
        action="store_true",
        help="evaluate the rules on the stored metrics first (the supervisor does this by itself)",
    )
    p.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    p.set_defaults(func=cmd_alerts)


def cmd_alerts(args: argparse.Namespace) -> int:
    from storage import RunStore

    store = RunStore.from_url(args.db)
    runs = [store.get_run(args.run)] if args.run is not None else store.list_runs()
    if args.check:
        for run in runs:
            check_run(store, run)
    n = 0
    for run in runs:
        for e in alert_events(store, run.id):
            when = datetime.fromtimestamp(e.wall_time, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            step = "" if e.step is None else e.step
            print(f"{run.id}\t{run.name}\t{rule_of(e.message)}\t{step}\t{when}\t{e.message}")
            n += 1
    if not n:
        print("no alerts", file=sys.stderr)
    return 0
