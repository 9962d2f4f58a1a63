"""Nothing lost, nothing mixed up: run folders, resume, early validation, clear errors.

Each test names the failure it guards against. Process-level behaviour runs real processes
(the trainer, or tests/fake_trainer.py where only a process must exist); file-system
behaviour runs on a real read-only mount or a 1 MiB tmpfs when the tests run as root, and
skips with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from tiny_support import tiny_overrides
from waits import log_tail, wait_until

from app.control import procs
from app.control.launcher import RESUME_MARKER, Launcher
from copd.spec import ConfigError, RunConfig
from storage import MetricPoint, RunStore, StoreError

REPO = Path(__file__).resolve().parent.parent
FAKE = [sys.executable, str(Path(__file__).parent / "fake_trainer.py")]
QUICK = [  # no evaluation or diagnostics: only the training steps
    "schedule.eval_every_cycles=0",
    "eval.at_start=false",
    "eval.n_prompts=2",
    "diagnostics.vs_base=false",
    "diagnostics.n_prompts=1",
]

pytestmark = pytest.mark.timeout(600)


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", COPD_HEARTBEAT_S="1", **extra)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def copd(*args: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "copd", *args], cwd=cwd, env=env(), capture_output=True,
        text=True, timeout=kw.pop("timeout", 300), **kw,
    )  # fmt: skip


def sets(overrides: list[str]) -> list[str]:
    return [x for o in overrides for x in ("--set", o)]


def kill_all(store: RunStore) -> None:
    for run in store.list_runs(status="running"):
        if procs.is_alive(run.pid, run.pid_start_time):
            procs.signal_group(run.pid, signal.SIGKILL)


def duplicates(store: RunStore, run_id: int) -> list:
    df = store.metric_series([run_id], store.metric_keys(run_id), max_points=10**9)
    counts = Counter(zip(df["key"], df["step"], strict=True))
    return [k for k, n in counts.items() if n > 1]


def jsonl_duplicates(path: Path) -> list:
    seen = Counter()
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["type"] == "metric":
            seen.update((k, rec["step"]) for k in rec["values"])
    return [k for k, n in seen.items() if n > 1]


def as_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root (id -u is {os.geteuid()}) to mount a file system")


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                         capture_output=True, text=True)  # fmt: skip
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ---------------------------------------------------------------------- 1. run folders
def test_a_new_run_never_reuses_another_stores_folder_or_resume_marker(tmp_path):
    """Two stores share COPD_HOME/runs: store a's run 1 was resumed; store b's run 1 gets
    a folder of its own and starts fresh (before: the same `1-early/`, whose stale
    `.resume` marker made it resume the other run's checkpoint)."""
    root = tmp_path / "runs"
    cfg = RunConfig().to_dict()
    cfg["schedule"]["cycles"] = 2
    stores = [RunStore.from_url(f"sqlite:///{tmp_path / n}") for n in ("a.db", "b.db")]
    a, b = (
        Launcher(s, root, max_cpu_runs=1, gpus=[], heartbeat_s=1, trainer_argv=FAKE,
                 preflight=False)
        for s in stores
    )  # fmt: skip
    try:
        ra = a.submit(cfg, name="early")
        a.cancel(ra.id)
        a.resume(ra.id)  # writes the marker; the next start passes --resume
        assert (Path(ra.run_dir) / RESUME_MARKER).exists()
        a.tick()
        assert not (Path(ra.run_dir) / RESUME_MARKER).exists(), "marker outlived its start"
        wait_until(lambda: stores[0].get_run(ra.id).status == "finished", "finished")
        assert f"resume={ra.run_dir}" in a.log_tail(ra.id)

        rb = b.submit(cfg, name="early")
        assert rb.id == ra.id and rb.run_dir != ra.run_dir
        assert sorted(os.listdir(rb.run_dir)) == ["config.json"]
        b.tick()
        wait_until(lambda: stores[1].get_run(rb.id).status == "finished", "finished")
        log = b.log_tail(rb.id)
        assert "fake trainer: resume=None" in log and "--resume" not in log
        assert rb.run_dir not in Path(ra.run_dir, "train.log").read_text()  # logs apart
    finally:
        for s in stores:
            kill_all(s)
            s.close()


def paused_trainer(tmp_path: Path, cwd: Path, db: str, overrides: list[str], point: str):
    """`copd train demo --db DB` started in `cwd`, its output in tmp_path/trainer.log, to
    be held at `point` ($COPD_PAUSE_AT: "20" after step 20, "checkpoint-10"). Returns the
    process, the pause file (exists while it is held) and the log."""
    paused, log = tmp_path / "paused", tmp_path / "trainer.log"
    with open(log, "wb") as out:
        trainer = subprocess.Popen(
            [sys.executable, "-m", "copd", "train", "demo", "--db", db, *sets(overrides)],
            cwd=cwd, env=env(COPD_PAUSE_AT=f"{point}:{paused}"), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(paused.exists, f"held at {point}", proc=trainer, log=log)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(trainer.pid, signal.SIGKILL)
        raise
    return trainer, paused, log


def crash_then_resume(store: RunStore, run, db: str, home: Path, cwd: Path):
    """After a kill -9: `copd runs` sees the crash, `copd resume` continues the run; the
    run once it has ended."""
    common = ["--db", db, "--runs-root", str(home)]
    time.sleep(2.5)  # two heartbeats: the kill is then visible as a crash
    assert copd("runs", *common, cwd=cwd).returncode == 0
    assert store.get_run(run.id).status == "crashed"
    res = copd("resume", str(run.id), *common, cwd=cwd)
    assert res.returncode == 0, res.stderr
    return wait_until(
        lambda: (r := store.get_run(run.id)).is_terminal and r, "finished",
        log=Path(run.run_dir) / "train.log",
    )  # fmt: skip


def backend_url(backend: str, tmp_path: Path, request) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'copd.db'}"
    return request.getfixturevalue("pg_server").new_database()


# ------------------------------------------------------- 2 + 3 + 4 + 5. resume, real processes
def test_resume_after_kill_9_from_another_cwd_logs_each_step_once(tmp_path, tiny_model_dir):
    """`copd train --db` in one folder (no --out: runs/<id>-<name>, recorded absolute),
    kill -9 after a checkpoint and a few more logged steps, then `copd runs` + `copd resume`
    from another folder: it continues from the checkpoint, the rows logged after it are
    deleted first (store and metrics.jsonl), so every (metric, step) is logged once, and
    the store lists only checkpoints whose folders exist. The trainer is held at step 20
    ($COPD_PAUSE_AT: checkpoint at 15, rows 16-20 flushed) and killed there: no race."""
    db = f"sqlite:///{tmp_path / 'copd.db'}"
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    overrides = tiny_overrides(tiny_model_dir) + QUICK
    overrides += [
        "schedule.cycles=3", "schedule.rl_steps=10", "schedule.opd_steps=5",
        "checkpoint_every=0", "name=kill me",
    ]  # fmt: skip
    trainer, _, _ = paused_trainer(tmp_path, here, db, overrides, "20")
    store = RunStore.from_url(db)
    try:
        run = store.list_runs()[0]
        assert Path(run.run_dir) == (here / "runs" / f"{run.id}-kill-me").resolve()
        assert store.latest_checkpoint(run.id).step == 15
        assert store.metric_series([run.id], ["run/progress"], 10**9)["step"].max() == 20
        os.killpg(trainer.pid, signal.SIGKILL)
        trainer.wait()
        assert store.get_run(run.id).status == "running"
        final = crash_then_resume(store, run, db, tmp_path / "home", there)
        assert final.status == "finished", final.error
        events = [e.message for e in store.events(run.id)]
        removed = [m for m in events if m.startswith("resume: removed")]
        assert removed and "after step 15" in removed[0] and "metrics" in removed[0]
        assert any(m.startswith("resumed from") for m in events)
        assert duplicates(store, run.id) == []
        assert jsonl_duplicates(Path(run.run_dir) / "metrics.jsonl") == []
        total = 15 * 3
        steps = store.metric_series([run.id], ["run/progress"], 10**9)["step"].tolist()
        assert steps == list(range(1, total + 1))
        cks = store.checkpoints(run.id)
        assert cks and all(Path(c.path).exists() for c in cks), cks
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(trainer.pid, signal.SIGKILL)
        kill_all(store)
        store.close()


def jsonl_points(path: Path, up_to_step: int | None = None) -> set[tuple[str, int]]:
    """(key, step) of every metric in a run's metrics.jsonl (up to a step)."""
    out = set()
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["type"] == "metric" and (up_to_step is None or rec["step"] <= up_to_step):
            out.update((k, rec["step"]) for k in rec["values"])
    return out


def store_points(store: RunStore, run_id: int, up_to_step: int | None = None) -> set:
    df = store.metric_series([run_id], store.metric_keys(run_id), max_points=10**9)
    if up_to_step is not None:
        df = df[df["step"] <= up_to_step]
    return set(zip(df["key"], df["step"].astype(int), strict=True))


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)]  # CI runs both


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_kill_as_a_checkpoint_appears_loses_no_row(tmp_path, tiny_model_dir, backend, request):
    """kill -9 the moment `checkpoints/step-000010` exists (held there by $COPD_PAUSE_AT,
    before anything else runs): every row the checkpoint covers is already in the store,
    so the resume from it leaves the store equal to metrics.jsonl, each (metric, step)
    once. Before: the folder was committed before the store's buffered rows, and a kill
    in that window lost steps since the last flush for good (resume skips past them), and
    the resumed first step lacked the seconds of the step before the kill."""
    db = backend_url(backend, tmp_path, request)
    overrides = tiny_overrides(tiny_model_dir) + QUICK
    overrides += [
        "schedule.cycles=2", "schedule.rl_steps=5", "schedule.opd_steps=5",
        "checkpoint_every=0", "name=window", "diagnostics.samples_every=2",
    ]  # fmt: skip
    trainer, _, _ = paused_trainer(tmp_path, tmp_path, db, overrides, "checkpoint-10")
    store = RunStore.from_url(db)
    try:
        os.killpg(trainer.pid, signal.SIGKILL)
        trainer.wait()
        run = store.list_runs()[0]
        jsonl = Path(run.run_dir) / "metrics.jsonl"
        assert (Path(run.run_dir) / "checkpoints" / "step-000010").is_dir()
        covered = jsonl_points(jsonl, up_to_step=10)
        assert ("run/progress", 10) in covered
        missing = covered - store_points(store, run.id, up_to_step=10)
        assert not missing, f"{len(missing)} rows the checkpoint covers are not in the store"
        assert store.sample_count(run.id) > 0
        final = crash_then_resume(store, run, db, tmp_path / "home", tmp_path)
        assert final.status == "finished", final.error
        assert duplicates(store, run.id) == []
        steps = store.metric_series([run.id], ["run/progress"], 10**9)["step"].tolist()
        assert steps == list(range(1, 21))
        assert store_points(store, run.id) == jsonl_points(jsonl)
        # the seconds of step 10's after-step work (diagnostics at the phase end) are step
        # 10's rows, so the resumed first step (11) times the same parts as the first RL
        # step of the fresh run (1). Before: they went out with step 11 and the kill lost them
        timed = {}
        for key, step in store_points(store, run.id):
            if key.startswith("time/"):
                timed.setdefault(step, set()).add(key)
        assert "time/diagnostics_s" in timed[10] and "time/diagnostics_s" in timed[0]
        assert timed[11] == timed[1], (timed[1], timed[11])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(trainer.pid, signal.SIGKILL)
        kill_all(store)
        store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_second_writer_of_a_running_run_is_refused_and_changes_nothing(
    tmp_path, tiny_model_dir, backend, request
):
    """While run 1 trains (held at step 6 by $COPD_PAUSE_AT), `copd train --resume ITS_DIR
    --run-id 1` is refused by the folder's lock and `copd train --run-id 1 --out OTHER` by
    the store's writer lease, each in one line, before touching anything: the store and
    metrics.jsonl are unchanged, and the first trainer ends "finished" with each (metric,
    step) once. Before: the second took the run over (duplicate rows, a truncated
    metrics.jsonl under the first writer, "finished" at 87%)."""
    db = backend_url(backend, tmp_path, request)
    overrides = tiny_overrides(tiny_model_dir) + QUICK
    overrides += [
        "schedule.cycles=1", "schedule.rl_steps=5", "schedule.opd_steps=5",
        "checkpoint_every=5", "name=one writer",
    ]  # fmt: skip
    trainer, paused, log = paused_trainer(tmp_path, tmp_path, db, overrides, "6")
    store = RunStore.from_url(db)
    try:
        run = store.list_runs()[0]
        run_dir = Path(run.run_dir)
        before = (store_points(store, run.id), (run_dir / "metrics.jsonl").read_bytes())
        config = str(run_dir / "config.json")
        attempts = {
            "folder": ["--resume", str(run_dir)],
            "lease": ["--out", str(tmp_path / "other")],
        }
        for what, extra in attempts.items():
            res = copd("train", config, "--db", db, "--run-id", str(run.id), *extra, cwd=tmp_path)
            assert res.returncode == 2, (what, res.stdout, res.stderr)
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and "one writer per run" in lines[0], (what, res.stderr)
            assert f"process {trainer.pid}" in lines[0], lines[0]
            after = (store_points(store, run.id), (run_dir / "metrics.jsonl").read_bytes())
            assert after == before, what
            assert store.get_run(run.id).pid == trainer.pid
        paused.unlink()  # let the first writer go on
        assert trainer.wait() == 0, log_tail(log)
        final = store.get_run(run.id)
        assert final.status == "finished" and final.progress == 1.0, final.error
        assert duplicates(store, run.id) == []
        steps = store.metric_series([run.id], ["run/progress"], 10**9)["step"].tolist()
        assert steps == list(range(1, 11))
        assert jsonl_duplicates(run_dir / "metrics.jsonl") == []
        assert len(store.checkpoints(run.id)) == len({c.step for c in store.checkpoints(run.id)})
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(trainer.pid, signal.SIGKILL)
        kill_all(store)
        store.close()


