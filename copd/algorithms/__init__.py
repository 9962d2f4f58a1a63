"""Training algorithms: readable loops over the engine's primitives (copd/engine.py).

`run(world, out_dir)` dispatches on `cfg.method`.
"""

from __future__ import annotations

from pathlib import Path


def run(world, out_dir: str | Path) -> dict[str, dict[str, float]]:
    method = world.cfg.method
    if method == "copd":
        from copd.algorithms.copd import train
    else:
        raise NotImplementedError(f"method {method!r} is not available yet")
    return train(world, out_dir)
