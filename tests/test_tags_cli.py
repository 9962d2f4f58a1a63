"""Tags, notes and search through the real CLI: `copd train|launch --tag --notes`,
`copd tag RUN +x -y`, `copd note RUN TEXT`, `copd runs --where QUERY` (copd.cli.main in this
process, and `python -m copd train` as a subprocess on the tiny test model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_support import tiny_overrides

from copd.cli import main
from storage import RunStore

QUICK = ["schedule.cycles=1", "schedule.eval_every_cycles=0", "eval.at_start=false",
         "eval.n_prompts=2", "diagnostics.vs_base=false", "diagnostics.n_prompts=1"]  # fmt: skip


@pytest.fixture
def seeded(tmp_path) -> tuple[str, RunStore]:
    """A store with three finished runs (so the tick `copd runs` does starts nothing): beta
    0.5, 1 and 2, the last two tagged ablation."""
    db = f"sqlite:///{tmp_path / 'copd.db'}"
    store = RunStore.from_url(db)
    for beta in (0.5, 1.0, 2.0):
        tags = ["ablation"] if beta >= 1 else []
        run = store.create_run(f"b{beta}", "copd", {"opd": {"beta": beta}}, tags=tags)
        store.set_status(run.id, "running")
        store.set_status(run.id, "finished")
    yield db, store
    store.close()


def _runs_json(db: str, capsys, *extra: str) -> list[dict]:
    assert main(["runs", "--json", "--db", db, *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_tag_adds_removes_and_shows(seeded, capsys):
    db, store = seeded
    assert main(["tag", "3", "+baseline", "-ablation", "keep", "--db", db]) == 0
    assert capsys.readouterr().out.strip() == "run 3: baseline keep"
    assert store.get_run(3).tags == ("baseline", "keep")
    assert main(["tag", "--db", db, "2"]) == 0  # no change: shows them
    assert capsys.readouterr().out.strip() == "run 2: ablation"
    assert main(["tag", "2", "--", "-ablation", f"--db={db}"]) == 0
    assert store.get_run(2).tags == ()


def test_tag_refuses_a_bad_tag_in_one_line(seeded, capsys):
    db, store = seeded
    assert main(["tag", "3", "+two words", "--db", db]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: tag 'two words': a space is not allowed; use letters")
    assert "\n" not in err and "Traceback" not in err
    assert store.get_run(3).tags == ("ablation",)
    assert main(["tag", "42", "+x", "--db", db]) == 2
    assert "run 42 does not exist" in capsys.readouterr().err


def test_note_sets_appends_shows_and_clears(seeded, capsys):
    db, store = seeded
    assert main(["note", "1", "lr too high", "--db", db]) == 0
    assert main(["note", "1", "--append", "diverged at step 30", "--db", db]) == 0
    capsys.readouterr()
    assert main(["note", "1", "--db", db]) == 0
    assert capsys.readouterr().out == "lr too high\ndiverged at step 30\n"
    assert main(["note", "1", "", "--db", db]) == 0
    assert store.get_run(1).notes == ""
    assert main(["note", "1", "bell\x07", "--db", db]) == 2
    assert "control character" in capsys.readouterr().err


def test_runs_where_filters_and_a_bad_query_is_one_line(seeded, capsys):
    db, _ = seeded
    rows = _runs_json(db, capsys, "--where", 'opd.beta >= 1 and "ablation" in tags')
    assert [(r["id"], r["tags"]) for r in rows] == [(3, ["ablation"]), (2, ["ablation"])]
    assert [r["id"] for r in _runs_json(db, capsys, "--where", "opd.beta < 1")] == [1]
    assert main(["runs", "--db", db, "--where", "opd.bta >= 1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: query: unknown field 'opd.bta' at column 1; did you mean 'opd.beta'?"
    )  # fmt: skip
    assert main(["runs", "--db", db, "--where", "opd.beta >= "]) == 2
    assert "column 12" in capsys.readouterr().err
    assert main(["runs", "--db", db]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[-1] == "tags" and table[1].split()[-1] == "ablation"


def test_train_tags_need_a_store(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "demo", "--tag", "x"]) == 2
    assert "add --db URL" in capsys.readouterr().err
    assert main(["train", "demo", "--tag", "a/b c", "--db", "sqlite:///x.db"]) == 2
    assert "a space is not allowed" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x.db").exists()


def _env() -> dict[str, str]:
    root = Path(__file__).resolve().parent.parent
    return {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def test_train_with_db_records_tags_and_notes(tmp_path, tiny_model_dir):
    db = f"sqlite:///{tmp_path / 'copd.db'}"
    sets = [x for o in tiny_overrides(tiny_model_dir) + QUICK for x in ("--set", o)]
    cmd = [sys.executable, "-m", "copd", "train", "demo", "--db", db, *sets,
           "--tag", "smoke", "--tag", "beta-1", "--notes", "first try"]  # fmt: skip
    res = subprocess.run(cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    # the results table once, on stdout (it was also in the "final results" event on stderr)
    header = next(line for line in res.stdout.splitlines() if "overall" in line)
    assert (res.stdout + res.stderr).count(header) == 1, res.stderr[-2000:]
    assert "final results: " in res.stderr and "results.json" in res.stderr
    store = RunStore.from_url(db)
    (run,) = store.list_runs()
    assert (run.status, run.tags, run.notes) == ("finished", ("beta-1", "smoke"), "first try")
    assert store.list_runs(where='"smoke" in tags and status == "finished"') == [run]
    store.close()


def test_launch_records_tags_and_notes_before_checking(tmp_path, tiny_model_dir, capsys):
    db = f"sqlite:///{tmp_path / 'copd.db'}"
    common = ["--db", db, "--runs-root", str(tmp_path / "runs")]
    assert main(["launch", "demo", "--no-wait", "--tag=-bad", *common]) == 2
    assert "start it with a letter or a digit" in capsys.readouterr().err
    store = RunStore.from_url(db)
    assert store.list_runs() == []  # refused before anything was checked or recorded
    sets = [x for o in tiny_overrides(tiny_model_dir) + QUICK for x in ("--set", o)]
    args = ["launch", "demo", "--no-wait", *sets, "--tag", "ablation", "--notes", "n", *common]
    assert main(args) == 0
    run_id = int(capsys.readouterr().out.strip())
    run = store.get_run(run_id)
    assert (run.tags, run.notes) == (("ablation",), "n")
    assert [r["id"] for r in _runs_json(db, capsys, "--where", '"ablation" in tags')] == [run_id]
    assert main(["cancel", str(run_id), "--grace", "60", *common]) == 0
    store.close()


def test_sweep_tags_every_run_of_the_set(tmp_path, tiny_model_dir, capsys):
    db = f"sqlite:///{tmp_path / 'copd.db'}"
    sets = [x for o in tiny_overrides(tiny_model_dir) + QUICK for x in ("--set", o)]
    args = ["sweep", "demo", "--seeds", "0,1", "--group", "g", "--no-start", *sets,
            "--tag", "ablation", "--notes", "two seeds", "--db", db,
            "--runs-root", str(tmp_path / "runs")]  # fmt: skip
    assert main(args) == 0
    runs = RunStore.from_url(db).list_runs(group="g")
    assert [(r.tags, r.notes) for r in runs] == [(("ablation",), "two seeds")] * 2
    assert main(["sweep", "demo", "--group", "h", "--tag", "a b", "--db", db]) == 2
    assert "a space is not allowed" in capsys.readouterr().err
    assert RunStore.from_url(db).list_runs(group="h") == []


def test_a_tag_named_twice_takes_its_last_sign():
    """`copd tag 3 +x -x` left x (additions were applied after removals)."""
    from app.control.labels_cli import parse_tag_changes

    assert parse_tag_changes(["+x", "-x"]) == ([], ["x"], None)
    assert parse_tag_changes(["-x", "+x", "y"]) == (["x", "y"], [], None)


def test_the_store_refuses_control_characters_in_names_from_any_caller(tmp_path):
    """A name with an escape sequence created through the storage API (not the CLI) was
    printed raw by `copd runs`; the store itself now refuses it."""
    from copd.common.tags import TagError
    from storage import RunStore

    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    for kwargs in ({"name": "\x1b[31mred"}, {"name": "ok", "group": "g\n2"}):
        with pytest.raises(TagError, match="control character"):
            store.create_run(method="copd", config={}, **{"name": "ok", **kwargs})
    assert store.list_runs() == []
    store.close()
