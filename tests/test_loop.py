"""The loop pieces every algorithm shares (copd/train/algorithms/loop.py), on real tiny runs:
one evaluation per (model, benchmark, step), one checkpoint when a stop request arrives at
a cycle end, and the preset table (plain data, no registration on import)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from copd.spec import presets
from copd.train.algorithms import run
from copd.train.logger import NullLogger
from copd.train.world import TrainingCancelled, World


class Recorder(NullLogger):
    """Keeps every evaluation and checkpoint record; `stop_at` asks `world` to stop once
    the step `stop_at` has been logged (as SIGTERM does, between two steps)."""

    def __init__(self, stop_at: int | None = None):
        self.evals: list[tuple[str, str, int]] = []
        self.checkpoints: list[int] = []
        self.stop_at = stop_at
        self.world: World | None = None

    def log_metrics(self, metrics, *, step, cycle=0, phase=""):
        if step == self.stop_at:
            self.world.state.stop_requested = True

    def log_eval(self, model, benchmark, score, n, *, step):
        self.evals.append((model, benchmark, step))

    def log_checkpoint(self, path, *, step):
        self.checkpoints.append(step)


@pytest.mark.parametrize("preset", ["demo", "expert", "mixed", "static_opd"])
def test_one_evaluation_per_model_benchmark_and_step(preset, tiny_cfg, tmp_path):
    # eval_every_cycles=1: the last cycle's end is the final step, which `finish` evaluates
    cfg = tiny_cfg(preset, "eval.at_start=true")
    rec = Recorder()
    world = World.build(cfg, rec)
    scores = run(world, tmp_path)
    counts = Counter(rec.evals)
    twice = {k: n for k, n in counts.items() if n > 1}
    assert not twice, f"evaluated more than once: {twice}"
    final = world.state.step
    steps = {step for _, _, step in rec.evals}
    assert 0 in steps and final in steps and len(steps) > 2  # start, cycle ends, final
    assert {m for m, _, s in rec.evals if s == final} == set(scores)
    for model in scores:  # the final step scores every benchmark of every model
        benches = {b for m, b, s in rec.evals if m == model and s == final}
        test = {*world.tasks, "overall"}  # + the validation split at the final step
        assert benches == test | {f"{b}@val" for b in test}


@pytest.mark.parametrize("preset", ["demo", "expert"])
def test_stop_request_at_a_cycle_end_checkpoints_once(preset, tiny_cfg, tmp_path):
    cfg = tiny_cfg(preset)
    sc = cfg.schedule
    cycle_end = sc.rl_steps + sc.opd_steps  # the first cycle's last step
    rec = Recorder(stop_at=cycle_end)
    world = rec.world = World.build(cfg, rec)
    with pytest.raises(TrainingCancelled, match=f"stopped at step {cycle_end} "):
        run(world, tmp_path)
    assert rec.checkpoints == [cycle_end]
    assert (tmp_path / "checkpoints" / f"step-{cycle_end:06d}" / "state.json").exists()


def test_presets_are_one_table_of_plain_data():
    assert list(presets.PRESETS) == presets.names()
    for name, (factory, description) in presets.PRESETS.items():
        cfg = factory()
        assert presets.get(name) == cfg and description == presets.describe(name)
    for members in presets.sets().values():
        assert set(members) <= set(presets.PRESETS)


def test_listing_presets_imports_no_algorithm():
    code = (
        "import sys; from copd.spec import presets; presets.names(); presets.get('mopd'); "
        "print(sorted(m for m in sys.modules if m.startswith(('copd.train.algorithms', 'torch'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
