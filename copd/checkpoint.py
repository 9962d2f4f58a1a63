"""Save and restore the whole multi-branch world, for exact resume.

    path = save(world, out_dir, extra={"stage": 1})   # out_dir/checkpoints/step-000012/
    extra = restore(world, latest(out_dir))           # weights, optimizers, RNGs, counters

A checkpoint holds every branch's trainable state (full weights or LoRA adapter) and AdamW
state, the frozen teacher snapshots when the run uses them, every RNG (the per-branch
prompt samplers, the token-sampling generator, torch's global RNG) and the step counter.
Prompts are drawn from the saved RNGs, so the data position is restored with them. On CPU
with a fixed seed a resumed run ends with the same weights as an uninterrupted one.

Files are written to a temporary folder and renamed, so a crash mid-save never leaves a
half checkpoint that `latest()` would pick.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import torch

FORMAT = 1


def _dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


def save(world, out_dir: str | Path, extra: dict | None = None, keep: int = 2) -> Path:
    """Checkpoint the world at `world.step` (the number of completed steps)."""
    root = _dir(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{world.step:06d}"
    tmp = root / f".tmp-{world.step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for b in world.branches:
        torch.save(
            {"trainable": b.trainable_state(), "optimizer": b.optimizer.state_dict()},
            tmp / f"branch-{b.name}.pt",
        )
    snapshots = {}
    for name, view in world.teachers.items():
        b = world.branch(name)
        if b.kind == "full":
            snapshots[name] = {k: v.detach().clone() for k, v in view.module.state_dict().items()}
        else:
            from peft import get_peft_model_state_dict

            snapshots[name] = get_peft_model_state_dict(view.module, adapter_name=view.adapter)
    state = {
        "format": FORMAT,
        "step": world.step,
        "rngs": {k: r.getstate() for k, r in world.rngs.items()},
        "gen": world.gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "snapshots": snapshots,
        "extra": extra or {},
    }
    torch.save(state, tmp / "state.pt")
    meta = {
        "step": world.step,
        "time": time.time(),
        "branches": [b.name for b in world.branches],
        "config": world.cfg.to_dict(),
        "extra": extra or {},
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    if keep:
        for old in sorted(root.glob("step-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    world.logger.log_checkpoint(str(final), step=world.step)
    return final


def latest(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under `out_dir`, or None."""
    root = _dir(out_dir)
    done = sorted(p for p in root.glob("step-*") if (p / "state.pt").exists())
    return done[-1] if done else None


def restore(world, path: str | Path) -> dict:
    """Load a checkpoint into an already built world (same config); returns its `extra`."""
    path = Path(path)
    state = torch.load(path / "state.pt", weights_only=False)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {state.get('format')} is not {FORMAT}")
    for b in world.branches:
        blob = torch.load(path / f"branch-{b.name}.pt", weights_only=False)
        b.load_trainable_state(blob["trainable"])
        b.optimizer.load_state_dict(blob["optimizer"])
    for k, s in state["rngs"].items():
        world.rngs.setdefault(k, random.Random()).setstate(s)
    world.gen.set_state(state["gen"])
    torch.set_rng_state(state["torch_rng"])
    world.step = state["step"]
    world.teachers = {}
    for name, sd in state["snapshots"].items():
        b = world.branch(name)
        view = b.snapshot()
        if b.kind == "full":
            view.module.load_state_dict(sd)
        else:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(view.module, sd, adapter_name=view.adapter)
        world.teachers[name] = view
    world.resume_extra = state.get("extra", {})  # multi-stage loops read their stage here
    return world.resume_extra
