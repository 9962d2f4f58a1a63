"""experiments/pool.py: which finished runs are reused, and what a new attempt clears."""

import json

from copd.spec import RunConfig
from experiments.pool import Job, done, one_thread, prepare
from storage import RunStore


def _finished(job: Job, config: dict) -> None:
    job.run_dir.mkdir(parents=True)
    (job.run_dir / "config.json").write_text(json.dumps(config))
    (job.run_dir / "results.json").write_text(json.dumps({"scores": {"merged": {"add": 0.5}}}))


def test_a_field_added_since_is_not_a_difference(tmp_path):
    cfg = RunConfig(name="r", seed=1)
    job = Job(cfg, tmp_path / "r")
    old = one_thread(cfg).to_dict()
    del old["grpo"]["micro_batch_rows"]  # written before the field existed (default 0)
    _finished(job, old)
    assert done(job) == {"merged": {"add": 0.5}}
    other = Job(RunConfig(name="r", seed=2), job.run_dir)  # a real difference: train again
    assert done(other) is None


def test_a_new_attempt_clears_the_folder_and_the_stores_earlier_run(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    store = RunStore.from_url(url)
    cfg = RunConfig(name="r", group="g")
    job = Job(cfg, tmp_path / "r")
    _finished(job, one_thread(cfg).to_dict())
    (job.run_dir / "metrics.jsonl").write_text('{"type": "metric"}\n')
    (job.run_dir / "checkpoints").mkdir()
    earlier = store.create_run("r", "copd", {}, group="g", run_dir=str(job.run_dir.resolve()))
    keep = store.create_run("other", "copd", {}, group="g", run_dir=str(tmp_path / "other"))
    prepare(job, store)
    assert not (job.run_dir / "metrics.jsonl").exists()
    assert not (job.run_dir / "results.json").exists()
    assert not (job.run_dir / "checkpoints").exists()
    assert [r.id for r in store.list_runs(group="g")] == [keep.id]
    assert earlier.id not in [r.id for r in store.list_runs()]
