"""Branch workers: the CoPD driver loop's view of its branches, in-process or on Ray.

    group = make_group(world)    # LocalGroup, or RayGroup when cfg.backend.kind == "ray"
    ...                          # copd/train/algorithms/copd.py drives it
    group.close()

See copd/train/workers/base.py for the interface and docs/DISTRIBUTED.md for running on a cluster.
"""

from __future__ import annotations

from copd.train.workers.base import BranchWorker, Call, CrossBatch, Ops, WorkerGroup
from copd.train.workers.local import LocalGroup, LocalWorker

__all__ = [
    "BranchWorker",
    "Call",
    "CrossBatch",
    "LocalGroup",
    "LocalWorker",
    "Ops",
    "WorkerGroup",
    "make_group",
]


def make_group(world) -> WorkerGroup:
    """The worker group for `world.backend`. A Ray group built for a restored world
    loads every actor's branch from the checkpoint the world came from."""
    if world.backend.kind == "local":
        return LocalGroup(world)
    from copd.train.workers.ray_backend import RayGroup

    group = RayGroup(world)
    if world.state.restored_from:
        try:
            group.load_checkpoint(world.state.restored_from)
        except BaseException:
            group.close()
            raise
    return group
