"""Launcher tests with real trainer processes (`python -m copd train`) on the tiny test model
and a real SQLite file: queue -> run -> finish, FIFO on one CPU slot, cancel with checkpoint,
resume, supervision after a restart, kill -9 detection, pid reuse, GPU detection, CLI.

Runs are spawned for real, so the tests poll with generous timeouts (trainer start-up alone
is several seconds of imports on a small machine) and share one short config.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import psutil
import pytest
from waits import HANG_S

from app.control import procs
from app.control.gpus import GPU, detect_gpus, parse_nvidia_smi
from app.control.launcher import CANCEL_MARKER, Launcher, LauncherError
from app.control.run_table import latest_overlap, run_summary
from copd.spec import ConfigError, RunConfig
from storage import MetricPoint, RunStore

HEARTBEAT_S = 1.0
START_TIMEOUT_S = HANG_S  # a hang guard only: every wait also fails at once on a dead run
SHORT = [  # on top of conftest.tiny_overrides: one RL and one OPD step, no evaluation
    "schedule.cycles=1",
    "schedule.rl_steps=1",
    "schedule.opd_steps=1",
    "schedule.eval_every_cycles=0",
    "eval.at_start=false",
    "eval.n_prompts=2",
    "diagnostics.vs_base=false",
    "diagnostics.n_prompts=1",
    "diagnostics.samples_per_prompt=1",
]
LONG = ["schedule.cycles=200", "schedule.rl_steps=5", "schedule.opd_steps=5"]

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def store(tmp_path) -> RunStore:
    s = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    yield s
    s.close()


def make_launcher(store: RunStore, root: Path, **kw) -> Launcher:
    kw.setdefault("heartbeat_s", HEARTBEAT_S)
    kw.setdefault("max_cpu_runs", 1)
    kw.setdefault("gpus", [])
    kw.setdefault("preflight", False)  # tests/test_reliability.py covers `copd check` at submit
    return Launcher(store, root, **kw)


def wait_until(launcher: Launcher, run_id: int, pred, timeout: float, what: str) -> float:
    """Tick until pred(run) holds; return the seconds it took. Fails with the log tail."""
    t0 = time.monotonic()
    while True:
        launcher.tick()
        run = launcher.store.get_run(run_id)
        if pred(run):
            return time.monotonic() - t0
        if run.is_terminal or time.monotonic() - t0 > timeout:
            pytest.fail(
                f"run {run_id} not {what} after {time.monotonic() - t0:.0f} s (status {run.status}, "
                f"error {run.error!r})\n{launcher.log_tail(run_id, 40)}"
            )
        time.sleep(0.2)


def training(launcher: Launcher):
    """Predicate: the trainer runs its loop (its first metrics have reached the store)."""
    return lambda run: run.status == "running" and bool(launcher.store.metric_keys(run.id))


def kill_all(store: RunStore) -> None:
    """Leave no trainer behind whatever a test's outcome."""
    for run in store.list_runs(status="running"):
        if procs.is_alive(run.pid, run.pid_start_time):
            procs.signal_group(run.pid, signal.SIGKILL)


# ---------------------------------------------------------------------- real trainer runs
@pytest.fixture(scope="module")
def sequential_pair(tmp_path_factory, tiny_model_dir):
    """Two short runs queued on one CPU slot, supervised to the end."""
    from tiny_support import tiny_overrides

    from copd.spec import apply_overrides, presets

    tmp = tmp_path_factory.mktemp("seq")
    store = RunStore.from_url(f"sqlite:///{tmp / 'copd.db'}")
    cfg = apply_overrides(presets.get("demo"), tiny_overrides(tiny_model_dir) + SHORT)
    launcher = make_launcher(store, tmp / "runs")
    a = launcher.submit(cfg, name="first")
    b = launcher.submit(cfg, name="second")
    seen_a = [store.get_run(a.id).status]
    b_while_a_ran = set()
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 2 * START_TIMEOUT_S:
            launcher.tick()
            ra, rb = store.get_run(a.id), store.get_run(b.id)
            if ra.status != seen_a[-1]:
                seen_a.append(ra.status)
            if ra.status == "running":
                b_while_a_ran.add(rb.status)
            if rb.is_terminal:
                break
            time.sleep(0.2)
    finally:
        kill_all(store)
    yield {
        "store": store,
        "launcher": launcher,
        "a": store.get_run(a.id),
        "b": store.get_run(b.id),
        "seen_a": seen_a,
        "b_while_a_ran": b_while_a_ran,
        "wall_s": time.monotonic() - t0,
    }
    store.close()