def test_resume_without_a_checkpoint_says_so_and_starts_clean(tmp_path, tiny_cfg):
    """Killed before its first checkpoint: the resume deletes everything logged, says so,
    and trains from step 0 (before: it restarted silently and logged every row twice)."""
    from copd.runner import train_run

    cfg = tiny_cfg("demo", *QUICK, "schedule.cycles=1")
    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    out = tmp_path / "run"
    run = store.create_run(cfg.name, cfg.method, cfg.to_dict(), run_dir=str(out))
    # What a first attempt killed at step 7 left: rows in the store and in metrics.jsonl.
    out.mkdir()
    pts = [MetricPoint("run/progress", s / 10, step=s) for s in range(1, 8)]
    store.log_metrics(run.id, pts)
    with open(out / "metrics.jsonl", "w") as f:
        for p in pts:
            f.write(json.dumps({"type": "metric", "step": p.step, "values": {p.key: p.value}}))
            f.write("\n")
    train_run(cfg, out, store=store, run_id=run.id, resume=str(out))
    events = [e.message for e in store.events(run.id)]
    assert any("no checkpoint in" in m and "starting clean from step 0" in m for m in events)
    assert any("resume: removed" in m and "(no checkpoint)" in m for m in events)
    assert duplicates(store, run.id) == []
    assert jsonl_duplicates(out / "metrics.jsonl") == []
    steps = store.metric_series([run.id], ["run/progress"], 10**9)["step"].tolist()
    assert steps == list(range(1, cfg.schedule.total_steps() + 1))
    store.close()


