"""The training loop's guard: weights still finite after each step.

    check_finite(world)               # after each update (copd/train/algorithms/loop.py)
    raise diverged(world, "...")      # the same error from anywhere (the sampler's NaN probs)

A learning rate far too high turns the weights into inf/NaN, and the next step would fail
deep in the sampler with an IndexError. Instead the step that did it is named, with the
fix; the step's metrics, NaN and inf included, are already logged (the store keeps them,
storage/models.py).
"""

from __future__ import annotations

import torch

from copd.errors import NonFiniteWeights

__all__ = ["NonFiniteWeights", "check_finite", "diverged"]


def check_finite(world) -> None:
    """NonFiniteWeights when a branch's trainable weights hold inf or NaN (one reduction and
    one device sync per branch)."""
    for b in world.branches:
        params = [p.detach() for p in b.params]
        if not params:
            continue
        norms = torch._foreach_norm(params)
        if bool(torch.isfinite(torch.stack([n.float().to(norms[0].device) for n in norms])).all()):
            continue
        raise diverged(world, f"branch {b.name!r} has inf/NaN weights after its update")


def diverged(world, detail: str) -> NonFiniteWeights:
    """The error for a run whose updates diverged at `world.state.step`, with the fix."""
    g = world.loss
    return NonFiniteWeights(
        f"step {world.state.step}: {detail}: the updates diverged. Lower grpo.lr (now {g.lr:g}) "
        f"or grpo.grad_clip (now {g.grad_clip:g}) and start again; the metrics logged up to "
        "here (inf/NaN included) are kept"
    )
