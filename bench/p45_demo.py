"""P4 + P5: the end-to-end demo's wall time and where it goes.

    .venv/bin/python bench/p45_demo.py [--presets demo,expert] [--reuse-home] [--no-store]

P5 runs `python -m copd train <preset>` for CoPD ("demo") and the GRPO-only expert baseline
("expert") as fresh processes, exactly as a user would, and times each (imports included).
The warmed-up demo model is first built in a fresh $COPD_HOME and timed on its own (a
one-off cost, cached afterwards); `--reuse-home` uses the existing cache instead.
Target: both runs together under 3 minutes on 2 cores, with the model already cached.

P4 reads each run's own `time/*` metrics from its metrics.jsonl (the engine logs them with
every step) and reports the share of the run's wall time spent in rollout, teacher scoring,
forward, update, diagnostics, eval and logging; the rest is start-up (imports, model load)
and the untimed end (merge, final evaluation, export). The run store's overhead comes from
bench/bench_store.py, run as is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import _common as C  # sets the offline and thread environment before torch loads

TARGET_S = 180.0
PARTS = ("rollout", "teacher", "forward", "update", "diagnostics", "eval", "logging")


def _env(home: str) -> dict[str, str]:
    return {**os.environ, "COPD_HOME": home, "COPD_THREADS": str(C.THREADS)}


def build_model(home: str) -> tuple[float, bool]:
    """Build (or find) the demo model in `home`; returns (wall seconds, whether it built)."""
    code = (
        "from copd import presets; from copd.builders.demo_base import resolve_model_path; "
        "print(resolve_model_path(presets.get('demo').model, log=print))"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=_env(home), check=True, cwd=C.ROOT,
                          capture_output=True, text=True)  # fmt: skip
    return time.perf_counter() - t0, "building" in proc.stdout


def run_preset(preset: str, home: str, out: Path, overrides: list[str]) -> dict:
    """`copd train <preset>` in a fresh process; wall time and the time/* breakdown."""
    t0_epoch = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "copd", "train", preset, "--out", str(out)]
        + [arg for o in overrides for arg in ("--set", o)],
        env=_env(home),
        cwd=C.ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"copd train {preset} failed:\n{proc.stderr[-3000:]}")
    parts: dict[str, float] = defaultdict(float)
    first = last = None
    steps = 0
    for line in (out / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["type"] == "metric":
            for k, v in rec["values"].items():
                if k.startswith("time/") and k.endswith("_s") and isinstance(v, int | float):
                    parts[k[5:-2]] += v
            if any(k.startswith("time/") for k in rec["values"]):
                first = rec["time"] if first is None else first
                last = rec["time"]
                steps += 1
    end = t0_epoch + wall
    return {
        "preset": preset,
        "wall_s": wall,
        "steps": steps,
        "parts_s": dict(parts),
        "startup_s": (first - t0_epoch) if first else float("nan"),
        "after_last_step_s": (end - last) if last else float("nan"),
    }


def store_overhead() -> str:
    """The summary line of bench/bench_store.py (run with its defaults, fewer repeats)."""
    proc = subprocess.run(
        [sys.executable, str(C.ROOT / "bench" / "bench_store.py"), "--repeats", "2"],
        cwd=C.ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("overhead:")]
    return lines[-1] if lines else f"bench_store.py failed: {proc.stderr[-500:]}"


def report(r: dict) -> None:
    wall = r["wall_s"]
    print(f"  {r['preset']}: wall {wall:6.1f} s, {r['steps']} logged steps")
    timed = sum(r["parts_s"].values())
    for part in [*PARTS, *sorted(set(r["parts_s"]) - set(PARTS))]:
        if part in r["parts_s"]:
            s = r["parts_s"][part]
            print(f"      {part:<12} {s:7.1f} s  {s / wall:6.1%}")
    other = wall - timed
    print(f"      {'untimed':<12} {other:7.1f} s  {other / wall:6.1%}  (start-up to the first "
          f"step's log {r['startup_s']:.1f} s incl. the step; after the last step's log "
          f"{r['after_last_step_s']:.1f} s: merge, final eval, export)")  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="demo,expert")
    ap.add_argument("--reuse-home", action="store_true", help="use the existing $COPD_HOME")
    ap.add_argument("--no-store", action="store_true", help="skip bench_store.py")
    ap.add_argument("--set", action="append", default=[], help="config override (not P5)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    C.set_threads()  # this process only reports; the runs get COPD_THREADS
    from copd.spec import presets as P

    print("P4/P5  end-to-end demo (fresh `copd train` processes, 2 threads)")
    print(C.machine_line())
    wanted = a.presets.split(",")
    missing = [p for p in wanted if p not in P.names()]
    if missing:
        print(f"  NOTE: preset(s) {missing} not registered; measuring the rest only")
    wanted = [p for p in wanted if p not in missing]
    with tempfile.TemporaryDirectory(prefix="copd-p45-") as tmp:
        home = os.environ.get("COPD_HOME", str(Path.home() / ".copd")) if a.reuse_home else tmp
        build_s, built = build_model(home)
        label = "first build (warm-up + eval, once)" if built else "found in the cache"
        print(f"  demo model: {build_s:.1f} s ({label})")
        runs = [run_preset(p, home, Path(tmp) / "runs" / p, a.set) for p in wanted]
        if a.set:
            print(f"  NOTE: overrides {a.set}: not the demo as shipped; P5 does not apply")
        print(f"  {C.load_line()}")
    for r in runs:
        report(r)
    total = sum(r["wall_s"] for r in runs)
    print(f"  P5 total {' + '.join(wanted)}: {total:.1f} s (target < {TARGET_S:.0f} s, model "
          f"cached)  {C.verdict(total, TARGET_S)}; model {label}: {build_s:.1f} s")  # fmt: skip
    store = "" if a.no_store else store_overhead()
    if store:
        print(f"  P4 run store: {store}")
    out = {
        "bench": "p45",
        "machine": C.machine(),
        "build_s": build_s,
        "built": built,
        "runs": runs,
        "missing_presets": missing,
        "total_s": total,
        "target_s": TARGET_S,
        "pass": total < TARGET_S,
        "store_overhead": store,
        "load": C.load_avg(),
    }
    C.write_json(a.json, out)
    return out


if __name__ == "__main__":
    main()
