"""Training algorithms: readable loops over the engine's primitives (copd/train/world.py).

`run(world, out_dir)` dispatches on `cfg.method` through the method table
(copd/spec/methods.py: each method's loop module, policies, budget rule, reported model);
`cfg.policy_names()` says which policies the method trains (the world builds exactly those).

    copd.py        CoPD (the branches co-evolve, mutual OPD, merge)
    expert.py      independent single-domain experts (+ their weight average)
    mixed.py       one policy, GRPO on all domains
    static_opd.py  experts, then one-way OPD from a frozen teacher
    mopd.py        experts, then one student distilled from all, routed by domain
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from copd.spec import method_info


def run(world, out_dir: str | Path) -> dict[str, dict[str, float]]:
    method = world.cfg.method
    try:
        info = method_info(method)
    except ValueError as e:
        raise NotImplementedError(str(e)) from None
    if method != "copd" and world.cfg.sampling.engine != "hf":
        world.logger.log_event(
            f"sampling.engine={world.cfg.sampling.engine!r} applies to the copd method's branch "
            f"workers; {method} samples with the built-in decoder",
            level="warning",
        )
    return import_module(f"{__name__}.{info.loop}").train(world, out_dir)