def test_run_goes_queued_running_finished(sequential_pair):
    a, launcher = sequential_pair["a"], sequential_pair["launcher"]
    assert sequential_pair["seen_a"] == ["queued", "running", "finished"], launcher.log_tail(a.id)
    assert a.progress == 1.0 and a.error is None
    assert a.pid and a.pid_start_time and a.host == socket.gethostname()
    assert a.assigned_gpus is None
    run_dir = Path(a.run_dir)
    assert run_dir.name == f"{a.id}-first"
    assert RunConfig.from_file(run_dir / "config.json").name == "first"
    assert (run_dir / "results.json").exists()
    log = launcher.log_tail(a.id, 500)
    assert f"--run-id {a.id}" in log and "--resume" not in log
    assert not psutil.pid_exists(a.pid) or not procs.is_alive(a.pid, a.pid_start_time)


def test_two_runs_on_one_cpu_slot_run_one_after_the_other(sequential_pair):
    a, b = sequential_pair["a"], sequential_pair["b"]
    assert b.status == "finished", sequential_pair["launcher"].log_tail(b.id)
    assert sequential_pair["b_while_a_ran"] == {"queued"}
    assert b.started_at >= a.ended_at
    print(f"two sequential runs took {sequential_pair['wall_s']:.1f} s")


def recorded_points(store, run_id: int, up_to_step: int) -> set[tuple[str, int]]:
    """(key, step) of every metric row the run holds at steps <= `up_to_step`."""
    df = store.metric_series([run_id], store.metric_keys(run_id), max_points=10**6)
    df = df[df["step"] <= up_to_step]
    return set(zip(df["key"], df["step"].astype(int), strict=True))


def test_cancel_checkpoints_then_resume_and_supervise_after_restart(store, tmp_path, tiny_cfg):
    """cancel -> cancelled with a checkpoint; resume passes --resume and continues from it;
    a fresh Launcher (dashboard restart) keeps supervising the running run and cancels it."""
    launcher = make_launcher(store, tmp_path / "runs")
    run = launcher.submit(tiny_cfg("demo", *SHORT, *LONG), name="cancel-me")
    try:
        wait_until(launcher, run.id, training(launcher), START_TIMEOUT_S, "training")
        t0 = time.monotonic()
        done = launcher.cancel(run.id, grace_s=60.0)
        cancel_s = time.monotonic() - t0
        assert done.status == "cancelled", launcher.log_tail(run.id)
        ckpt = store.latest_checkpoint(run.id)
        assert ckpt is not None, "the trainer did not checkpoint on SIGTERM"
        assert not procs.is_alive(done.pid, done.pid_start_time)
        assert not (Path(done.run_dir) / CANCEL_MARKER).exists()
        kept = recorded_points(store, run.id, ckpt.step)
        assert kept, "no metric rows up to the checkpoint"

        assert launcher.resume(run.id).status == "queued"

        def resumed(r) -> bool:
            msgs = [e.message for e in store.events(r.id)]
            return r.status == "running" and any(m.startswith("resumed from") for m in msgs)

        wait_until(launcher, run.id, resumed, START_TIMEOUT_S, "resumed from its checkpoint")
        assert f"--resume {done.run_dir}" in launcher.log_tail(run.id, 500)
        # the resume kept every metric row up to its checkpoint (and the folder: one run_dir)
        assert kept <= recorded_points(store, run.id, ckpt.step)
        assert store.get_run(run.id).run_dir == done.run_dir

        # Dashboard restart: a new instance, no Popen objects, same DB and folders.
        restarted = make_launcher(store, tmp_path / "runs")
        before = store.get_run(run.id)
        deadline = time.monotonic() + 3 * HEARTBEAT_S
        while time.monotonic() < deadline:
            report = restarted.tick()
            assert run.id not in report.crashed
            time.sleep(0.2)
        after = store.get_run(run.id)
        assert after.status == "running" and after.pid == before.pid
        final = restarted.cancel(run.id, grace_s=60.0)
        assert final.status == "cancelled"
        assert not procs.is_alive(final.pid, final.pid_start_time)
        print(f"cancel (SIGTERM -> cancelled, checkpoint step {ckpt.step}) took {cancel_s:.1f} s")
    finally:
        kill_all(store)


