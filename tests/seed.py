"""Seed a run store with realistic runs for the dashboard tests (and for demos).

    from tests.seed import seed_store
    ids = seed_store("sqlite:///tmp/x.db")   # SeededRuns(finished=1, running=2, ...)

What it writes: a finished CoPD run (branches add/rev, 60 steps over 6 cycles of 6 RL + 4
OPD steps, pair overlaps, symmetric KL, rewards per domain, time/*, system/*, evaluations
of both branches and the merged model at several steps); a running run (this process's own
pid, fresh heartbeat, so a supervisor sees it alive); a crashed run with a traceback; a
run whose metrics hold NaN and inf; and a group "seeds-demo" of 3 seeds x 2 methods (copd,
mixed) for the Compare page.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field

import psutil

from copd.spec import RunConfig
from storage import RunStore
from storage.entities import Evaluation, MetricPoint

BRANCHES = ("add", "rev")
CYCLES, RL_STEPS, OPD_STEPS = 6, 6, 4
GROUP = "seeds-demo"
TRACEBACK = """Traceback (most recent call last):
  File "copd/train/world.py", line 212, in train
    loss.backward()
RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"""


@dataclass
class SeededRuns:
    """Run ids by role."""

    finished: int = 0
    running: int = 0
    crashed: int = 0
    nan: int = 0
    group: list[int] = field(default_factory=list)


def _config(method: str = "copd", seed: int = 0, name: str = "copd-demo", group=None) -> dict:
    cfg = RunConfig(name=name, method=method, seed=seed, group=group).to_dict()  # type: ignore[arg-type]
    cfg["schedule"].update(cycles=CYCLES, rl_steps=RL_STEPS, opd_steps=OPD_STEPS)
    return cfg


def training_points(n_steps: int, seed: int = 0, t0: float | None = None, lift: float = 0.0):
    """Metric points of a CoPD run: rewards rise, overlaps rise in OPD phases."""
    t0 = time.time() - 3600 if t0 is None else t0
    pts: list[MetricPoint] = []
    per_cycle = RL_STEPS + OPD_STEPS
    for step in range(n_steps):
        cycle = step // per_cycle
        phase = "rl" if step % per_cycle < RL_STEPS else "opd"
        wall = t0 + 2.0 * step
        wobble = 0.02 * math.sin(step * 1.3 + seed)
        frac = step / max(n_steps - 1, 1)
        for b, other in (("add", "rev"), ("rev", "add")):
            base = 0.3 + 0.5 * frac + lift + wobble
            if step and (step - 1) % per_cycle >= RL_STEPS:  # phase II, as the trainer logs it
                pts.append(
                    MetricPoint(
                        f"branch/{b}/reward_on/{other}", base * 0.6, step, cycle, phase, b, wall
                    )
                )
            pts += [
                MetricPoint(f"branch/{b}/reward/mean", base, step, cycle, phase, b, wall),
                MetricPoint(f"branch/{b}/reward_on/{b}", base, step, cycle, phase, b, wall),
                MetricPoint(f"branch/{b}/loss/pg", 0.1 - 0.05 * frac, step, cycle, phase, b, wall),
                MetricPoint(
                    f"branch/{b}/signal_frac", 0.8 - 0.5 * frac, step, cycle, phase, b, wall
                ),
            ]
            scope = f"{b}~{other}"
            overlap = 0.4 + 0.4 * frac + (0.05 if phase == "opd" else 0.0) + wobble
            pts += [
                MetricPoint(
                    f"pair/{scope}/overlap_top10", overlap, step, cycle, phase, scope, wall
                ),
                MetricPoint(
                    f"pair/{scope}/sym_kl", 2.0 * (1.1 - frac), step, cycle, phase, scope, wall
                ),
                MetricPoint(
                    f"base/{b}/overlap_top10", 0.9 - 0.2 * frac, step, cycle, phase, b, wall
                ),
            ]
        for key, v in (("rollout_s", 0.8), ("update_s", 0.5), ("diagnostics_s", 0.2)):
            pts.append(MetricPoint(f"time/{key}", v, step, cycle, phase, "", wall))
        if phase == "opd":
            pts.append(MetricPoint("time/teacher_s", 0.4, step, cycle, phase, "", wall))
        pts += [
            MetricPoint("system/cpu_percent", 150 + 10 * wobble, step, cycle, phase, "", wall),
            MetricPoint("system/rss_mb", 900 + step, step, cycle, phase, "", wall),
            MetricPoint("run/progress", (step + 1) / n_steps, step, cycle, phase, "", wall),
        ]
    return pts


def evaluations(
    steps: list[int], lift: float = 0.0, t0: float | None = None, models: tuple[str, ...] = ()
) -> list[Evaluation]:
    """Both branches and the merged model (or `models`) on both domains at each step."""
    t0 = time.time() - 3600 if t0 is None else t0
    out = []
    for step in steps:
        g = step / max(steps[-1], 1)
        for model in models or (*BRANCHES, "merged"):
            for bench in BRANCHES:
                native = model == bench or model in ("merged", "mixed")
                score = (0.3 + 0.5 * g if native else 0.2 + 0.3 * g) + lift
                out.append(Evaluation(model, bench, min(score, 1.0), 128, step, t0 + 2.0 * step))
    return out


def _finish(store: RunStore, run_id: int, status: str = "finished", error: str | None = None):
    store.mark_running(run_id, pid=999_999, pid_start_time=0.0, host="seed-host")
    store.set_status(run_id, status, error=error)


def seed_store(url: str) -> SeededRuns:
    store = RunStore.from_url(url)
    out = SeededRuns()
    n = CYCLES * (RL_STEPS + OPD_STEPS)
    steps = [0, 20, 40, n]

    r = store.create_run("copd-demo", "copd", _config())
    store.log_metrics(r.id, training_points(n))
    store.log_evals(r.id, evaluations(steps))
    store.log_event(r.id, "phase II (mutual OPD) started", step=6)
    store.log_event(r.id, "merged branches (average)", step=n)
    _finish(store, r.id)
    out.finished = r.id

    r = store.create_run("copd-live", "copd", _config(name="copd-live"))
    me = psutil.Process(os.getpid())
    store.mark_running(
        r.id, pid=os.getpid(), pid_start_time=me.create_time(), host=socket.gethostname()
    )
    store.log_metrics(r.id, training_points(25, t0=time.time() - 50))
    store.log_evals(r.id, evaluations([0, 20]))
    store.heartbeat(r.id, progress=25 / n)
    out.running = r.id

    r = store.create_run("copd-oom", "copd", _config(name="copd-oom"))
    store.log_metrics(r.id, training_points(8))
    store.log_event(r.id, "trainer died", level="error", step=8)
    _finish(store, r.id, "crashed", error="process exited with code -9\n" + TRACEBACK)
    out.crashed = r.id

    r = store.create_run("copd-nan", "copd", _config(name="copd-nan"))
    pts = training_points(20)
    pts += [
        MetricPoint("branch/add/reward/mean", float("nan"), 20, 2, "rl", "add"),
        MetricPoint("branch/add/reward/mean", float("nan"), 21, 2, "rl", "add"),
        # the trainer logs a branch's phase-I reward under both names (the same number)
        MetricPoint("branch/add/reward_on/add", float("nan"), 20, 2, "rl", "add"),
        MetricPoint("branch/add/reward_on/add", float("nan"), 21, 2, "rl", "add"),
        MetricPoint("pair/add~rev/sym_kl", float("inf"), 21, 2, "rl", "add~rev"),
    ]
    store.log_metrics(r.id, pts)
    _finish(store, r.id, "failed", error="loss became NaN at step 20")
    out.nan = r.id

    for method, lift in (("copd", 0.1), ("mixed", 0.0)):
        for seed in range(3):
            name = f"{GROUP}-{method}-s{seed}"
            cfg = _config(method=method, seed=seed, name=name, group=GROUP)
            r = store.create_run(name, method, cfg, seed=seed, group=GROUP)
            store.log_metrics(r.id, training_points(n, seed=seed, lift=lift))
            models = ("mixed",) if method == "mixed" else ()  # mixed GRPO: one policy
            store.log_evals(r.id, evaluations(steps, lift=lift + 0.01 * seed, models=models))
            _finish(store, r.id)
            out.group.append(r.id)
    store.close()
    return out