def test_pruned_checkpoints_leave_no_rows(tmp_path):
    from storage.logger import StoreLogger

    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    run = store.create_run("r", "copd", {})
    lg = StoreLogger(store, run.id, background=False)
    dirs = [tmp_path / f"step-{i}" for i in range(3)]
    for i, d in enumerate(dirs):
        d.mkdir()
        if i == 2:
            shutil.rmtree(dirs[0])  # the writer prunes the oldest before reporting a new one
        lg.log_checkpoint(str(d), step=i)
    assert [c.path for c in store.checkpoints(run.id)] == [str(dirs[1]), str(dirs[2])]
    lg.close()
    store.close()


# ---------------------------------------------------------------------- 4. parallel trains
def test_parallel_train_with_db_get_a_folder_each_and_names_cannot_escape(tmp_path, tiny_model_dir):
    """Two `copd train demo --db X` at once without --out (before: both in runs/copd-demo,
    one metrics.jsonl interleaved, results.json overwritten); a name with '..' is refused."""
    db = f"sqlite:///{tmp_path / 'copd.db'}"
    args = ["train", "demo", "--db", db, *sets(tiny_overrides(tiny_model_dir) + QUICK)]
    args += sets(["schedule.cycles=1"])
    procs_ = [
        subprocess.Popen([sys.executable, "-m", "copd", *args], cwd=tmp_path, env=env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    errs = [p.communicate(timeout=300)[1] for p in procs_]
    assert [p.returncode for p in procs_] == [0, 0], errs
    store = RunStore.from_url(db)
    runs = store.list_runs()
    dirs = {Path(r.run_dir) for r in runs}
    assert len(dirs) == 2 and all(d.parent == (tmp_path / "runs").resolve() for d in dirs)
    for r in runs:
        d = Path(r.run_dir)
        assert d.name == f"{r.id}-copd-demo" and (d / "results.json").exists()
        assert jsonl_duplicates(d / "metrics.jsonl") == []
    store.close()

    res = copd("train", "demo", "--set", "name=../../escape", cwd=tmp_path)
    assert res.returncode == 2 and "cannot name a run folder" in res.stderr
    assert not (tmp_path.parent / "escape").exists()


# ---------------------------------------------------------------------- 6 + 7. early checks
def test_submit_runs_copd_check_and_records_nothing_on_failure(tmp_path, tiny_model_dir):
    """A missing model, an unknown task, a malformed dataset row, a tokenizer whose ids do
    not fit the embeddings: refused at submit with the trainer's own message, no run row and
    no folder (before: rc 0, a run and a folder, then a late failure in the trainer)."""
    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    launcher = Launcher(store, tmp_path / "runs", gpus=[], max_cpu_runs=1)
    good = _tiny(tiny_model_dir).to_dict()
    bad_rows = tmp_path / "rows.jsonl"
    bad_rows.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+2=", "answer": \n')
    small_vocab = tmp_path / "small-vocab"
    shutil.copytree(tiny_model_dir, small_vocab)
    conf = json.loads((small_vocab / "config.json").read_text())
    conf["vocab_size"] = 8
    (small_vocab / "config.json").write_text(json.dumps(conf))

    def variant(**changes):
        data = json.loads(json.dumps(good))
        for k, v in changes.items():
            data[k] = v
        return data

    cases = [
        (variant(model={**good["model"], "path": "/nonexistent"}), "/nonexistent does not exist"),
        (
            variant(branches=[{"name": "a", "task": "nosuch"}, good["branches"][1]]),
            "unknown task 'nosuch'",
        ),
        (
            variant(
                branches=[{"name": "a", "task": "dataset"}, good["branches"][1]],
                task_options={**good["task_options"], "dataset": {"path": str(bad_rows)}},
            ),
            "line 2: not valid JSON",
        ),
        (variant(model={**good["model"], "path": str(small_vocab)}), "embedding has 8 rows"),
    ]
    for cfg, message in cases:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            launcher.submit(cfg)
    assert store.list_runs() == []
    assert not (tmp_path / "runs").exists() or not any(
        p.name[0].isdigit() for p in (tmp_path / "runs").iterdir()
    )
    calls = []
    real = launcher._run_check
    launcher._run_check = lambda c: calls.append(1) or real(c)
    for seed in range(3):  # a sweep: one check for one (model, tasks)
        launcher.submit(good, seed=seed)
    assert len(calls) == 1 and len(store.list_runs()) == 3
    store.close()


SUBMIT_REFUSED = {
    "grpo.lr=inf": ("grpo", "lr", float("inf"), "grpo.lr: expected a finite number"),
    "grpo.lr=nan (in code)": ("grpo", "lr", float("nan"), "grpo.lr: must be a finite number"),
    "a 10^13-step run": ("schedule", "cycles", 10**12, "at most 10,000,000: lower schedule"),
    "10^8 prompts per step": ("grpo", "prompts_per_step", 10**8, "GiB of activations"),
    "completions past the positions": ("sampling", "max_new_tokens", 100_000, "positions"),
}


@pytest.mark.parametrize("case", list(SUBMIT_REFUSED))
def test_settings_that_cannot_run_are_refused_at_submit(case, tmp_path, tiny_model_dir):
    """Accepted at submit, failed later (before): inf learning rate (fails at step 1), a
    10^13-step run, 10^8 prompts per step (a MemoryError traceback), 100,000 new tokens on
    a 64-position model (11 GB after ten minutes). Now `copd check` (a real process at
    submit) refuses each in one line naming the setting; no run is recorded."""
    section, field, value, message = SUBMIT_REFUSED[case]
    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    launcher = Launcher(store, tmp_path / "runs", gpus=[], max_cpu_runs=1)
    cfg = _tiny(tiny_model_dir)
    if "in code" in case:  # a config built in code never passes through the parser
        from dataclasses import replace

        cfg = replace(cfg, grpo=replace(cfg.grpo, lr=value))
        with pytest.raises(ConfigError, match=message):
            cfg.validate()
    else:
        data = cfg.to_dict()
        data[section][field] = value
        with pytest.raises(ConfigError, match=message) as refused:
            launcher.submit(data)  # runs `copd check` in a real process: its one line
        assert len(str(refused.value).splitlines()) == 1, refused.value
    assert store.list_runs() == []
    store.close()


def _tiny(model_dir: str) -> RunConfig:
    from copd.spec import apply_overrides, presets

    return apply_overrides(presets.get("demo"), tiny_overrides(model_dir)).validate()


def test_diverged_weights_fail_with_the_step_and_the_fix(tmp_path, tiny_cfg):
    """grpo.lr=1e10: before, `IndexError: index out of range in self` one step later."""
    from copd.runner import train_run
    from copd.train.guard import NonFiniteWeights

    cfg = tiny_cfg("demo", *QUICK, "grpo.lr=1e10")
    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    with pytest.raises(NonFiniteWeights, match=r"^step \d+: .*grpo\.lr \(now 1e\+10\)"):
        train_run(cfg, tmp_path / "run", store=store)
    run = store.list_runs()[0]
    assert run.status == "failed" and "grpo.lr" in run.error and "IndexError" not in run.error
    assert store.metric_count(run.id) > 0  # what was logged before is kept
    store.close()


def test_full_disk_checkpoint_says_no_space_and_cleans_up(tmp_path, tiny_cfg):
    """A checkpoint on a 1 MiB tmpfs: before, `RuntimeError: [enforce fail at
    inline_container.cc]` and a half-written checkpoints/.tmp-* left behind."""
    as_root("a full-disk test")
    from copd.train import checkpoint
    from copd.train.logger import NullLogger
    from copd.train.world import World

    world = World.build(tiny_cfg("demo"), NullLogger())
    with tmpfs(tmp_path / "small", "1m") as mnt:
        with pytest.raises(checkpoint.CheckpointWriteError, match=f"no space left on {mnt}"):
            checkpoint.save(world, mnt)
        assert list((mnt / "checkpoints").iterdir()) == []


def test_clear_errors_for_config_files_store_urls_and_statuses(tmp_path, capsys):
    from copd.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x",\n "seed": }\n')
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: line 2, column" in err and "Traceback" not in err
    for url, says in (
        ("garbage://x", "unknown database backend"),
        ("notaurl", "not a database URL"),
    ):
        assert main(["runs", "--db", url]) == 2
        assert says in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["runs", "--status", "bogus", "--db", f"sqlite:///{tmp_path / 'x.db'}"])
    assert exc.value.code == 2 and "invalid choice: 'bogus'" in capsys.readouterr().err


def test_read_only_store_lists_runs_and_refuses_writes_clearly(tmp_path, capsys):
    """Before: `unable to open database file` with no path, even for `copd runs`."""
    as_root("a read-only mount")
    from copd.cli import main

    with tmpfs(tmp_path / "ro", "8m") as mnt:
        url = f"sqlite:///{mnt / 'copd.db'}"
        store = RunStore.from_url(url)
        store.create_run("kept", "copd", RunConfig().to_dict())
        store.close()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        common = ["--db", url, "--runs-root", str(tmp_path / "runs")]
        assert main(["runs", "--json", *common]) == 0
        assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["kept"]
        ro = RunStore.from_url(url)
        with pytest.raises(StoreError, match=f"run store {mnt / 'copd.db'} is read-only"):
            ro.create_run("new", "copd", {})
        ro.close()
        assert main(["cancel", "1", *common]) == 2
        assert "is read-only" in capsys.readouterr().err


def test_runs_json_is_strict_json_with_nan(tmp_path, capsys):
    from copd.cli import main

    url = f"sqlite:///{tmp_path / 'copd.db'}"
    store = RunStore.from_url(url)
    run = store.create_run("r", "copd", {})
    store.set_status(run.id, "cancelled")  # not queued: `copd runs` must not start a trainer
    store.log_metrics(run.id, [MetricPoint("pair/a~b/overlap_top10", float("nan"), step=1)])
    store.close()
    assert main(["runs", "--json", "--db", url, "--runs-root", str(tmp_path / "runs")]) == 0

    def no_constants(name):
        raise ValueError(f"{name} is not JSON")

    rows = json.loads(capsys.readouterr().out, parse_constant=no_constants)
    assert rows[0]["overlap_top10"] is None


# ---------------------------------------------------------------------- 9. supervision
def test_two_supervisors_never_start_a_run_twice(tmp_path):
    """Two launchers on one store with different run roots (so their file locks differ)
    tick at the same moment: each queued run is started by exactly one of them."""
    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    kw = dict(max_cpu_runs=8, gpus=[], heartbeat_s=1, trainer_argv=FAKE, preflight=False)
    a = Launcher(store, tmp_path / "a", **kw)
    b = Launcher(store, tmp_path / "b", **kw)
    cfg = RunConfig().to_dict()
    cfg["schedule"]["cycles"] = 1
    runs = [a.submit(cfg, name=f"r{i}") for i in range(6)]
    barrier = threading.Barrier(2)
    reports = {}

    def tick(name, launcher):
        barrier.wait()
        reports[name] = launcher.tick()

    try:
        threads = [threading.Thread(target=tick, args=x) for x in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        started = reports["a"].started + reports["b"].started
        assert sorted(started) == [r.id for r in runs]
        for r in runs:
            log = Path(r.run_dir, "train.log").read_text()
            assert log.count(" launch: ") == 1, log
    finally:
        kill_all(store)
        store.close()


def test_dashboard_starts_a_supervisor_with_the_server(tmp_path, tiny_model_dir):
    """`copd dashboard` ticks without any browser: a queued run starts (before: it stayed
    queued until a page was opened). Stopping the dashboard stops its supervisor."""
    home = tmp_path / "home"
    db = f"sqlite:///{tmp_path / 'copd.db'}"
    store = RunStore.from_url(db)
    launcher = Launcher(store, home / "runs", gpus=[], max_cpu_runs=1, preflight=False)
    run = launcher.submit(_tiny(tiny_model_dir), name="queued")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        dash = subprocess.Popen(
            [sys.executable, "-m", "copd", "dashboard", "--db", db, "--port", str(port)],
            cwd=tmp_path, env=env(COPD_HOME=str(home)), stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(lambda: store.get_run(run.id).status != "queued", "started", proc=dash, log=log)
        import psutil

        children = psutil.Process(dash.pid).children()
        assert any("supervise" in " ".join(c.cmdline()) for c in children)
        dash.send_signal(signal.SIGTERM)
        dash.wait(60)
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], [c.cmdline() for c in alive]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(dash.pid, signal.SIGKILL)
        kill_all(store)
        store.close()


def test_parallel_train_without_a_store_get_a_folder_each(tmp_path, tiny_model_dir):
    """Two `copd train demo` at once without --db or --out (before: both wrote runs/copd-demo,
    one metrics.jsonl interleaved, one config.json for two seeds); a third run into a folder
    that holds a run is refused with the fix, and the folder is left as it was."""
    args = [
        "train",
        "demo",
        *sets(tiny_overrides(tiny_model_dir) + QUICK),
        "--set",
        "schedule.cycles=1",
    ]
    procs_ = [
        subprocess.Popen([sys.executable, "-m", "copd", *args, "--set", f"seed={s}"], cwd=tmp_path,
                         env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for s in (0, 1)
    ]  # fmt: skip
    errs = [p.communicate(timeout=300)[1] for p in procs_]
    assert [p.returncode for p in procs_] == [0, 0], errs
    dirs = sorted((tmp_path / "runs").iterdir())
    assert [d.name for d in dirs] == ["copd-demo", "copd-demo-2"]
    seeds = sorted(json.loads((d / "config.json").read_text())["seed"] for d in dirs)
    assert seeds == [0, 1]
    for d in dirs:
        assert jsonl_duplicates(d / "metrics.jsonl") == []
    before = (dirs[0] / "metrics.jsonl").read_bytes()
    res = copd(*args, "--out", str(dirs[0]), cwd=tmp_path)
    assert res.returncode == 2 and "already holds a run" in res.stderr and "--resume" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert (dirs[0] / "metrics.jsonl").read_bytes() == before
