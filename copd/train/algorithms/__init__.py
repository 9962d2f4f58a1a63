"""Training algorithms: readable loops over the engine's primitives (copd/train/world.py).

`run(world, out_dir)` dispatches on `cfg.method`; `cfg.policy_names()` (copd/spec/run.py)
says which policies the method trains (the world builds exactly those).

    copd     -> copd.py        CoPD (the branches co-evolve, mutual OPD, merge)
    expert, weight_average -> expert.py      independent single-domain experts (+ average)
    mixed    -> mixed.py       one policy, GRPO on all domains
    static_opd -> static_opd.py  experts, then one-way OPD from a frozen teacher
    mopd     -> mopd.py        experts, then one student distilled from all, routed by domain
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

_MODULES = {
    "copd": "copd.train.algorithms.copd",
    "expert": "copd.train.algorithms.expert",
    "weight_average": "copd.train.algorithms.expert",
    "mixed": "copd.train.algorithms.mixed",
    "static_opd": "copd.train.algorithms.static_opd",
    "mopd": "copd.train.algorithms.mopd",
}


def run(world, out_dir: str | Path) -> dict[str, dict[str, float]]:
    method = world.cfg.method
    if method not in _MODULES:
        raise NotImplementedError(f"method {method!r}: use one of {sorted(_MODULES)}")
    if method != "copd" and world.cfg.sampling.engine != "hf":
        world.logger.log_event(
            f"sampling.engine={world.cfg.sampling.engine!r} applies to the copd method's branch "
            f"workers; {method} samples with the built-in decoder",
            level="warning",
        )
    return import_module(_MODULES[method]).train(world, out_dir)
