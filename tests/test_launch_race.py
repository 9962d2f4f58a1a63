"""A run is created with its folder: a supervisor ticking while `Launcher.submit` is held
between choosing the folder and returning never sees a queued run without one, so it can
neither start the trainer in a folder of its own choosing nor leave the run with two.
(Before, submit recorded the queued row first and its folder after: a tick in between
started the trainer in `<id>-<name>/`, submit then recorded `<id>-<name>-<hash>/`, and a
later resume found no checkpoint there and deleted the run's progress.)"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from waits import wait_until

from app.control import launcher as L
from app.control.launcher import Launcher
from copd.spec import presets
from storage import RunStore

FAKE = [sys.executable, str(Path(__file__).parent / "fake_trainer.py")]


def test_a_tick_during_submit_never_picks_a_folder(tmp_path, monkeypatch):
    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    root = tmp_path / "runs"
    kw = dict(max_cpu_runs=2, gpus=[], heartbeat_s=1, trainer_argv=FAKE, preflight=False)
    submitter, supervisor = Launcher(store, root, **kw), Launcher(store, root, **kw)
    ticked, started = threading.Event(), []
    real = L.new_run_dir

    def held(root_, run_id, name):  # submit, held once it has its run id
        out = real(root_, run_id, name)
        t = threading.Thread(
            target=lambda: (started.extend(supervisor.tick().started), ticked.set())
        )
        t.start()
        ticked.wait(20)
        return out

    monkeypatch.setattr(L, "new_run_dir", held)
    cfg = presets.get("demo").to_dict() | {"name": "race"}
    cfg["schedule"] = {**cfg["schedule"], "cycles": 2}
    run = submitter.submit(cfg)
    assert ticked.is_set()
    assert started == []  # the tick saw no queued run without its folder
    monkeypatch.setattr(L, "new_run_dir", real)

    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == [Path(run.run_dir).name] == [f"{run.id}-race"]

    # and the supervisor starts the trainer in exactly that folder
    def started():
        supervisor.tick()
        return store.get_run(run.id).status != "queued"

    wait_until(started, "started by the supervisor", poll=0.2)
    assert store.get_run(run.id).run_dir == run.run_dir
    assert (Path(run.run_dir) / "train.log").exists()
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == folders
    store.close()


def test_a_failed_folder_records_no_run(tmp_path, monkeypatch):
    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    launcher = Launcher(store, tmp_path / "runs", max_cpu_runs=1, gpus=[], preflight=False)

    def boom(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(L, "new_run_dir", boom)
    with pytest.raises(OSError):
        launcher.submit(presets.get("demo").to_dict() | {"name": "full"})
    assert store.list_runs() == []
    store.close()


def test_an_older_queued_row_without_a_folder_gets_one_folder_once(tmp_path):
    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    run = store.create_run("old", "copd", {})
    first = store.set_run_dir_if_unset(run.id, str(tmp_path / "a"))
    second = store.set_run_dir_if_unset(run.id, str(tmp_path / "b"))
    assert first == second == str(tmp_path / "a")
    store.close()
