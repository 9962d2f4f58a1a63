"""What a user sees when the command line cannot go on: one line with the path and the fix.

A full disk, a read-only place, a missing permission (OSError of any kind); a `--set` field
that does not exist; `--max-cpu-runs 0`; run names and groups the store cannot hold.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from copd import cli
from copd.spec import ConfigError
from storage import RunStore

REPO = Path(__file__).resolve().parent.parent


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _failing_write(code: int):
    def write_text(self, *args, **kwargs):  # what the OS says: errno and words, no file name
        raise OSError(code, os.strerror(code))

    return write_text


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "no space left on the disk holding"),
        (errno.EROFS, "is on a read-only file system"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_os_errors_while_training_are_one_line_with_the_folder(
    code, words, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    monkeypatch.setattr(Path, "write_text", _failing_write(code))
    assert cli.main(["train", "demo", "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err)
    assert words in line and str(out) in line
    assert line != f"error: {code}"


def test_checkpoint_that_does_not_fit_keeps_its_message(tmp_path, monkeypatch, capsys):
    import copd.runner
    from copd.train import checkpoint

    full = checkpoint._write_failed(OSError(errno.ENOSPC, "No space left on device"), tmp_path)

    def train_run(*args, **kwargs):
        raise full

    monkeypatch.setattr(copd.runner, "train_run", train_run)
    assert cli.main(["train", "demo", "--out", str(tmp_path / "run")]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"error: no space left on {tmp_path}") and "then resume" in line


def test_run_folder_under_a_file_from_a_real_subprocess(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "run"
    res = subprocess.run(
        [sys.executable, "-m", "copd", "train", "demo", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COPD_THREADS": "1"},
    )
    assert res.returncode == 2
    line = one_line(res.stderr)
    assert str(blocker) in line and "Not a directory" in line


def test_unknown_set_field_lists_the_section_and_a_close_match(capsys):
    assert cli.main(["check", "demo", "--set", "grpo.lrr=0.1"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "unknown field 'lrr'; did you mean 'lr'?" in line
    assert "known fields of grpo are [" in line and "'group_size'" in line


@pytest.mark.parametrize("value", ["0", "-2"])
def test_max_cpu_runs_below_one_is_refused_before_anything_opens(value, tmp_path, capsys):
    db = tmp_path / "copd.db"
    argv = ["runs", "--db", f"sqlite:///{db}", "--max-cpu-runs", value]
    assert cli.main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert f"--max-cpu-runs {value}: give at least 1" in line
    assert not db.exists()


def test_launcher_refuses_zero_cpu_runs_instead_of_taking_the_default(tmp_path):
    from app.control.launcher import Launcher

    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    with pytest.raises(ConfigError, match="max_cpu_runs: 0 must be >= 1"):
        Launcher(store, tmp_path / "runs", max_cpu_runs=0, gpus=[])
    store.close()


LONG = "n" * 251


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--name", LONG, "name: 251 characters, the run store holds at most 250"),
        ("--group", "g" * 300, "group: 300 characters, the run store holds at most 250"),
        ("--group", "ablation\nB", "group: 'ablation\\nB' holds the control character '\\n'"),
        ("--name", "tab\there", "name: 'tab\\there' holds the control character '\\t'"),
    ],
)
def test_launch_refuses_names_and_groups_the_store_cannot_hold(
    flag, value, words, tmp_path, capsys
):
    url = f"sqlite:///{tmp_path / 'copd.db'}"
    runs = tmp_path / "runs"
    argv = ["launch", "demo", flag, value, "--db", url, "--runs-root", str(runs), "--no-wait"]
    assert cli.main(argv) == 2
    assert words in one_line(capsys.readouterr().err)
    store = RunStore.from_url(url)
    assert store.list_runs() == []  # nothing recorded
    store.close()
    assert not runs.exists() or not any(runs.iterdir())


def test_submit_takes_names_and_groups_of_exactly_250(tmp_path):
    from app.control.launcher import Launcher
    from copd.spec import presets

    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    launcher = Launcher(store, tmp_path / "runs", gpus=[], preflight=False)
    run = launcher.submit(presets.get("demo"), name="n" * 250, group="g" * 250)
    assert (len(run.name), len(run.group)) == (250, 250)
    with pytest.raises(ConfigError, match="group: 251 characters"):
        launcher.submit(presets.get("demo"), group="g" * 251)
    assert len(store.list_runs()) == 1
    store.close()


def test_train_refuses_a_long_group_from_the_config(capsys):
    assert cli.main(["check", "demo", "--set", "group=" + "g" * 251]) == 2
    assert "group: 251 characters" in one_line(capsys.readouterr().err)


def test_postgres_store_gets_the_same_refusal_not_a_driver_error(tmp_path, pg_server):
    """The limit is PostgreSQL's (SQLite would store the long name): refused at submit."""
    from app.control.launcher import Launcher
    from copd.spec import presets

    store = RunStore.from_url(pg_server.new_database())
    launcher = Launcher(store, tmp_path / "runs", gpus=[], preflight=False)
    for kwargs in ({"name": LONG}, {"group": "g" * 251}):
        with pytest.raises(ConfigError, match="251 characters, the run store holds at most"):
            launcher.submit(presets.get("demo"), **kwargs)
    assert store.list_runs() == []
    run = launcher.submit(presets.get("demo"), name="n" * 250, group="g" * 250)
    assert store.get_run(run.id).name == "n" * 250
    store.close()


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "copd", "train", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "COPD_THREADS": "1",
             "PYTHONPATH": str(REPO)},
    )  # fmt: skip


