"""A stand-in for `python -m copd train` that logs the metrics a CoPD or expert run logs, on
the run's own schedule, in seconds and without torch: for browser tests of the dashboard,
where the charts, not the training, are the point.

    python tests/fake_copd_trainer.py CONFIG --out DIR --db URL --run-id N [--resume DIR]
    COPD_TRAINER="python tests/fake_copd_trainer.py" copd dashboard    # what the tests do

Steps 1..schedule.total_steps() of FAKE_STEP_S seconds each (env, default 0.05). Every step:
rewards per branch, a policy loss, timing, run/progress; at step 0, every diag_every steps
and at each phase end: top-10 overlap and symmetric KL for both ordered pairs, vs-base
overlap and process metrics. CoPD's overlap climbs in phase II and sags in phase I (the
paper's saw-tooth); independent experts drift apart. A run whose name ends in `-nan` logs
a NaN reward from step 5 on. Records running / finished like the real trainer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage import RunStore  # noqa: E402
from storage.entities import MetricPoint  # noqa: E402
from storage.tracking import track_run  # noqa: E402


def overlap_at(method: str, step: int, rl: int, opd: int) -> float:
    period = rl + opd
    if method != "copd":
        return 0.9 * math.exp(-step / 40.0) + 0.05
    cycle, pos = divmod(step, period)
    level = 0.55 + 0.2 * (1 - math.exp(-cycle / 3))
    if step == 0:
        return 0.9
    if pos == 0 or pos > rl:  # in (or at the end of) phase II: pulled together
        return level + 0.1 * ((pos or period) - rl) / max(opd, 1)
    return level + 0.1 - 0.12 * pos / max(rl, 1)  # phase I: drifting apart again


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("--out", required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--run-id", type=int, required=True)
    p.add_argument("--resume", default=None)
    args = p.parse_args()
    cfg = json.loads(Path(args.config).read_text())
    sc = cfg["schedule"]
    rl, opd, cycles = int(sc["rl_steps"]), int(sc["opd_steps"]), int(sc["cycles"])
    diag_every = int(sc.get("diag_every", 2)) or 1
    total = cycles * (rl + opd)
    method = cfg.get("method", "copd")
    names = [b["name"] for b in cfg["branches"]]
    nan_from = 5 if str(cfg.get("name", "")).endswith("-nan") else None
    step_s = float(os.environ.get("FAKE_STEP_S", "0.05"))
    store = RunStore.from_url(args.db)
    print(f"fake copd trainer: {method}, {total} steps", flush=True)

    def point(key, value, step, scope=""):
        cycle, pos = divmod(max(step - 1, 0), rl + opd)
        phase = "opd" if method == "copd" and pos >= rl else "rl"
        return MetricPoint(key, float(value), step, cycle, phase, scope, time.time())

    def diagnostics(step: int) -> list[MetricPoint]:
        ov = overlap_at(method, step, rl, opd)
        kl = 0.0 if step == 0 else (1 - ov) ** 2 * 0.5
        pts = []
        for s in names:
            for t in names:
                if s != t:
                    pts += [
                        point(f"pair/{s}~{t}/overlap_top10", ov, step, f"{s}~{t}"),
                        point(f"pair/{s}~{t}/sym_kl", kl, step, f"{s}~{t}"),
                    ]
            pts.append(point(f"base/{s}/overlap_top10", 1 - step / (2 * total), step, s))
        pts += [
            point("system/rss_mb", 900 + (step % 3), step),
            point("system/cpu_percent", 0.0, step),  # what a fresh psutil.Process reports
        ]
        return pts

    with track_run(store, args.run_id, float(os.environ.get("COPD_HEARTBEAT_S", "5"))) as tr:
        store.log_metrics(args.run_id, diagnostics(0))
        for step in range(1, total + 1):
            time.sleep(step_s)
            pts = []
            for b in names:
                r = 0.2 + 0.6 * step / total
                if nan_from is not None and step >= nan_from:
                    r = float("nan")
                pts += [
                    point(f"branch/{b}/reward/mean", r, step, b),
                    point(f"branch/{b}/loss/pg", 0.1, step, b),
                ]
            pts += [
                point("time/rollout_s", step_s, step),
                point("run/progress", step / total, step),
            ]
            pos = (step - 1) % (rl + opd) + 1
            if step % diag_every == 0 or pos in (rl, rl + opd):
                pts += diagnostics(step)
            store.log_metrics(args.run_id, pts)
            tr.progress = step / total
            print(f"[progress] step {step}/{total}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
