"""The Ray back end gives the same run as the in-process one (CPU, same seed).

A private Ray instance is started once for the module, bound to 127.0.0.1 with usage
reporting and the cloud-metadata probe off (copd/workers/ray_backend.py: init_ray), and
shut down at the end. Skipped when ray is not installed.
"""

from __future__ import annotations

import os

from copd.workers.ray_backend import RAY_ENV

os.environ.update(RAY_ENV)  # before ray is imported anywhere

import pytest  # noqa: E402
import torch  # noqa: E402

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'copd[ray]')")

from copd import checkpoint  # noqa: E402
from copd.algorithms.copd import train  # noqa: E402
from copd.engine import TrainingCancelled, World  # noqa: E402
from tests.test_engine import Recorder  # noqa: E402


@pytest.fixture(scope="module")
def ray_local(tmp_path_factory):
    from copd.workers.ray_backend import init_ray

    if ray.is_initialized():
        ray.shutdown()
    init_ray(None, num_cpus=2, temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield
    ray.shutdown()


def _series(rec: Recorder) -> dict[tuple[int, str], float]:
    """Every logged number that is not a timing or process figure, by (step, key)."""
    out = {}
    for step, _, _, m in rec.metrics:
        for k, v in m.items():
            if not k.startswith(("time/", "system/")):
                out[step, k] = v
    return out


def _run(cfg, out):
    rec = Recorder()
    world = World.build(cfg, rec)
    scores = train(world, out)
    return rec, scores


def test_ray_backend_matches_local(ray_local, tiny_cfg, tmp_path):
    local_rec, local_scores = _run(tiny_cfg("demo"), tmp_path / "local")
    ray_rec, ray_scores = _run(tiny_cfg("demo", "backend.kind=ray"), tmp_path / "ray")
    a, b = _series(local_rec), _series(ray_rec)
    assert set(a) == set(b)
    assert any("overlap_top10" in k for _, k in a) and any("reward/mean" in k for _, k in a)
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-6, rel=1e-6), key
    assert local_rec.evals == ray_rec.evals
    assert local_scores == ray_scores
    # The merged model exported by the driver holds the same weights.
    from transformers import AutoModelForCausalLM

    ma = AutoModelForCausalLM.from_pretrained(tmp_path / "local" / "merged").state_dict()
    mb = AutoModelForCausalLM.from_pretrained(tmp_path / "ray" / "merged").state_dict()
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


def test_ray_resume_from_checkpoint_matches_uninterrupted(ray_local, tiny_cfg, tmp_path):
    cfg = tiny_cfg("demo", "backend.kind=ray", "opd.teacher=snapshot", "schedule.rl_steps=1")
    _, full_scores = _run(cfg, tmp_path / "full")
    part = World.build(cfg, Recorder())
    part.stop_requested = True  # checkpoint and stop after the first step
    with pytest.raises(TrainingCancelled):
        train(part, tmp_path / "part")
    resumed = World.build(cfg, Recorder())
    checkpoint.restore(resumed, checkpoint.latest(tmp_path / "part"))
    assert resumed.step == 1 and not resumed.branches  # the branches live in the actors
    assert train(resumed, tmp_path / "part") == full_scores