SHORT = ["--set", "schedule.cycles=1", "--set", "schedule.rl_steps=1",
         "--set", "schedule.opd_steps=1", "--set", "eval.n_prompts=2"]  # fmt: skip


def test_a_start_that_fails_before_step_1_is_one_line_and_frees_its_folder(tmp_path):
    """An untrusted `module:factory` task and a bad reasoning-gym option were tracebacks
    (22 lines), and the metrics.jsonl such a start left made the same --out "already hold
    a run". Now: one line each, and the folder takes the corrected run."""
    cases = {"os:getcwd": "pass --trust-task-code"}
    if importlib.util.find_spec("reasoning_gym") is not None:
        cases["rg:leg_counting?max_animals=2"] = "bad options ['max_animals']"
    for task, message in cases.items():
        branches = f'branches=[{{"name": "a", "task": "{task}"}}, {{"name": "b", "task": "add"}}]'
        res = _train(tmp_path, "demo", "--out", "run", "--set", branches)
        assert res.returncode == 2
        assert message in one_line(res.stderr)
    res = _train(tmp_path, "demo", "--out", "run", *SHORT)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "run" / "results.json").exists()
    res = _train(tmp_path, "demo", "--out", "run", *SHORT)  # a real run is still refused
    assert res.returncode == 2 and "already holds a run" in one_line(res.stderr)


def test_a_checkpoint_folder_save_never_writes_is_ignored(tmp_path):
    """`checkpoints/step-x` (a copy, a stray folder) made `--resume` raise ValueError from
    int('x'); the folders save() never writes are not checkpoints."""
    from copd.train import checkpoint

    root = tmp_path / "checkpoints"
    for name in ("step-x", "step-000010 (copy)", "step-"):
        (root / name).mkdir(parents=True)
        (root / name / checkpoint.STATE).write_text("{}")
    assert checkpoint.latest(tmp_path) is None


def test_an_engine_command_loads_no_entry_point_command():
    """`copd train` / `copd check` (what the launcher starts) parse without importing the
    launcher, sweeps or experiments (~0.6 s per start); other commands still find them."""
    import subprocess
    import sys

    code = (
        "import sys; from copd.cli import build_parser; "
        "build_parser(commands=False).parse_args(['check', 'demo']); "
        "print(sorted(m for m in sys.modules if m.startswith(('app', 'experiments', 'torch'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    from copd.cli import build_parser

    assert build_parser().parse_args(["runs", "--db", "sqlite:///x.db"]).cmd == "runs"
