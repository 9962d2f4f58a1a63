"""Save and restore the whole multi-branch world, for exact resume.

    path = save(world, out_dir, extra={"stage": 1})   # out_dir/checkpoints/step-000012/
    extra = restore(world, latest(out_dir))           # weights, optimizers, RNGs, counters

A checkpoint holds every branch's trainable state (full weights or LoRA adapter) and AdamW
state, the frozen teacher snapshots when the run uses them, every RNG (the per-branch
prompt samplers, the token-sampling generators, torch's global RNG) and the step counter.
Prompts are drawn from the saved RNGs, so the data position is restored with them. On CPU
with a fixed seed a resumed run ends with the same weights as an uninterrupted one.

Files are written to a temporary folder and renamed, so a crash mid-save never leaves a
half checkpoint that `latest()` would pick. A save that fails (a full disk, say) removes its
temporary folder and raises CheckpointWriteError naming the folder and the free space.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

FORMAT = 1


def _dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (no space left, permissions); nothing half-written
    is left behind."""

    user_error = True


def step_of(path: str | Path) -> int:
    """The step a checkpoint folder holds (`step-000020` -> 20)."""
    return int(Path(path).name.split("-", 1)[1])


def _no_space(exc: BaseException) -> bool:
    text = str(exc)
    return (
        getattr(exc, "errno", None) == errno.ENOSPC
        or "No space left" in text
        or "file write failed" in text
        or "inline_container" in text
    )


def _write_failed(exc: BaseException, root: Path) -> CheckpointWriteError:
    try:
        free = shutil.disk_usage(root).free
    except OSError:
        free = -1
    if _no_space(exc) or 0 <= free < 64 << 20:
        return CheckpointWriteError(
            errno.ENOSPC,
            f"no space left on {root} ({free / 2**20:.1f} MiB free) while writing a checkpoint;"
            " free some space or put the run folder on a larger disk (--out), then resume",
        )
    return CheckpointWriteError(
        getattr(exc, "errno", None) or errno.EIO, f"could not write a checkpoint in {root}: {exc}"
    )


@dataclass
class BranchState:
    """Everything one branch needs to continue exactly: what a branch worker hands over for
    a checkpoint or a merge (copd/workers). CPU tensors and plain values, so it pickles."""

    trainable: dict[str, torch.Tensor]  # full weights, or the LoRA adapter's weights
    optimizer: dict
    prompt_rng: tuple | None = None  # random.Random state of the branch's prompt sampler
    gen: torch.Tensor | None = None  # torch.Generator state of its token sampler
    snapshot: dict[str, torch.Tensor] | None = None  # frozen teacher copy, when one is held


def branch_state(world, b) -> BranchState:
    """Branch `b` of an in-process world, as a BranchState."""
    snapshot = None
    if b.name in world.teachers:
        view = world.teachers[b.name]
        if b.kind == "full":
            snapshot = {k: v.detach().clone() for k, v in view.module.state_dict().items()}
        else:
            from peft import get_peft_model_state_dict

            snapshot = get_peft_model_state_dict(view.module, adapter_name=view.adapter)
    rng = world.rngs.get(b.name)
    gen = world.gens.get(b.name)
    return BranchState(
        b.trainable_state(),
        b.optimizer.state_dict(),
        rng.getstate() if rng is not None else None,
        gen.get_state() if gen is not None else None,
        snapshot,
    )


def load_branch_state(world, b, st: BranchState) -> None:
    """Put `st` into branch `b` of an in-process world (weights, optimizer, RNGs, teacher)."""
    b.load_trainable_state(st.trainable)
    b.optimizer.load_state_dict(st.optimizer)
    if st.prompt_rng is not None:
        world.rngs.setdefault(b.name, random.Random()).setstate(st.prompt_rng)
    if st.gen is not None and b.name in world.gens:
        world.gens[b.name].set_state(st.gen)
    world.teachers.pop(b.name, None)
    if st.snapshot is not None:
        view = b.snapshot()
        if b.kind == "full":
            view.module.load_state_dict(st.snapshot)
        else:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(view.module, st.snapshot, adapter_name=view.adapter)
        world.teachers[b.name] = view


