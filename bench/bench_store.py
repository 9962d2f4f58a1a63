"""Overhead of the run store on a training-like loop: StoreLogger vs a do-nothing logger.

    .venv/bin/python bench/bench_store.py [--steps 100] [--keys 60] [--step-ms 50] [--db URL]
                                          [--samples-every 10] [--samples 16] [--tokens 64]

Each step runs a fixed amount of torch matmul work calibrated to take ~50 ms (standing in for
a training step), then logs the demo's metric volume (~60 namespaced keys per step, an eval
and an event every 10 steps) and, every --samples-every steps, --samples recorded completions
of --tokens tokens each with two peers' per-token log-probs (copd/train/samples.py's rows;
0 turns them off). The same loop runs with a NullLogger-equivalent and with
StoreLogger on a fresh SQLite file (or --db), alternating, and the median of --repeats runs is
reported: loop seconds, the time spent inside log calls on the training thread, the final
close() (drains the buffer), the extra process CPU time (all threads), and the overhead
shares, against a target below 1%. The end-to-end wall difference is printed too, but on a
shared machine it is dominated by noise; the in-call and CPU figures are the stable ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from copd.train.logger import NullLogger  # noqa: E402  (a bench may use both packages)
from storage import RunStore  # noqa: E402
from storage.logger import StoreLogger  # noqa: E402


def metric_names(n_keys: int) -> list[str]:
    """Demo-like names: per-branch training stats, pair diagnostics, timings, system."""
    per_branch = ["reward/mean", "reward_on/add", "reward_on/rev", "loss/pg", "loss/opd",
                  "opd/adv_mean", "opd/reverse_kl", "clip_frac", "grad_norm", "entropy",
                  "response_len", "kl_ref"]  # fmt: skip
    names = [f"branch/{b}/{k}" for b in ("add", "rev") for k in per_branch]
    names += [f"pair/{s}~{t}/{k}" for s, t in (("add", "rev"), ("rev", "add"))
              for k in ("overlap_top1", "overlap_top5", "overlap_top10", "sym_kl",
                        "overlap_mass", "entropy_gap")]  # fmt: skip
    names += [f"base/{b}/{k}" for b in ("add", "rev") for k in ("overlap_top10", "sym_kl")]
    names += [f"time/{k}" for k in ("rollout_s", "teacher_s", "update_s", "diagnostics_s",
                                     "eval_s", "logging_s", "step_s")]  # fmt: skip
    names += ["merged/reward/mean", "run/progress", "system/cpu_percent", "system/rss_mb"]
    i = 0
    while len(names) < n_keys:
        names.append(f"system/extra_{i}")
        i += 1
    return names[:n_keys]


def calibrate(step_ms: float) -> int:
    """Number of 256x256 matmuls that take about step_ms milliseconds here."""
    a = torch.randn(256, 256)
    for _ in range(20):
        a @ a  # warm-up
    reps = 50
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ a
        dt = time.perf_counter() - t0
        if dt > 0.02:
            return max(1, round(reps * step_ms / 1000 / dt))
        reps *= 2


def sample_rows(n: int, tokens: int) -> list[dict]:
    """`n` recorded completions of `tokens` tokens, scored by two peers (the engine's rows)."""
    row = {
        "kind": "probe", "domain": "add", "prompt": "123+456=", "completion": "579" * tokens,
        "reward": 1.0, "correct": True, "tokens": ["5"] * tokens,
        "logp": [-0.1234] * tokens,
        "peers": {p: {"logp": [-0.5678] * tokens, "in_topk": [True] * tokens}
                  for p in ("rev", "base")},
        "disagreement": 0.44, "overlap": 0.9,
    }  # fmt: skip
    return [{**row, "branch": ("add", "rev")[i % 2], "prompt_index": i} for i in range(n)]


def train_loop(
    logger, names: list[str], steps: int, matmuls: int, samples_every: int = 0,
    samples: list[dict] | None = None,
) -> tuple[float, float, float, float, float]:  # fmt: skip
    """-> (loop seconds, seconds inside log calls, close seconds, process CPU seconds incl.
    close: every thread, so the background writer's work is counted too, CPU seconds of the
    store writes alone)."""
    a = torch.randn(256, 256)
    in_log = 0.0
    cpu_start = time.process_time()
    t_start = time.perf_counter()
    for step in range(steps):
        x = a
        for _ in range(matmuls):
            x = a @ a
        value = float(x[0, 0]) * 1e-6
        metrics = {k: value + i for i, k in enumerate(names)}
        t0 = time.perf_counter()
        logger.log_metrics(
            metrics, step=step, cycle=step // 10, phase="rl" if step % 10 < 6 else "opd"
        )
        if step % 10 == 9:
            logger.log_eval("merged", "add", 0.5, 64, step=step)
            logger.log_event(f"cycle {step // 10} done", step=step)
        if samples and samples_every and step % samples_every == 0:
            logger.log_samples(samples, step=step)
        in_log += time.perf_counter() - t0
    loop = time.perf_counter() - t_start
    t0 = time.perf_counter()
    logger.close()
    close = time.perf_counter() - t0
    return loop, in_log, close, time.process_time() - cpu_start, getattr(logger, "write_cpu_s", 0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--keys", type=int, default=60)
    p.add_argument("--step-ms", type=float, default=50.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 leaves a core free)")
    p.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    p.add_argument("--samples-every", type=int, default=10, help="steps between samples (0: none)")
    p.add_argument("--samples", type=int, default=16, help="completions per sampled step")
    p.add_argument("--tokens", type=int, default=64, help="tokens per completion")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    names = metric_names(args.keys)
    matmuls = calibrate(args.step_ms)
    tmp = tempfile.TemporaryDirectory()
    store = RunStore.from_url(args.db or f"sqlite:///{tmp.name}/bench.db")
    print(f"store: {store.url}")
    print(f"loop: {args.steps} steps x {matmuls} matmuls (~{args.step_ms:.0f} ms), "
          f"{len(names)} keys/step = {args.steps * len(names)} points/run, torch threads "
          f"{args.threads}")  # fmt: skip
    rows = sample_rows(args.samples, args.tokens) if args.samples_every else None
    if rows:
        print(f"samples: {len(rows)} x {args.tokens} tokens every {args.samples_every} steps")

    null_runs, store_runs = [], []
    for rep in range(args.repeats):
        null_runs.append(
            train_loop(NullLogger(), names, args.steps, matmuls, args.samples_every, rows)
        )
        run = store.create_run(f"bench-{rep}", "bench", {})
        lg = StoreLogger(store, run.id)
        store_runs.append(train_loop(lg, names, args.steps, matmuls, args.samples_every, rows))
        assert store.metric_count(run.id) == args.steps * len(names), "rows missing"
        if rows:
            due = len(range(0, args.steps, args.samples_every))
            assert store.sample_count(run.id) == due * len(rows), "samples missing"

    def med(rows, i):
        return statistics.median(r[i] for r in rows)

    t_null, t_store = med(null_runs, 0), med(store_runs, 0)
    in_log, close = med(store_runs, 1), med(store_runs, 2)
    cpu_extra = med(store_runs, 3) - med(null_runs, 3)
    overhead = (t_store - t_null) / t_null
    print(f"NullLogger   loop {t_null:8.3f} s")
    print(f"StoreLogger  loop {t_store:8.3f} s   in log calls {in_log * 1e3:7.2f} ms   "
          f"close() {close * 1e3:7.2f} ms")  # fmt: skip
    write_cpu = med(store_runs, 4)
    print(f"CPU of the store writes (background thread + close): {write_cpu * 1e3:.1f} ms "
          f"= {write_cpu / t_null:.2%} of the loop; extra process CPU vs NullLogger "
          f"{cpu_extra * 1e3:.1f} ms = {cpu_extra / t_null:.2%}")  # fmt: skip
    print(f"overhead: end-to-end {overhead:+.2%} (noise included), training thread "
          f"{in_log / t_null:.3%}, incl. close {(in_log + close) / t_null:.3%}  (target < 1%)")  # fmt: skip
    store.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
