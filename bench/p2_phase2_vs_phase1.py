"""P2: a CoPD phase-II step against a phase-I step of the same branches.

    .venv/bin/python bench/p2_phase2_vs_phase1.py [--rounds 12] [--warmup 2] [--preset demo]

Phase I is one GRPO update per branch (16 prompts x G=8). Phase II is, per branch, the same
native GRPO batch plus a cross-branch batch (the student's samples on the peer's prompts,
8 x 4), every cross token scored by the peer teacher, and one combined update. Both steps run
on the demo world (the cached warmed-up demo model, 2 branches, 2 threads) and alternate
round by round; each step's time is divided by the number of branches. The engine's own
`time/*` breakdown of each step (rollout, teacher, forward, update) is printed beside it.
Target: phase II <= 1.8x phase I per branch.

Measured twice, alternating on the one world: at equal work (`grpo.skip_zero_advantage`
off: every native group goes through the training pass, the ratio the target was set
for) and as shipped (groups without a reward signal skip it). The skip shrinks the native
GRPO part of both steps, not the cross batch or the teacher scoring, so the shipped ratio
is the larger one.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import replace

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
    from copd.spec import apply_overrides, presets
    from copd.train.algorithms.copd import phase1_step, phase2_step
    from copd.train.world import World

    cfg = apply_overrides(presets.get(a.preset), [f"threads={C.THREADS}", *a.set]).validate()
    world = World.build(cfg)
    k = len(world.branches)
    print(f"P2  phase-II step vs phase-I step ({a.preset}: {k} branches, per branch)")
    print(C.machine_line())
    variants = {"equal work": False, "as shipped": True}  # -> grpo.skip_zero_advantage
    times = {v: {"phase1": [], "phase2": []} for v in variants}
    parts = {v: {p: defaultdict(list) for p in ("phase1", "phase2")} for v in variants}
    steps = {"phase1": phase1_step, "phase2": phase2_step}
    for r in range(a.warmup + a.rounds):
        for v, skip in variants.items():
            grpo = replace(world.cfg.grpo, skip_zero_advantage=skip)
            world.reconfigure(replace(world.cfg, grpo=grpo))
            order = ("phase1", "phase2") if r % 2 == 0 else ("phase2", "phase1")
            for name in order:
                world.timer.pop()
                t0 = time.perf_counter()
                steps[name](world)
                dt = (time.perf_counter() - t0) / k
                if r >= a.warmup:
                    times[v][name].append(dt)
                    for part, secs in world.timer.pop().items():
                        parts[v][name][part].append(secs / k)
    res = {}
    for v in variants:
        p1, p2 = C.median(times[v]["phase1"]), C.median(times[v]["phase2"])
        res[v] = {"phase1_s": p1, "phase2_s": p2, "ratio": p2 / p1}
        print(f"  {v}:")
        print(f"    phase I  per branch {C.spread(times[v]['phase1'])}")
        print(f"    phase II per branch {C.spread(times[v]['phase2'])}")
        for name in ("phase1", "phase2"):
            bits = "  ".join(
                f"{p} {C.median(x) * 1e3:.1f}" for p, x in sorted(parts[v][name].items())
            )
            print(f"      {name} parts (ms, per branch): {bits}")
        print(f"    ratio {p2 / p1:.2f}")
    ratio = res["equal work"]["ratio"]
    print(f"  ratio at equal work {ratio:.2f} (target <= {TARGET})  {C.verdict(ratio, TARGET)}")
    print(f"  {C.load_line()}")
    out = {
        "bench": "p2",
        "machine": C.machine(),
        "phase1_s": res["equal work"]["phase1_s"],
        "phase2_s": res["equal work"]["phase2_s"],
        "ratio": ratio,
        "shipped": res["as shipped"],
        "target": TARGET,
        "pass": ratio <= TARGET,
        "parts_ms": {
            v: {n: {p: C.median(x) * 1e3 for p, x in parts[v][n].items()} for n in parts[v]}
            for v in variants
        },
        "load": C.load_avg(),
    }
    C.write_json(a.json, out)
    return out


if __name__ == "__main__":
    main()
