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

Nothing in a checkpoint is code: tensors are safetensors files, everything else is JSON
(the folder's files: `state.json` + `state.safetensors` for the step, the RNGs and the
`extra`; `branch-<name>.json` + `branch-<name>.safetensors` for a branch's weights,
optimizer and teacher snapshot; `meta.json`, read by people). Restoring one never unpickles,
so a crafted folder passed to `--resume` cannot run code; a folder of the earlier pickle
format is refused with the fix (CheckpointFormatError).
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from copd.train.pause import maybe_pause

FORMAT = 2
STATE = "state.json"  # the file whose presence marks a complete checkpoint


def _dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / "checkpoints"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (no space left, permissions); nothing half-written
    is left behind."""

    user_error = True


class CheckpointFormatError(ValueError):
    """A checkpoint folder this version does not read (the earlier pickle format, a damaged
    or foreign file); nothing in it was loaded or run."""

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
    if b.name in world.state.teachers:
        view = world.state.teachers[b.name]
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
    world.state.teachers.pop(b.name, None)
    if st.snapshot is not None:
        view = b.snapshot()
        if b.kind == "full":
            view.module.load_state_dict(st.snapshot)
        else:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(view.module, st.snapshot, adapter_name=view.adapter)
        world.state.teachers[b.name] = view


def save(
    world,
    out_dir: str | Path,
    extra: dict | None = None,
    keep: int = 2,
    branch_states: dict[str, BranchState] | None = None,
) -> Path:
    """Checkpoint the world at `world.state.step` (the number of completed steps).
    `branch_states`: branches held outside this process (Ray actors), by name; the world's
    own branches are read directly."""
    root = _dir(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{world.state.step:06d}"
    tmp = root / f".tmp-{world.state.step:06d}-{os.getpid()}"
    for stale in root.glob(".tmp-*"):  # a save a kill cut short (one writer per run folder)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        _write(world, tmp, extra, branch_states)
    except (OSError, RuntimeError, SafetensorError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_failed(e, root) from e
    # A checkpoint exists only once everything it covers is durable: resume trusts the
    # folder and continues after its step, so a row still buffered when the folder appears
    # and lost to a kill would be lost for good. A store that cannot take the rows (a full
    # disk) keeps the checkpoint from existing; the run resumes from the previous one.
    try:
        world.logger.flush()
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointWriteError(
            errno.EIO,
            f"checkpoint at step {world.state.step} not kept: the rows logged before it could "
            f"not be written ({e}); once the run store takes writes again, resume the run "
            "(from its previous checkpoint)",
        ) from e
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    maybe_pause(f"checkpoint-{world.state.step}")  # $COPD_PAUSE_AT: the window tests kill in
    if keep:
        for old in sorted(p for p in root.glob("step-*") if STEP_DIR.fullmatch(p.name))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    world.logger.log_checkpoint(str(final), step=world.state.step)
    return final


def _write(world, tmp: Path, extra: dict | None, branch_states: dict | None) -> None:
    tmp.mkdir()
    states = {b.name: branch_state(world, b) for b in world.branches}
    states.update(branch_states or {})
    for name, st in states.items():
        _write_branch(tmp, name, st)
    # Prompts are drawn by the driver (on Ray too): its RNGs are the ones that advanced. A
    # worker's copy of its prompt RNG is never drawn from, so it only fills a gap.
    rngs = {k: r.getstate() for k, r in world.rngs.items()}
    for n, st in states.items():
        if st.prompt_rng is not None and n not in rngs:
            rngs[n] = st.prompt_rng
    gens = {k: g.get_state() for k, g in world.gens.items()}
    gens.update({n: st.gen for n, st in states.items() if st.gen is not None})
    tensors = {"gen": world.gen.get_state(), "torch_rng": torch.get_rng_state()}
    tensors.update({f"gens/{k}": g for k, g in gens.items()})
    _save_tensors(tensors, tmp / "state.safetensors")
    state = {
        "format": FORMAT,
        "step": world.state.step,
        "rngs": {k: _rng_to_json(r) for k, r in rngs.items()},
        "gens": sorted(gens),
        "branches": list(states),
        "extra": extra or {},
    }
    meta = {
        "step": world.state.step,
        "time": time.time(),
        "branches": list(states),
        "config": world.config_dict,
        "extra": extra or {},
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    (tmp / STATE).write_text(json.dumps(state) + "\n")  # last: marks the folder complete


def _write_branch(tmp: Path, name: str, st: BranchState) -> None:
    tensors: dict[str, torch.Tensor] = {}
    tensors.update({f"trainable/{k}": v for k, v in st.trainable.items()})
    if st.snapshot is not None:
        tensors.update({f"snapshot/{k}": v for k, v in st.snapshot.items()})
    blob = {
        "trainable": list(st.trainable),
        "snapshot": None if st.snapshot is None else list(st.snapshot),
        "optimizer": _encode(st.optimizer, tensors, "optimizer"),
    }
    _save_tensors(tensors, tmp / f"branch-{name}.safetensors")
    (tmp / f"branch-{name}.json").write_text(json.dumps(blob) + "\n")


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """safetensors wants contiguous CPU tensors that share no memory with one another."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()  # storages already used by a tensor of the file
    for k, v in tensors.items():
        t = v.detach().cpu().contiguous()
        if t.numel() and t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    save_file(out, str(path))


