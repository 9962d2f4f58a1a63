"""The Ray back end gives the same run as the in-process one (CPU, same seed).

A private Ray instance is started once for the module, bound to 127.0.0.1 with usage
reporting and the cloud-metadata probe off (copd/train/workers/ray_backend.py: init_ray), and
shut down at the end. Skipped when ray is not installed.

The SIGTERM test (marker `slow`) runs a real `python -m copd train` with its own Ray
instance and signals its process group, as the dashboard's launcher does on cancel.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from copd.train.workers.ray_backend import RAY_ENV

os.environ.update(RAY_ENV)  # before ray is imported anywhere

import psutil  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from waits import wait_until  # noqa: E402

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'copd[ray]')")

from copd.train import checkpoint  # noqa: E402
from copd.train.algorithms.copd import train  # noqa: E402
from copd.train.world import TrainingCancelled, World  # noqa: E402
from tests.test_engine import Recorder  # noqa: E402


@pytest.fixture(scope="module")
def ray_local():
    from copd.train.workers.ray_backend import init_ray

    if ray.is_initialized():
        ray.shutdown()
    # A short folder of its own: Ray's socket paths must stay under 107 bytes, which a
    # pytest-xdist worker's basetemp (/tmp/pytest-of-root/pytest-N/popen-gw0/...) exceeds.
    temp = tempfile.mkdtemp(prefix="copd-ray-")
    init_ray(None, num_cpus=2, temp_dir=temp)
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


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
    every = "diagnostics.samples_every=3"
    local_rec, local_scores = _run(tiny_cfg("demo", every), tmp_path / "local")
    ray_rec, ray_scores = _run(tiny_cfg("demo", "backend.kind=ray", every), tmp_path / "ray")
    a, b = _series(local_rec), _series(ray_rec)
    assert set(a) == set(b)
    assert any("overlap_top10" in k for _, k in a) and any("reward/mean" in k for _, k in a)
    for key in a:
        assert a[key] == pytest.approx(b[key], abs=1e-6, rel=1e-6), key
    assert local_rec.evals == ray_rec.evals
    assert local_scores == ray_scores
    # Samples come through the workers with the same tokens and log-probs.
    assert ray_rec.samples and len(local_rec.samples) == len(ray_rec.samples)
    assert {r["kind"] for _, _, r in ray_rec.samples} == {"probe", "cross"}
    for (sa, _, ra), (sb, _, rb) in zip(local_rec.samples, ray_rec.samples, strict=True):
        assert (sa, ra["branch"], ra["tokens"]) == (sb, rb["branch"], rb["tokens"])
        assert ra["logp"] == pytest.approx(rb["logp"], abs=1e-4)
    # The merged model exported by the driver holds the same weights.
    from transformers import AutoModelForCausalLM

    ma = AutoModelForCausalLM.from_pretrained(tmp_path / "local" / "merged").state_dict()
    mb = AutoModelForCausalLM.from_pretrained(tmp_path / "ray" / "merged").state_dict()
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


@pytest.mark.slow  # resume is tested locally at length; this is the Ray path of it
def test_ray_resume_from_checkpoint_matches_uninterrupted(ray_local, tiny_cfg, tmp_path):
    cfg = tiny_cfg("demo", "backend.kind=ray", "opd.teacher=snapshot", "schedule.rl_steps=1")
    full_rec, full_scores = _run(cfg, tmp_path / "full")
    part = World.build(cfg, Recorder())
    part.state.stop_requested = True  # checkpoint and stop after the first step
    with pytest.raises(TrainingCancelled):
        train(part, tmp_path / "part")
    rec = Recorder()
    resumed = World.build(cfg, rec)
    checkpoint.restore(resumed, checkpoint.latest(tmp_path / "part"))
    assert resumed.state.step == 1 and not resumed.branches  # the branches live in the actors
    assert train(resumed, tmp_path / "part") == full_scores
    # Step by step, not only at the end: the resumed run draws the prompts and tokens the
    # uninterrupted one drew (the driver's prompt RNGs come back from the checkpoint).
    after, full = _series(rec), _series(full_rec)
    assert after and all(after[k] == pytest.approx(full[k], rel=1e-5, abs=1e-6) for k in after)


# ---------------------------------------------------------------------- SIGTERM, real trainer
def _ray_processes(temp_dir: Path) -> list[psutil.Process]:
    """Live processes of the Ray instance whose files are under `temp_dir` (gcs_server and
    raylet name their session folder on the command line; workers name the raylet's)."""
    out = []
    for p in psutil.process_iter(["cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and str(temp_dir) in " ".join(
                p.info["cmdline"] or []
            ):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _steps_logged(metrics: Path) -> int:
    if not metrics.exists():
        return 0
    return len({json.loads(line)["step"] for line in metrics.read_text().splitlines() if line})


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigterm_to_a_ray_run_checkpoints_cancels_and_leaves_no_ray_behind(
    tiny_model_dir, tmp_path, request
):
    """`copd train` with backend.kind=ray, SIGTERM to its process group (what the launcher
    sends): the trainer checkpoints and exits as cancelled, Ray's daemons and actors are
    gone, and a resumed run from that checkpoint completes."""
    from tiny_support import tiny_overrides

    from storage import RunStore

    run_dir, db = tmp_path / "run", f"sqlite:///{tmp_path / 'copd.db'}"
    # Ray's socket paths must stay under 108 bytes: a short folder, not pytest's tmp_path.
    ray_root = Path(tempfile.mkdtemp(prefix="copd-ray-"))
    request.addfinalizer(lambda: shutil.rmtree(ray_root, ignore_errors=True))
    ray_tmp = ray_root / "a"
    sets = tiny_overrides(tiny_model_dir) + [
        "backend.kind=ray",
        f"backend.ray_temp_dir={ray_tmp}",
        "schedule.cycles=50",  # far more steps than the test waits for
        "schedule.eval_every_cycles=0",
        "eval.at_start=false",
        "eval.n_prompts=2",
    ]
    cmd = [sys.executable, "-m", "copd", "train", "demo", "--out", str(run_dir), "--db", db]
    cmd += [a for s in sets for a in ("--set", s)]
    log = open(tmp_path / "train.log", "w")  # noqa: SIM115 (open for the process's life)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(
            lambda: _steps_logged(run_dir / "metrics.jsonl") >= 2, "training",
            proc=proc, log=tmp_path / "train.log", poll=0.5,
        )  # fmt: skip
        ray_procs = _ray_processes(ray_tmp)
        assert any("raylet" in p.name() for p in ray_procs), [p.name() for p in ray_procs]
        children = psutil.Process(proc.pid).children(recursive=True)
        os.killpg(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    tail = (tmp_path / "train.log").read_text()[-3000:]
    assert rc == 3, tail  # `copd train`'s exit code for "stopped; resume with ..."
    ckpt = checkpoint.latest(run_dir)
    assert ckpt is not None, tail
    step = int(ckpt.name.split("-")[1])
    assert step >= 2
    store = RunStore.from_url(db)
    try:
        (run,) = store.list_runs()
        assert run.status == "cancelled", (run.status, run.error)
        assert store.latest_checkpoint(run.id).step == step
    finally:
        store.close()
    # Nothing of that Ray instance outlives the trainer (daemons, actors, agents).
    _, alive = psutil.wait_procs(children, timeout=10)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
    assert _ray_processes(ray_tmp) == []

    # Resume from the checkpoint and finish: the schedule is cut to the cycle after it.
    cycles = step // 3 + 1  # tiny_overrides: 2 RL + 1 OPD steps per cycle
    resume = [sys.executable, "-m", "copd", "train", "demo", "--resume", str(run_dir)]
    resume += [
        "--set",
        f"schedule.cycles={cycles}",
        "--set",
        f"backend.ray_temp_dir={ray_root / 'b'}",
    ]
    done = subprocess.run(resume, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"resumed from {ckpt}" in done.stdout + done.stderr
    results = json.loads((run_dir / "results.json").read_text())
    assert results["steps"] == cycles * 3
    assert _ray_processes(ray_root / "b") == []
