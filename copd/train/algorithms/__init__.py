"""Training algorithms: readable loops over the engine's primitives (copd/train/world.py).

`run(world, out_dir)` dispatches on the world's method (`world.method`, its row of the
method table copd/spec/methods.py: each method's loop module, policies, budget rule,
reported model); `cfg.policy_names()` says which policies the method trains (the world
builds exactly those) and `world.budget` is a baseline's step budget.

Each method's loop is the module its table row names, with a `train(world, out_dir)`; the
row's `summary` says in one line what the method does, the module's docstring in full (the
table is the list, so a new baseline adds no line here). Beside the loops: loop.py, what
every loop shares (start, after-step cadence, finish), and baselines.py, the budget rules.
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