def _encode(obj, tensors: dict[str, torch.Tensor], prefix: str):
    """A state dict as JSON, its tensors moved to `tensors` (named `prefix/<n>`). Dicts keep
    non-string keys (an optimizer's parameter ids) and tuples stay tuples."""
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}/{len(tensors)}"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__items__": [[k, _encode(v, tensors, prefix)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, prefix) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors, prefix) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} in an optimizer state")


def _decode(obj, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        return {k: _decode(v, tensors) for k, v in obj["__items__"]}
    return obj


def _rng_to_json(state: tuple) -> list:
    """`random.Random.getstate()` (version, 625 ints, gauss) as JSON."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_json(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


STEP_DIR = re.compile(r"step-\d+")  # the folders save() writes; anything else is not ours


def latest(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under `out_dir`, or None. A newest folder in the
    earlier pickle format raises CheckpointFormatError (before any work: nothing is read).
    Folders whose names save() never writes (`step-x`, a copy `step-10 (1)`) are ignored."""
    root = _dir(out_dir)
    done = sorted(
        p
        for p in root.glob("step-*")
        if STEP_DIR.fullmatch(p.name) and ((p / STATE).exists() or (p / "state.pt").exists())
    )
    if not done:
        return None
    check_format(done[-1])
    return done[-1]


def check_format(path: str | Path) -> None:
    """Refuse a checkpoint folder this version cannot read, with the fix; reads no pickle."""
    path = Path(path)
    if not (path / STATE).exists():
        if (path / "state.pt").exists():
            raise CheckpointFormatError(
                f"{path}: a checkpoint in the earlier pickle format, which this version does "
                "not load (unpickling can run code); start the run again without --resume, "
                "or resume it with the copd version that wrote it"
            )
        raise CheckpointFormatError(f"{path}: no {STATE}; not a complete checkpoint folder")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointFormatError(f"{path}: unreadable checkpoint file ({e})") from e


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file as fresh CPU tensors (copied out of the file's memory map, so an
    optimizer that updates them in place never touches the file)."""
    try:
        return {k: v.clone() for k, v in load_file(str(path)).items()}
    except (OSError, SafetensorError) as e:
        raise CheckpointFormatError(f"{path}: unreadable checkpoint file ({e})") from e


def _read_state(path: Path) -> dict:
    check_format(path)
    state = _read_json(path / STATE)
    if state.get("format") != FORMAT:
        raise CheckpointFormatError(
            f"{path}: checkpoint format {state.get('format')} is not {FORMAT}; start again "
            "without --resume, or resume with the copd version that wrote it"
        )
    return state


def read_branch_states(path: str | Path, names) -> dict[str, BranchState]:
    """The BranchState of each named branch in the checkpoint at `path`."""
    path = Path(path)
    state = _read_state(path)
    gens = _read_tensors(path / "state.safetensors")
    out = {}
    for name in names:
        blob = _read_json(path / f"branch-{name}.json")
        tensors = _read_tensors(path / f"branch-{name}.safetensors")
        rng = state["rngs"].get(name)
        snapshot = blob["snapshot"]
        out[name] = BranchState(
            {k: tensors[f"trainable/{k}"] for k in blob["trainable"]},
            _decode(blob["optimizer"], tensors),
            None if rng is None else _rng_from_json(rng),
            gens.get(f"gens/{name}"),
            None if snapshot is None else {k: tensors[f"snapshot/{k}"] for k in snapshot},
        )
    return out


def restore(world, path: str | Path) -> dict:
    """Load a checkpoint into an already built world (same config); returns its `extra`.
    A world whose branches live in workers (Ray) restores its own counters and RNGs here;
    the workers load theirs from `world.state.restored_from` (`read_branch_states`)."""
    path = Path(path)
    state = _read_state(path)
    tensors = _read_tensors(path / "state.safetensors")
    branch_states = read_branch_states(path, [b.name for b in world.branches])
    for k, s in state["rngs"].items():
        world.rngs.setdefault(k, random.Random()).setstate(_rng_from_json(s))
    world.gen.set_state(tensors["gen"])
    for k in state["gens"]:
        if k in world.gens:
            world.gens[k].set_state(tensors[f"gens/{k}"])
    torch.set_rng_state(tensors["torch_rng"])
    world.state.step = state["step"]
    world.state.teachers = {}
    for b in world.branches:
        load_branch_state(world, b, branch_states[b.name])
    world.state.resume_extra = state.get("extra", {})  # multi-stage loops read their stage
    world.state.restored_from = str(path)
    return world.state.resume_extra
