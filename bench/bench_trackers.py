"""What `report_to` costs the training thread: one step's metrics logged to each installed
tracker, against metrics.jsonl (the anchor every run pays), and one system-metrics sample.

    .venv/bin/python bench/bench_trackers.py [--keys 60] [--steps 200] [--repeats 3]

A CoPD-like step: --keys metrics (branch/<b>/..., pair/a~b/...). For each tracker the
median over --repeats of the mean seconds per `log_metrics` call over --steps steps
(MLflow on a sqlite database in a temporary folder; W&B offline; Trackio local), and the
ratio to JsonlLogger's. The sampler's tick (psutil host CPU and RAM) runs in its own thread
every diagnostics.system_every_s (10 s): its cost per tick is printed too.
Target: under 1 ms per step for TensorBoard and metrics.jsonl; a tracker far above that
is worth a note in the README.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (environment first)
from _common import load_line, machine_line, median

from copd.spec import presets
from copd.train.logger import JsonlLogger
from copd.train.system_metrics import host_metrics
from copd.train.trackers import RunInfo, open_tracker

MODULES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb", "trackio": "trackio"}
ONLY = os.environ.get("BENCH_ONLY")  # one tracker only


def step_metrics(n: int) -> dict[str, float]:
    keys = [f"branch/{b}/m{i}" for b in ("add", "rev") for i in range(n // 3)]
    keys += [f"pair/add~rev/k{i}" for i in range(n - len(keys))]
    return {k: 0.1 * i for i, k in enumerate(keys)}


def per_call(logger, metrics: dict[str, float], steps: int) -> float:
    t0 = time.perf_counter()
    for s in range(steps):
        logger.log_metrics(metrics, step=s)
    logger.flush()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=60)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(machine_line(threads=False))
    metrics = step_metrics(args.keys)
    cfg = presets.get("demo").to_dict()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("TRACKIO_DIR", str(Path(tmp) / "trackio"))
        times = []
        for r in range(args.repeats):
            lg = JsonlLogger(Path(tmp) / f"m{r}.jsonl")
            times.append(per_call(lg, metrics, args.steps))
            lg.close()
        anchor = median(times)
        print(f"metrics.jsonl (anchor)  {anchor * 1e3:8.3f} ms per step of {args.keys} metrics")
        for name, module in MODULES.items():
            if ONLY and name != ONLY:
                continue
            if importlib.util.find_spec(module) is None:
                print(f"{name:<22}  not installed")
                continue
            times = []
            for r in range(args.repeats):
                out = Path(tmp) / f"{name}-{r}"
                out.mkdir()
                lg = open_tracker(name, RunInfo("bench", "copd", None, out, cfg), print)
                times.append(per_call(lg, metrics, args.steps))
                lg.close()
            t = median(times)
            print(f"{name:<22}  {t * 1e3:8.3f} ms per step   {t / anchor:7.1f}x the anchor")
    host_metrics()
    t0 = time.perf_counter()
    for _ in range(50):
        host_metrics()
    print(f"system sample (host)    {(time.perf_counter() - t0) / 50 * 1e3:8.3f} ms per tick")
    print(load_line())


if __name__ == "__main__":
    main()