def test_kill_9_is_detected_as_crashed_within_two_heartbeats(store, tmp_path, tiny_cfg):
    launcher = make_launcher(store, tmp_path / "runs")
    run = launcher.submit(tiny_cfg("demo", *SHORT, *LONG), name="kill-me")
    try:
        wait_until(launcher, run.id, training(launcher), START_TIMEOUT_S, "training")
        run = store.get_run(run.id)
        # A new supervisor (no Popen to poll) must rely on psutil and the heartbeat; the
        # killed child stays a zombie of this process until someone reaps it.
        watcher = make_launcher(store, tmp_path / "runs")
        os.kill(run.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        while psutil.Process(run.pid).status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.01)
        assert psutil.Process(run.pid).is_running()  # psutil's own check is fooled ...
        assert not procs.is_alive(run.pid, run.pid_start_time)  # ... ours is not
        slowest_tick = 0.0  # on a loaded machine one tick (psutil + SQLite) can take long
        while store.get_run(run.id).status == "running":
            t_tick = time.monotonic()
            watcher.tick()
            slowest_tick = max(slowest_tick, time.monotonic() - t_tick)
            time.sleep(0.05)
            assert time.monotonic() - t_kill < HANG_S, "kill -9 never detected"
        latency = time.monotonic() - t_kill
        crashed = store.get_run(run.id)
        assert crashed.status == "crashed"
        assert "no longer running" in crashed.error and "train.log" in crashed.error
        # stale after two heartbeats, seen by the next tick (its own time, and one poll)
        assert latency <= 2 * HEARTBEAT_S + slowest_tick + 0.5, (latency, slowest_tick)
        # is_alive also reaped the zombie (once all its threads had exited): no pid is left.
        reap_deadline = time.monotonic() + 10
        while psutil.pid_exists(run.pid) and time.monotonic() < reap_deadline:
            procs.is_alive(run.pid, run.pid_start_time)
            time.sleep(0.05)
        assert not psutil.pid_exists(run.pid)
        print(f"kill -9 detected as crashed after {latency:.2f} s (heartbeat {HEARTBEAT_S} s)")
    finally:
        kill_all(store)