def save(
    world,
    out_dir: str | Path,
    extra: dict | None = None,
    keep: int = 2,
    branch_states: dict[str, BranchState] | None = None,
) -> Path:
    """Checkpoint the world at `world.step` (the number of completed steps).
    `branch_states`: branches held outside this process (Ray actors), by name; the world's
    own branches are read directly."""
    root = _dir(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{world.step:06d}"
    tmp = root / f".tmp-{world.step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write(world, tmp, extra, branch_states)
    except (OSError, RuntimeError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_failed(e, root) from e
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    if keep:
        for old in sorted(root.glob("step-*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    world.logger.log_checkpoint(str(final), step=world.step)
    return final


def _write(world, tmp: Path, extra: dict | None, branch_states: dict | None) -> None:
    tmp.mkdir()
    states = {b.name: branch_state(world, b) for b in world.branches}
    states.update(branch_states or {})
    for name, st in states.items():
        torch.save(
            {"trainable": st.trainable, "optimizer": st.optimizer}, tmp / f"branch-{name}.pt"
        )
    # Prompts are drawn by the driver (on Ray too): its RNGs are the ones that advanced. A
    # worker's copy of its prompt RNG is never drawn from, so it only fills a gap.
    rngs = {k: r.getstate() for k, r in world.rngs.items()}
    for n, st in states.items():
        if st.prompt_rng is not None and n not in rngs:
            rngs[n] = st.prompt_rng
    gens = {k: g.get_state() for k, g in world.gens.items()}
    gens.update({n: st.gen for n, st in states.items() if st.gen is not None})
    state = {
        "format": FORMAT,
        "step": world.step,
        "rngs": rngs,
        "gen": world.gen.get_state(),
        "gens": gens,
        "torch_rng": torch.get_rng_state(),
        "snapshots": {n: st.snapshot for n, st in states.items() if st.snapshot is not None},
        "extra": extra or {},
    }
    torch.save(state, tmp / "state.pt")
    meta = {
        "step": world.step,
        "time": time.time(),
        "branches": list(states),
        "config": world.cfg.to_dict(),
        "extra": extra or {},
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")


def latest(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under `out_dir`, or None."""
    root = _dir(out_dir)
    done = sorted(p for p in root.glob("step-*") if (p / "state.pt").exists())
    return done[-1] if done else None


def read_branch_states(path: str | Path, names) -> dict[str, BranchState]:
    """The BranchState of each named branch in the checkpoint at `path`."""
    path = Path(path)
    state = torch.load(path / "state.pt", weights_only=False)
    out = {}
    for name in names:
        blob = torch.load(path / f"branch-{name}.pt", weights_only=False)
        out[name] = BranchState(
            blob["trainable"],
            blob["optimizer"],
            state["rngs"].get(name),
            state.get("gens", {}).get(name),
            state["snapshots"].get(name),
        )
    return out


def restore(world, path: str | Path) -> dict:
    """Load a checkpoint into an already built world (same config); returns its `extra`.
    A world whose branches live in workers (Ray) restores its own counters and RNGs here;
    the workers load theirs from `world.restored_from` (`read_branch_states`)."""
    path = Path(path)
    state = torch.load(path / "state.pt", weights_only=False)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path}: checkpoint format {state.get('format')} is not {FORMAT}")
    for k, s in state["rngs"].items():
        world.rngs.setdefault(k, random.Random()).setstate(s)
    world.gen.set_state(state["gen"])
    for k, g in state.get("gens", {}).items():
        if k in world.gens:
            world.gens[k].set_state(g)
    torch.set_rng_state(state["torch_rng"])
    world.step = state["step"]
    world.teachers = {}
    branch_states = read_branch_states(path, [b.name for b in world.branches])
    for b in world.branches:
        load_branch_state(world, b, branch_states[b.name])
    world.resume_extra = state.get("extra", {})  # multi-stage loops read their stage here
    world.restored_from = str(path)
    return world.resume_extra
