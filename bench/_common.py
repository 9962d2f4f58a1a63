"""Shared helpers for the benchmarks: environment, machine facts, load checks, statistics.

Every benchmark imports this first (it sets the offline and thread environment before torch
is imported), prints `machine_line()` at the top and `load_line()` next to its figures, and
reports medians. A shared 2-core machine is noisy: other processes on the cores slow torch
by an order of magnitude, so the load average is printed and a warning raised above 1.5.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LOAD_WARN = 1.5  # 1-minute load average above which timings on 2 cores are not trustworthy
# torch threads for every benchmark (the targets are stated for 2). COPD_BENCH_THREADS=1 is
# the fallback on a busy machine: with a partner thread descheduled, each 2-thread parallel
# region waits a scheduler slice, which distorts timings far more than sharing one core does.
THREADS = int(os.environ.get("COPD_BENCH_THREADS", "2"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_avg() -> tuple[float, float, float]:
    return os.getloadavg()


def load_line() -> str:
    """`load 0.42 0.61 0.70` plus a warning when the 1-minute figure is above LOAD_WARN."""
    one, five, fifteen = load_avg()
    text = f"load average {one:.2f} {five:.2f} {fifteen:.2f}"
    if one > LOAD_WARN:
        text += f"  WARNING: load > {LOAD_WARN}: other work shares the cores; timings inflated"
    return text


def machine() -> dict:
    import torch

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def machine_line(threads: bool = True) -> str:
    m = machine()
    line = f"machine: {m['nproc']} cores, {m['cpu']}, python {m['python']}, torch {m['torch']}"
    return line + (f", {m['torch_threads']} torch threads" if threads else "")


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def median_time(fn, repeats: int) -> float:
    """Median wall seconds of `repeats` calls of `fn`."""
    import time

    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return median(out)


def spread(xs: list[float]) -> str:
    """`median [min-max] n=..` in milliseconds."""
    if not xs:
        return "n/a"
    return f"{median(xs) * 1e3:7.1f} ms [{min(xs) * 1e3:.0f}-{max(xs) * 1e3:.0f}] n={len(xs)}"


def set_threads(n: int = THREADS) -> None:
    import torch

    torch.set_num_threads(n)


def write_json(path: str | None, payload: dict) -> None:
    """Write a benchmark's results for bench/run_all.py (no-op without --json)."""
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "FAIL"