def test_cli_launch_no_wait_runs_and_cancel(tmp_path, tiny_model_dir, capsys):
    """`copd launch --no-wait` starts a detached trainer; `copd runs --json` lists it; `copd
    cancel` stops it even during start-up (before the trainer installs its SIGTERM handler)."""
    from tiny_support import tiny_overrides

    from copd.cli import main

    db = f"sqlite:///{tmp_path / 'copd.db'}"
    common = ["--db", db, "--runs-root", str(tmp_path / "runs")]
    sets = [x for o in tiny_overrides(tiny_model_dir) + SHORT + LONG for x in ("--set", o)]
    assert main(["launch", "demo", "--no-wait", "--group", "cli", *sets, *common]) == 0
    run_id = int(capsys.readouterr().out.strip())
    store = RunStore.from_url(db)
    try:
        assert main(["runs", "--json", *common]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [(r["id"], r["status"], r["group"]) for r in rows] == [(run_id, "running", "cli")]
        assert main(["cancel", str(run_id), "--grace", "60", *common]) == 0
        assert store.get_run(run_id).status == "cancelled"
        assert main(["resume", str(run_id), "--max-cpu-runs", "1", *common]) == 0
        assert capsys.readouterr().out.strip().endswith("running")
        assert main(["cancel", str(run_id), *common]) == 0
    finally:
        kill_all(store)
        store.close()


# ---------------------------------------------------------------------- no trainer needed
def test_reused_pid_is_treated_as_dead(store, tmp_path):
    """A recorded pid that is alive but started at another time is someone else's process."""
    me = psutil.Process()
    launcher = make_launcher(store, tmp_path / "runs", heartbeat_s=0.05)
    reused = store.create_run("reused", "copd", {})
    genuine = store.create_run("genuine", "copd", {})
    host = socket.gethostname()
    store.mark_running(reused.id, me.pid, me.create_time() - 3600, host)
    store.mark_running(genuine.id, me.pid, me.create_time(), host)
    time.sleep(0.2)  # both heartbeats are now older than 2 intervals
    report = launcher.tick()
    assert report.crashed == [reused.id]
    assert store.get_run(reused.id).status == "crashed"
    assert store.get_run(genuine.id).status == "running"
    assert procs.is_alive(me.pid, me.create_time())
    assert not procs.is_alive(me.pid, me.create_time() - 3600)


def test_submit_validates_before_recording(store, tmp_path):
    launcher = make_launcher(store, tmp_path / "runs")
    bad = RunConfig().to_dict()
    bad["grpo"]["group_size"] = 1
    with pytest.raises(ConfigError, match="grpo.group_size"):
        launcher.submit(bad)
    with pytest.raises(ConfigError, match="gpus"):
        launcher.submit(RunConfig(), gpus=1)
    assert store.list_runs() == []
    with pytest.raises(ConfigError, match="cannot name a run folder"):
        launcher.submit(RunConfig(), name="../../escape")
    assert store.list_runs() == []
    run = launcher.submit(RunConfig(), name="β sweep (1)", group="g", seed=3)
    assert (run.status, run.group, run.seed, run.cpu_slots) == ("queued", "g", 3, 1)
    assert Path(run.run_dir).name == f"{run.id}-sweep-1"
    assert json.loads((Path(run.run_dir) / "config.json").read_text())["seed"] == 3


def test_queued_cancel_resume_and_delete(store, tmp_path):
    launcher = make_launcher(store, tmp_path / "runs")
    run = launcher.submit(RunConfig())
    assert launcher.cancel(run.id).status == "cancelled"
    with pytest.raises(LauncherError, match="only cancelled, crashed or failed"):
        launcher.resume(launcher.resume(run.id).id)
    assert (Path(run.run_dir) / ".resume").exists()  # removed when the trainer is started
    launcher.request_cancel(run.id)
    launcher.delete(run.id)
    assert not Path(run.run_dir).exists() and store.list_runs() == []


def test_gpu_runs_get_free_gpus_fifo(store, tmp_path):
    """GPU bookkeeping with a stand-in trainer: assigned ids, CUDA_VISIBLE_DEVICES, blocking."""
    gpus = [GPU(i, "fake", 1000, 1000, 0.0) for i in range(2)]
    fake = [sys.executable, str(Path(__file__).parent / "fake_trainer.py")]
    launcher = make_launcher(store, tmp_path / "runs", gpus=gpus, trainer_argv=fake)
    cfg = RunConfig().to_dict()
    cfg["schedule"]["cycles"] = 1000
    one = launcher.submit(cfg, gpus=1)
    two = launcher.submit(cfg, gpus=2)
    cpu = launcher.submit(cfg, gpus=0)
    try:
        report = launcher.tick()
        assert report.started == [one.id, cpu.id]  # `two` waits for both GPUs
        assert store.get_run(one.id).assigned_gpus == "0"
        env = psutil.Process(store.get_run(one.id).pid).environ()
        assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["HF_HUB_OFFLINE"] == "1"
        cpu_env = psutil.Process(store.get_run(cpu.id).pid).environ()
        assert cpu_env["CUDA_VISIBLE_DEVICES"] == "" and cpu_env["COPD_THREADS"] == str(
            procs.cpu_count()
        )
        assert launcher.cancel(one.id, grace_s=10).status == "cancelled"
        launcher.tick()  # cancel() ticks too: the freed GPU lets `two` start
        assert store.get_run(two.id).status == "running"
        assert store.get_run(two.id).assigned_gpus == "0,1"
    finally:
        kill_all(store)


def test_own_child_exit_is_crashed_at_once_with_exit_code(store, tmp_path):
    fake = [sys.executable, str(Path(__file__).parent / "fake_trainer.py")]
    launcher = make_launcher(store, tmp_path / "runs", trainer_argv=fake, heartbeat_s=60)
    cfg = RunConfig().to_dict()
    cfg["schedule"]["cycles"] = 1000
    run = launcher.submit(cfg)
    try:
        started = lambda r: "step 1" in launcher.log_tail(r.id)  # noqa: E731
        wait_until(launcher, run.id, started, 60, "training")
        os.kill(store.get_run(run.id).pid, signal.SIGKILL)
        wait_until(launcher, run.id, lambda r: r.status == "crashed", 5, "crashed")
        assert "exited with code -9" in store.get_run(run.id).error
    finally:
        kill_all(store)


def test_overlap_summary(store):
    run = store.create_run("r", "copd", {})
    pts = [
        MetricPoint("pair/a~b/overlap_top10", 0.2, step=1),
        MetricPoint("pair/a~b/overlap_top10", 0.6, step=2),
        MetricPoint("pair/b~a/overlap_top10", 0.8, step=2),
        MetricPoint("base/a/overlap_top10", 0.0, step=2),
    ]
    store.log_metrics(run.id, pts)
    assert latest_overlap(store, run.id) == pytest.approx(0.7)
    assert run_summary(store, store.get_run(run.id))["status"] == "queued"


def test_detect_gpus_never_crashes():
    gpus = detect_gpus()
    assert all(isinstance(g, GPU) for g in gpus)
    if shutil.which("nvidia-smi") is None:
        try:
            import pynvml  # noqa: F401
        except ImportError:
            assert gpus == []
    text = "0, NVIDIA H100 80GB HBM3, 81559, 80000, 3\n1, Tesla, Inc, 16000, 100, [N/A]\nbad\n"
    assert parse_nvidia_smi(text) == [
        GPU(0, "NVIDIA H100 80GB HBM3", 81559, 80000, 3.0),
        GPU(1, "Tesla, Inc", 16000, 100, None),
    ]


def test_supervisor_thread_starts_queued_runs_until_stopped(store, tmp_path):
    from app.control.supervisor import start_supervisor

    fake = [sys.executable, str(Path(__file__).parent / "fake_trainer.py")]
    cfg = RunConfig().to_dict()
    cfg["schedule"]["cycles"] = 2
    sup = start_supervisor(
        store,
        tmp_path / "runs",
        interval_s=0.1,
        max_cpu_runs=1,
        gpus=[],
        trainer_argv=fake,
        preflight=False,
    )
    try:
        a, b = sup.launcher.submit(cfg), sup.launcher.submit(cfg)
        deadline = time.monotonic() + HANG_S  # a hang guard: the fake trainers end
        while not store.get_run(b.id).is_terminal and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [store.get_run(r.id).status for r in (a, b)] == ["finished", "finished"]
    finally:
        sup.stop()
        kill_all(store)
    assert not sup.thread.is_alive()


def test_cpu_runs_are_counted_in_threads(tmp_path):
    """Two 1-thread runs share 2 cores; two default runs (cores / max_cpu_runs threads
    each) go one at a time; a run is told its thread count."""
    from app.control.launcher import Launcher
    from copd.spec import RunConfig
    from storage import RunStore

    store = RunStore.from_url(f"sqlite:///{tmp_path / 'c.db'}")
    la = Launcher(store, tmp_path / "runs", gpus=[], preflight=False)
    la.cores, la.max_cpu_runs, la.cpu_run_cap = 2, 1, 2  # the defaults of a 2-core machine
    one = RunConfig(threads=1).to_dict()
    runs = [store.create_run(f"r{i}", "copd", one) for i in range(3)]
    default = store.create_run("d", "copd", RunConfig().to_dict())
    assert [la.cpu_threads(r) for r in runs] == [1, 1, 1]
    assert la.cpu_threads(default) == 2
    started = []
    la._start = lambda run, gpus: started.append(run.id) or True
    la._start_queued(type("R", (), {"started": []})())
    assert started == [runs[0].id, runs[1].id]  # 1 + 1 threads fill 2 cores; the rest wait
    assert la._child_env([], la.cpu_threads(runs[0]))["OMP_NUM_THREADS"] == "1"
    # what the supervisor prints says this rule (it printed "max 1 CPU runs" while two ran)
    said = la.capacity()
    assert "share 2 threads" in said and "else 2" in said and "max 1" not in said, said


def test_a_standby_trainer_takes_the_next_cpu_run_and_a_mismatch_starts_afresh(
    store, tmp_path, tiny_cfg
):
    """The dashboard's launcher keeps a warm trainer (issue 38: the demo's first chart
    sooner after the click): the run's recorded process is the standby started before the
    run was queued, it trains to the end with its output in train.log, and a new standby is
    kept once the run is over. A run whose environment differs in a variable read at import
    ($HF_HOME) starts afresh and the standby is ended; stopping ends the last one."""
    launcher = make_launcher(store, tmp_path / "runs", standby=True)
    launcher.tick()
    warm = launcher._standby
    assert warm is not None and warm.poll() is None
    cfg = tiny_cfg("demo", *SHORT)
    run = launcher.submit(cfg, name="warm")
    try:
        wait_until(launcher, run.id, lambda r: r.is_terminal, START_TIMEOUT_S, "finished")
        done = store.get_run(run.id)
        assert (done.status, done.pid) == ("finished", warm.pid), done.error
        assert warm.wait(timeout=HANG_S) == 0
        log = launcher.log_tail(run.id, 400)
        assert "launch: " in log and "results: " in log
        assert (Path(done.run_dir) / "results.json").exists()
        launcher.tick()  # idle again: a new standby
        second = launcher._standby
        assert second is not None and second.pid != warm.pid and second.poll() is None

        launcher.base_env["HF_HOME"] = str(tmp_path / "another-hf-home")
        other = launcher.submit(cfg, name="afresh")
        wait_until(launcher, other.id, lambda r: r.is_terminal, START_TIMEOUT_S, "finished")
        assert store.get_run(other.id).status == "finished"
        assert store.get_run(other.id).pid != second.pid
        assert second.poll() is not None  # ended (killed: it held no run)
    finally:
        kill_all(store)
        launcher.stop_standby()
    assert launcher._standby is None


def test_a_dashboard_beside_a_supervisor_process_wakes_it_instead_of_starting_runs(store, tmp_path):
    """Under `copd dashboard` the pages' launcher defers (`defer_starts`): `start_now` starts
    nothing itself but wakes the supervisor, which holds the standby trainer and ticks at
    once, not at its next interval (an hour here: without the wake the run would wait)."""
    import threading

    from app.control.supervisor import supervise

    fake = [sys.executable, str(Path(__file__).parent / "fake_trainer.py")]
    cfg = RunConfig().to_dict()
    cfg["schedule"]["cycles"] = 1
    ticks = threading.Semaphore(0)
    owner = make_launcher(store, tmp_path / "runs", trainer_argv=fake)
    tick = owner.tick
    owner.tick = lambda: (tick(), ticks.release())[0]
    stop = threading.Event()
    thread = threading.Thread(target=supervise, args=(store, owner.runs_root, 3600.0, stop, owner))
    thread.start()
    try:
        assert ticks.acquire(timeout=HANG_S)  # its first tick is done: now it waits an hour
        page = make_launcher(store, tmp_path / "runs", trainer_argv=fake, defer_starts=True)
        run = page.submit(cfg)
        page.start_now()
        assert ticks.acquire(timeout=HANG_S), "the supervisor was not woken"
        assert store.get_run(run.id).status in ("running", "finished")
        assert not page._children and run.id in owner._children  # started by the supervisor
    finally:
        stop.set()
        thread.join(HANG_S)
        kill_all(store)
    assert not thread.is_alive()
