"""P2: a CoPD phase-II step against a phase-I step of the same branches.

    .venv/bin/python bench/p2_phase2_vs_phase1.py [--rounds 12] [--warmup 2] [--preset demo]

Phase I is one GRPO update per branch (16 prompts x G=8). Phase II is, per branch, the same
native GRPO batch plus a cross-branch batch (the student's samples on the peer's prompts,
8 x 4), every cross token scored by the peer teacher, and one combined update. Both steps run
on the demo world (the cached warmed-up demo model, 2 branches, 2 threads) and alternate
round by round; each step's time is divided by the number of branches. The engine's own
`time/*` breakdown of each step (rollout, teacher, forward, update) is printed beside it.
Target: phase II <= 1.8x phase I per branch.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import _common as C  # sets the offline and thread environment before torch loads

TARGET = 1.8


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    C.set_threads()
    from copd import presets
    from copd.algorithms.copd import phase1_step, phase2_step
    from copd.config import apply_overrides
    from copd.engine import World

    cfg = apply_overrides(presets.get(a.preset), [f"threads={C.THREADS}", *a.set]).validate()
    world = World.build(cfg)
    k = len(world.branches)
    print(f"P2  phase-II step vs phase-I step ({a.preset}: {k} branches, per branch)")
    print(C.machine_line())
    times: dict[str, list[float]] = {"phase1": [], "phase2": []}
    parts: dict[str, dict[str, list[float]]] = {p: defaultdict(list) for p in times}
    steps = {"phase1": phase1_step, "phase2": phase2_step}
    for r in range(a.warmup + a.rounds):
        order = ("phase1", "phase2") if r % 2 == 0 else ("phase2", "phase1")
        for name in order:
            world.timer.pop()
            t0 = time.perf_counter()
            steps[name](world)
            dt = (time.perf_counter() - t0) / k
            if r >= a.warmup:
                times[name].append(dt)
                for part, secs in world.timer.pop().items():
                    parts[name][part].append(secs / k)
    p1, p2 = C.median(times["phase1"]), C.median(times["phase2"])
    ratio = p2 / p1
    print(f"  phase I  per branch {C.spread(times['phase1'])}")
    print(f"  phase II per branch {C.spread(times['phase2'])}")
    for name in ("phase1", "phase2"):
        bits = "  ".join(f"{p} {C.median(v) * 1e3:.1f}" for p, v in sorted(parts[name].items()))
        print(f"    {name} parts (ms, per branch): {bits}")
    print(f"  ratio {ratio:.2f} (target <= {TARGET})  {C.verdict(ratio, TARGET)}")
    print(f"  {C.load_line()}")
    out = {
        "bench": "p2",
        "machine": C.machine(),
        "phase1_s": p1,
        "phase2_s": p2,
        "ratio": ratio,
        "target": TARGET,
        "pass": ratio <= TARGET,
        "parts_ms": {
            n: {p: C.median(v) * 1e3 for p, v in parts[n].items()} for n in ("phase1", "phase2")
        },
        "load": C.load_avg(),
    }
    C.write_json(a.json, out)
    return out


if __name__ == "__main__":
    main()
