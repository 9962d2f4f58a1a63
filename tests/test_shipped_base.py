"""The demo's base model ships with the package, so every machine starts from the same
weights: it loads, scores what its metadata says, and is what `model.path=demo` resolves
to (a rebuild stays possible)."""

import json

import pytest

from copd.builders import demo_base, tiny
from copd.builders.demo_base import resolve_model_path
from copd.spec import ModelConfig


def test_shipped_base_loads_and_scores_what_its_metadata_says():
    shipped = demo_base.shipped_demo_base()
    assert shipped is not None, "copd/builders/assets/demo-base/ is missing from the package"
    meta = json.loads((shipped / "scores.json").read_text())
    model, tok = tiny.load(shipped)
    scores = demo_base.greedy_scores(model, tok, n=meta["n"])
    for split, per_task in meta["scores"].items():
        for task, expected in per_task.items():
            # greedy decoding of fixed weights; a near-tie may flip on another CPU
            assert scores[split][task] == pytest.approx(expected, abs=2 / meta["n"]), (split, task)
    # the base is neither trivial nor solved on the demo's domains: RL has a signal
    assert all(0.1 < v < 0.95 for v in meta["scores"]["test"].values() if v is not None)


def test_demo_path_resolves_to_the_shipped_model_unless_asked_to_rebuild(monkeypatch):
    shipped = demo_base.shipped_demo_base()
    assert resolve_model_path(ModelConfig()) == str(shipped)
    built = []
    monkeypatch.setattr(tiny, "cached_base_model", lambda *a, **k: built.append(a) or "built")
    assert demo_base.demo_base_model(rebuild=True) == "built"
    assert demo_base.demo_base_model(warmup_steps=499) == "built"  # other settings: built locally
    monkeypatch.setenv("COPD_DEMO_REBUILD", "1")
    assert demo_base.demo_base_model() == "built"
    assert len(built) == 3


def test_copd_base_command_reports_the_shipped_model(capsys):
    from copd.cli import main

    assert main(["base"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["path"].endswith("demo-base") and set(out["scores"]) == {"test", "validation"}
