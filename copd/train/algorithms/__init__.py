"""Training algorithms: readable loops over the engine's primitives (copd/train/world.py).

`run(world, out_dir)` dispatches on the world's method (`world.method`, its row of the
method table copd/spec/methods.py: each method's loop module, policies, budget rule,
reported model); `cfg.policy_names()` says which policies the method trains (the world
builds exactly those) and `world.budget` is a baseline's step budget.

    copd.py        CoPD (the branches co-evolve, mutual OPD, merge)
    expert.py      independent single-domain experts (+ their weight average)
    mixed.py       one policy, GRPO on all domains
    static_opd.py  experts, then one-way OPD from a frozen teacher
    mopd.py        experts, then one student distilled from all, routed by domain
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path


def run(world, out_dir: str | Path) -> dict[str, dict[str, float]]:
    info = world.method
    if info.name != "copd" and world.vllm is not None:
        world.logger.log_event(
            f"sampling.engine='vllm' applies to the copd method's branch workers; "
            f"{info.name} samples with the built-in decoder",
            level="warning",
        )
    return import_module(f"{__name__}.{info.loop}").train(world, out_dir)
