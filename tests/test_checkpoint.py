"""Checkpoints hold no code: tensors in safetensors files, the rest JSON.

- save -> restore gives back every part of the train state exactly (weights, AdamW
  moments and step counts, teacher snapshots, every RNG, the step, the loop's `extra`);
- a folder whose file is a crafted pickle (its `__reduce__` writes a marker file) is refused
  on restore and by `copd train --resume` with the fix, and the pickle never runs: neither
  the earlier `state.pt` format nor a pickle put in place of a safetensors file.
"""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import pytest
import torch

from copd.train import checkpoint
from copd.train.logger import NullLogger
from copd.train.update import grpo_update
from copd.train.world import World


class _Payload:
    """Unpickling this creates the file `marker`: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted(marker: Path) -> bytes:
    return pickle.dumps({"format": 1, "step": 3, "x": _Payload(marker)})


def _trained_world(tiny_cfg):
    world = World.build(tiny_cfg("demo", "opd.teacher=snapshot"), NullLogger())
    for b in world.branches:
        batch = world.rollout(b.view, world.prompts(b.task, 2, b.name), 4)
        batch.rewards_B = torch.tensor([1.0, 0.0, 0.0, 1.0] * 2)
        grpo_update(world, b, batch)
    world.snapshot_teachers()
    world.state.step = 7
    world.rngs["diag"] = random.Random("diag")
    world.rngs["diag"].random()
    torch.rand(3)  # the global RNG moves on too
    return world


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def test_save_then_restore_gives_back_the_whole_state_exactly(tiny_cfg, tmp_path):
    world = _trained_world(tiny_cfg)
    extra = {"stage": "experts", "budget": {"stages": [{"name": "experts", "steps": 4}]}}
    path = checkpoint.save(world, tmp_path, extra=extra)
    assert {p.suffix for p in path.iterdir()} == {".json", ".safetensors"}  # no pickle
    before = {b.name: checkpoint.branch_state(world, b) for b in world.branches}
    torch_rng = torch.get_rng_state()

    fresh = World.build(tiny_cfg("demo", "opd.teacher=snapshot"), NullLogger())
    torch.rand(5)  # restore must put the global RNG back
    assert checkpoint.restore(fresh, checkpoint.latest(tmp_path)) == extra
    assert fresh.state.step == 7 and fresh.state.restored_from == str(path)
    assert torch.equal(torch.get_rng_state(), torch_rng)
    assert torch.equal(fresh.gen.get_state(), world.gen.get_state())
    assert {k: r.getstate() for k, r in fresh.rngs.items()} == {
        k: r.getstate() for k, r in world.rngs.items()
    }
    for b in fresh.branches:
        after = checkpoint.branch_state(fresh, b)
        ref = before[b.name]
        assert _same(after.trainable, ref.trainable)
        assert _same(after.optimizer, ref.optimizer)  # moments, step counts, param groups
        assert after.optimizer["state"]  # Adam had state to restore
        assert after.snapshot is not None and _same(after.snapshot, ref.snapshot)
        assert after.prompt_rng == ref.prompt_rng
        assert _same(after.gen, ref.gen)


def test_the_earlier_pickle_format_is_refused_without_unpickling(tiny_cfg, tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(_crafted(tmp_path / "control"))  # the payload is live when unpickled
    assert (tmp_path / "control").exists()

    folder = tmp_path / "run" / "checkpoints" / "step-000003"
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(_crafted(marker))
    (folder / "branch-add.pt").write_bytes(_crafted(marker))
    with pytest.raises(checkpoint.CheckpointFormatError, match="start the run again"):
        checkpoint.latest(tmp_path / "run")
    world = World.build(tiny_cfg("demo"), NullLogger())
    with pytest.raises(checkpoint.CheckpointFormatError, match="earlier pickle format"):
        checkpoint.restore(world, folder)
    assert not marker.exists()
    assert world.state.step == 0


def test_copd_train_resume_refuses_a_pickle_checkpoint_in_one_line(tiny_cfg, tmp_path, capsys):
    from copd.cli import main

    marker = tmp_path / "ran"
    run = tmp_path / "run"
    folder = run / "checkpoints" / "step-000002"
    folder.mkdir(parents=True)
    tiny_cfg("demo").to_json(run / "config.json")
    (run / "metrics.jsonl").write_text('{"type": "metric", "step": 1}\n')
    (folder / "state.pt").write_bytes(_crafted(marker))
    assert main(["train", str(run / "config.json"), "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "earlier pickle format" in err and "--resume" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not marker.exists()
    assert (run / "metrics.jsonl").read_text() == '{"type": "metric", "step": 1}\n'  # kept


@pytest.mark.parametrize("victim", ["branch-add.safetensors", "state.safetensors"])
def test_a_pickle_in_place_of_a_tensor_file_is_refused_and_never_run(tiny_cfg, tmp_path, victim):
    world = World.build(tiny_cfg("demo"), NullLogger())
    path = checkpoint.save(world, tmp_path)
    marker = tmp_path / "ran"
    (path / victim).write_bytes(_crafted(marker))
    fresh = World.build(tiny_cfg("demo"), NullLogger())
    with pytest.raises(checkpoint.CheckpointFormatError, match="unreadable checkpoint file"):
        checkpoint.restore(fresh, path)
    assert not marker.exists()
    # torch's own zip-pickle container is refused the same way
    torch.save({"x": _Payload(marker)}, path / victim)
    with pytest.raises(checkpoint.CheckpointFormatError, match="unreadable checkpoint file"):
        checkpoint.restore(fresh, path)
    assert not marker.exists()


def test_a_save_cut_short_leaves_no_tmp_folder_behind(tiny_cfg, tmp_path):
    """A kill mid-save left `.tmp-<step>-<pid>` folders that were never removed; the next
    save removes them (only this process writes the run folder: its lock)."""
    world = World.build(tiny_cfg("demo"), NullLogger())
    stale = tmp_path / "checkpoints" / ".tmp-000003-99999"
    stale.mkdir(parents=True)
    (stale / "branch-add.safetensors").write_bytes(b"half")
    path = checkpoint.save(world, tmp_path)
    assert not stale.exists() and path.name == "step-000000"
    assert sorted(p.name for p in path.parent.iterdir()) == ["step-000000"]
