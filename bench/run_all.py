"""Every performance target in one command, with the anchor figure beside ours.

    .venv/bin/python bench/run_all.py                 # P1-P5, P7 (about 6-10 minutes on 2 quiet cores)
    .venv/bin/python bench/run_all.py --only p1,p2    # a subset
    .venv/bin/python bench/run_all.py --quick         # fewer steps, for checking the harness

Each benchmark runs in its own process (bench/p1_grpo_vs_trl.py, p2_phase2_vs_phase1.py,
p3_memory.py, p45_demo.py, dashboard.py), prints its own detail, and hands its figures back as JSON; a
summary table follows. The machine (cores, CPU model) and the load average before and
after are printed: on a shared 2-core machine, timings taken under load are inflated, so
run it when `uptime` shows a load below 1.5. See docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C  # sets the offline and thread environment before torch loads

BENCHES = {
    "p1": (
        "p1_grpo_vs_trl.py",
        [],
        ["--steps", "4", "--warmup", "1", "--sizes", "128x2", "--lrs", "1e-30"],
    ),
    "p2": ("p2_phase2_vs_phase1.py", [], ["--rounds", "3", "--warmup", "1"]),
    "p3": ("p3_memory.py", [], ["--size", "256x4"]),
    "p45": ("p45_demo.py", [], ["--reuse-home", "--no-store", "--set", "schedule.cycles=1"]),
    # the lab store (4M rows) is built once and cached under /tmp/copd-bench-p7 (minutes)
    "p7": ("dashboard.py", [], ["--scale", "demo", "--no-browser", "--repeats", "1"]),
}
ALIASES = {"p4": "p45", "p5": "p45"}


def summary(res: dict[str, dict]) -> list[str]:
    rows = ["", "target  ours                               anchor                       result"]
    if p1 := res.get("p1"):
        for r in p1["results"]:
            rows.append(
                f"P1 {r['model']:>10} lr {r.get('lr', 5e-4):<6g} {r['ours_s'] * 1e3:6.0f} ms"
                f"          TRL GRPOTrainer {r['trl_s'] * 1e3:6.0f} ms     "
                f"{r['ratio']:.2f}x (<= 0.5)  {C.verdict(r['ratio'], 0.5)}"
                f"   work {r['work_ratio']:.2f}x; as shipped {r['shipped_ratio']:.2f}x"
                f" ({r['signal_frac']:.0%} groups with signal)"
            )
    if p2 := res.get("p2"):
        rows.append(
            f"P2 phase-II step/branch {p2['phase2_s'] * 1e3:6.0f} ms   phase-I step/branch "
            f"{p2['phase1_s'] * 1e3:6.0f} ms   {p2['ratio']:.2f}x (<= 1.8)  "
            f"{C.verdict(p2['ratio'], 1.8)}   as shipped {p2['shipped']['ratio']:.2f}x"
        )
    if p3 := res.get("p3"):
        by = {(r["kind"], r["branches"]): r for r in p3["rows"]}
        for kind in ("lora", "full"):
            one, three = by[kind, 1], by[kind, 3]
            tgt = f"(<= 1.3)  {C.verdict(p3['lora_ratio'], 1.3)}" if kind == "lora" else "(report)"
            rows.append(
                f"P3 {kind} x3 ({p3['model']}) {three['model_mb']:6.0f} MB      {kind} x1 "
                f"{one['model_mb']:6.0f} MB (+{p3['imports_rss_mb']:.0f} imports)   "
                f"{three['model_mb'] / one['model_mb']:.2f}x {tgt}"
            )
    if p45 := res.get("p45"):
        for r in p45["runs"]:
            parts = ", ".join(
                f"{k} {v / r['wall_s']:.0%}"
                for k, v in sorted(r["parts_s"].items(), key=lambda kv: -kv[1])  # fmt: skip
            )
            rows.append(f"P4 {r['preset']}: {r['wall_s']:.1f} s wall; {parts}")
        if p45.get("store_overhead"):
            rows.append(f"P4 store: {p45['store_overhead']}")
        note = f" (missing: {p45['missing_presets']})" if p45["missing_presets"] else ""
        rows.append(
            f"P5 {' + '.join(r['preset'] for r in p45['runs'])}{note}: {p45['total_s']:6.1f} s"
            f"   budget 180 s; model {'built' if p45['built'] else 'cached'} in "
            f"{p45['build_s']:.1f} s   "
            f"{C.verdict(p45['total_s'], 180)}"
        )
    for scale, r in (res.get("p7") or {}).items():
        rd, br = r["reads"], r.get("browser", {})
        draw = br.get("cold")
        limit = 3.0 if scale == "lab" else 2.0
        rows.append(
            f"P7 {scale} ({r['runs']} runs, {r['rows']:,} rows): Live first draw "
            + (f"{draw:.2f} s (<= {limit:.0f})  {C.verdict(draw, limit)}" if draw else "n/a")
            + f"; tick {rd['tick']:.3f} s (<= 0.2)  {C.verdict(rd['tick'], 0.2)}"
            + f"; Runs table {rd['runs_table']:.3f} s (<= 0.5)  {C.verdict(rd['runs_table'], 0.5)}"
            + f"; Live series {rd['live_series']:.3f} s (<= 0.3)"
            + f"  {C.verdict(rd['live_series'], 0.3)}"
            + f"; Compare {rd['compare_runs']}x4 {rd['compare_50x4']:.3f} s (<= 0.5)"
            + f"  {C.verdict(rd['compare_50x4'], 0.5)}"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="p1,p2,p3,p4,p5,p7", help="comma-separated subset")
    ap.add_argument("--quick", action="store_true", help="short runs to check the harness")
    ap.add_argument("--threads", type=int, help="torch threads (default 2; 1 on a busy machine)")
    ap.add_argument("--json", help="write all results here")
    a = ap.parse_args(argv)
    if a.threads:
        os.environ["COPD_BENCH_THREADS"] = str(a.threads)  # children read it via _common
        C.THREADS = a.threads
    wanted: list[str] = []
    for name in a.only.lower().split(","):
        key = ALIASES.get(name.strip(), name.strip())
        if key not in BENCHES:
            ap.error(f"--only: unknown benchmark {name!r}; use p1..p5 or p7")
        if key not in wanted:
            wanted.append(key)
    print(C.machine_line(threads=False) + f"; benchmarks use {C.THREADS} torch threads")
    print(f"start: {C.load_line()}")
    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="copd-bench-") as tmp:
        for key in wanted:
            script, full, quick = BENCHES[key]
            out = Path(tmp) / f"{key}.json"
            cmd = [sys.executable, str(Path(__file__).parent / script), "--json", str(out)]
            cmd += quick if a.quick else full
            print(f"\n$ {' '.join(cmd[1:])}", flush=True)
            rc = subprocess.run(cmd, check=False).returncode
            if rc != 0 or not out.exists():
                print(f"{key}: FAILED (exit {rc})")
                continue
            results[key] = json.loads(out.read_text())
    print("\n".join(summary(results)))
    print(f"end: {C.load_line()}; {time.perf_counter() - t0:.0f} s in all")
    if a.json:
        C.write_json(a.json, results)
    return 0 if len(results) == len(wanted) else 1


if __name__ == "__main__":
    sys.exit(main())
