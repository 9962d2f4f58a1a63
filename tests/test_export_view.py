"""The Runs page offers `copd export` for a finished run (Streamlit AppTest on a real SQLite
store; the run folder holds a real model folder as its merged model)."""

from __future__ import annotations

import json
import shutil

import pytest

from storage import RunStore
from tests.app_support import clear_caches, new_app, use_store


@pytest.fixture
def finished_run(tmp_path, tiny_model_dir, monkeypatch):
    from copd.spec import presets

    url = f"sqlite:///{tmp_path / 'copd.db'}"
    store = RunStore.from_url(url)
    run_dir = tmp_path / "runs" / "1-demo"
    cfg = presets.get("demo")
    run = store.create_run(
        "demo [x](http://a)", "copd", cfg.to_dict(), run_dir=str(run_dir), code_revision="r1"
    )
    shutil.copytree(tiny_model_dir, run_dir / "merged")
    cfg.to_json(run_dir / "config.json")
    scores = {"merged": {"add": 0.5, "rev": 0.25, "overall": 0.375}}
    (run_dir / "results.json").write_text(json.dumps({"scores": scores}))
    store.mark_running(run.id, pid=999_999, pid_start_time=0.0, host="h")
    store.set_status(run.id, "finished")
    use_store(monkeypatch, tmp_path, url)
    yield run_dir
    clear_caches()


def test_runs_page_exports_a_finished_run_and_says_where(finished_run, tmp_path):
    from huggingface_hub import ModelCard

    at = new_app().run()
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    out = tmp_path / "exported"
    at.text_input(key="export:out:1").set_value(str(out))
    at.button(key="export:go:1").click().run()
    assert not at.exception and not at.error
    assert "Exported to" in at.success[0].value
    assert (out / "model.safetensors").is_file()
    card = ModelCard.load(out / "README.md")
    assert card.data.to_dict()["code_revision"] == "r1"
    # a second export into the same folder: the one-line reason, nothing overwritten
    at.button(key="export:go:1").click().run()
    assert "is not empty" in at.error[0].value


def test_launch_page_queues_a_run_that_reports_to_the_trackers_typed(monkeypatch, tmp_path):
    from app.control.launcher import Launcher

    url = f"sqlite:///{tmp_path / 'launch.db'}"
    use_store(monkeypatch, tmp_path, url)
    monkeypatch.setattr(Launcher, "tick", lambda self: [])  # queue only: start no trainer
    at = new_app().run()
    at.switch_page("../pages/launch.py").run()
    field = at.text_input(key="cfg:demo:report_to")
    field.set_value("tensorbord").run()  # a typo: named inline, nothing recorded
    assert any("did you mean" in e.value.replace("\\", "") for e in at.error)
    at.text_input(key="cfg:demo:report_to").set_value("tensorboard, mlflow").run()
    at.button(key="launch:go").click().run()
    assert not at.exception
    (run,) = RunStore.from_url(url).list_runs()
    assert run.config["report_to"] == ["tensorboard", "mlflow"]
    clear_caches()


def test_runs_page_starts_the_harness_on_a_finished_run_or_says_how_to_install_it(
    finished_run, tmp_path, monkeypatch
):
    """Issue 40's button: `copd eval RUN --harness lm-eval` started from the Runs page as a
    background process (its argv checked here; the harness itself runs in CI's
    tests/test_harness.py), or, without the extra, the install line instead of a button."""
    import importlib.util
    import subprocess

    real_find = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "lm_eval" else real_find(n, *a)
    )
    at = new_app().run()
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    assert any("pip install -e '.[harness]'" in i.value for i in at.info)
    assert not [b for b in at.button if b.key == "harness:go:1"]

    started = []

    class FakePopen:
        def __init__(self, argv, **kw):
            started.append(argv)

    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: object() if n == "lm_eval" else real_find(n, *a)
    )
    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    at = new_app().run()
    at.switch_page("../pages/runs.py").run()
    at.text_input(key="harness:tasks:1").set_value("mytask").run()
    at.button(key="harness:go:1").click().run()
    assert not at.exception
    [argv] = started
    assert argv[1:] == ["-m", "copd", "eval", "1", "--harness", "lm-eval", "--tasks", "mytask",
                        "--db", f"sqlite:///{tmp_path / 'copd.db'}"]  # fmt: skip
    assert (finished_run / "harness.log").is_file()
    assert at.selectbox(key="harness:model:1").options == ["merged", "add", "rev"]
    at.selectbox(key="harness:model:1").set_value("rev").run()
    at.button(key="harness:go:1").click().run()
    assert started[-1][-2:] == ["--branch", "rev"]
