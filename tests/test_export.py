"""`copd export` (a Hub-ready folder: the merged model, a model card, results.json; a push
only when asked) and `copd export-metrics` (a stored run back-filled into a tracker), on a
short demo run of the tiny model recorded in a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from copd.cli import main
from copd.runner import train_run


@pytest.fixture(scope="module")
def finished(tiny_model_dir, tmp_path_factory):
    """(store URL, run id, run folder) of a finished demo run."""
    from tiny_support import tiny_overrides

    from copd.spec import apply_overrides, presets
    from storage import RunStore

    root = tmp_path_factory.mktemp("export")
    url = f"sqlite:///{root / 'runs.db'}"
    cfg = apply_overrides(
        presets.get("demo"), [*tiny_overrides(tiny_model_dir), "diagnostics.samples_every=1"]
    ).validate()
    store = RunStore.from_url(url)
    out = root / "run"
    run = store.create_run(
        cfg.name, cfg.method, cfg.to_dict(), code_revision="abc1234", run_dir=str(out)
    )
    assert train_run(cfg, out, store=store, run_id=run.id) is not None
    return url, run.id, out


def greedy(model_dir: Path, prompts: list[str]) -> list[list[int]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    outs = []
    with torch.inference_mode():
        for p in prompts:
            ids = tok(p, return_tensors="pt").input_ids
            gen = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
            outs.append(gen[0].tolist())
    return outs


def test_export_writes_a_folder_from_pretrained_loads_with_a_valid_model_card(
    finished, tmp_path, capsys
):
    from huggingface_hub import ModelCard

    url, run_id, run_dir = finished
    out = tmp_path / "export"
    assert main(["export", str(run_id), "--out", str(out), "--db", url]) == 0
    assert f"-> {out}" in capsys.readouterr().out
    prompts = ["12+34=", "abc|", "7+8="]
    assert greedy(out, prompts) == greedy(run_dir / "merged", prompts)

    card = ModelCard.load(out / "README.md")
    data = card.data
    assert {"copd", "grpo", "on-policy-distillation"} <= set(data.tags)
    assert data.library_name == "transformers" and data.model_name == "copd-demo"
    assert data.base_model is None  # a local folder is no Hub name
    assert data.to_dict()["code_revision"] == "abc1234"
    merged = json.loads((run_dir / "results.json").read_text())["scores"]["merged"]
    got = {
        (r.dataset_name + ("@val" if r.dataset_split == "validation" else "")): r.metric_value
        for r in data.eval_results
    }
    assert got == pytest.approx(merged)
    assert "## Evaluation" in card.text and '"method": "copd"' in card.text
    results = json.loads((out / "results.json").read_text())
    assert results["scores"]["merged"] == merged and results["code_revision"] == "abc1234"


def test_export_pushes_only_when_asked(finished, tmp_path, monkeypatch):
    import huggingface_hub

    calls: list[tuple] = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(
                ("upload_folder", sorted(p.name for p in Path(kw["folder_path"]).iterdir()))
            )
            return type("Info", (), {"commit_url": "https://hub.example/commit/1"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    _, _, run_dir = finished
    assert main(["export", str(run_dir), "--out", str(tmp_path / "a")]) == 0
    assert calls == []  # no --push: nothing leaves the machine
    assert main(["export", str(run_dir), "--out", str(tmp_path / "b"), "--push", "me/demo"]) == 0
    (kind, repo, kw), (kind2, files) = calls
    assert (kind, repo, kw["private"], kind2) == ("create_repo", "me/demo", True, "upload_folder")
    assert {"README.md", "results.json", "config.json", "model.safetensors"} <= set(files)


def test_export_refuses_with_the_fix_before_writing(finished, tmp_path, capsys):
    _, _, run_dir = finished
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    assert main(["export", str(run_dir), "--out", str(busy)]) == 2
    assert "is not empty: pass a new folder" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--out", str(tmp_path / "n"), "--push", "nope"]) == 2
    assert "OWNER/NAME" in capsys.readouterr().err and not (tmp_path / "n").exists()
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text((run_dir / "config.json").read_text())
    assert main(["export", str(half), "--out", str(tmp_path / "h")]) == 2
    assert "has not finished" in capsys.readouterr().err


def test_export_metrics_backfills_a_stored_run_into_tensorboard(finished, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from storage import RunStore

    url, run_id, _ = finished
    assert (
        main(
            [
                "export-metrics",
                str(run_id),
                "--to",
                "tensorboard",
                "--out",
                str(tmp_path),
                "--db",
                url,
            ]
        )
        == 0
    )
    ea = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    ea.Reload()
    store = RunStore.from_url(url)
    key = "branch/rev/reward/mean"
    df = store.metric_series([run_id], key, max_points=10**9)
    assert {e.step: e.value for e in ea.Scalars(key)} == pytest.approx(
        dict(zip(df["step"], df["value"], strict=True))
    )
    evs = store.evaluations(run_id)
    last = evs[(evs.model == "merged") & (evs.benchmark == "overall")].iloc[-1]
    assert {e.step: e.value for e in ea.Scalars("eval/merged/overall")}[int(last.step)] == (
        pytest.approx(last.score)
    )
    assert "samples/text_summary" in ea.Tags()["tensors"]


def test_export_metrics_names_the_extra_when_the_tracker_is_missing(
    finished, tmp_path, monkeypatch, capsys
):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)
    url, run_id, _ = finished
    assert (
        main(["export-metrics", str(run_id), "--to", "wandb", "--out", str(tmp_path), "--db", url])
        == 2
    )
    assert "pip install 'copd[wandb]'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    """A finished LoRA demo run (two branches, averaged in weight-delta space)."""
    from tiny_support import tiny_overrides

    from copd.spec import apply_overrides, presets

    cfg = apply_overrides(
        presets.get("demo"),
        [
            *tiny_overrides(tiny_model_dir),
            "model.branch_kind=lora",
            "model.lora.r=4",
            "grpo.lr=1e-2",
        ],
    ).validate()
    out = tmp_path_factory.mktemp("lora") / "run"
    assert train_run(cfg, out) is not None
    return out


def test_a_lora_run_exports_one_peft_adapter_that_is_the_merged_model(
    lora_run, tiny_model_dir, tmp_path
):
    import torch
    from huggingface_hub import ModelCard
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = tmp_path / "adapter"
    assert main(["export", str(lora_run), "--out", str(out)]) == 0
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8  # 2 branches x 4
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, out).merge_and_unload()
    want = load_file(str(lora_run / "merged" / "model.safetensors"))
    got = model.state_dict()
    base_sd = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    for k, v in want.items():
        torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-6)
    moved = [k for k, v in want.items() if not torch.equal(base_sd[k], v)]
    assert moved, "the merge changed no weight: the comparison would prove nothing"
    prompts = ["12+34=", "abc|"]
    model.save_pretrained(tmp_path / "unloaded")
    for f in out.glob("tokenizer*"):
        (tmp_path / "unloaded" / f.name).write_bytes(f.read_bytes())
    assert greedy(tmp_path / "unloaded", prompts) == greedy(lora_run / "merged", prompts)
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "peft" and "lora" in card.data.tags
    assert "PeftModel.from_pretrained" in card.text

    full = tmp_path / "full"
    assert main(["export", str(lora_run), "--out", str(full), "--full"]) == 0
    assert greedy(full, prompts) == greedy(lora_run / "merged", prompts)


def test_the_model_card_says_what_a_reader_needs(tmp_path):
    """Issue 40, item 3: base model (a local folder saved from a Hub model names it; the
    path beside it), the license carried from the base's card (else "unknown"), what CoPD
    is with the paper's link, each branch's domain and data size, merge, schedule and main
    settings, results as model-index, how to load it; parsed back by ModelCard."""
    from huggingface_hub import ModelCard

    from copd.spec import presets
    from copd.tools.export import model_card

    base = tmp_path / "qwen-local"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"_name_or_path": "Qwen/Qwen2-0.5B"}))
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n\n# a base\n")
    rows = [{"question": f"{i}+{i}=", "answer": str(2 * i)} for i in range(40)]
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = presets.get("demo").to_dict()
    config["model"]["path"] = str(base)
    config["branches"][1]["task"] = "dataset"
    config["task_options"] = {"dataset": {"path": str(data), "prompt_field": "question",
                                          "answer_field": "answer", "verifier": "numeric",
                                          "eval_fraction": 0.25}}  # fmt: skip
    scores = {"add": 0.5, "dataset": 0.25, "overall": 0.375, "add@val": 0.4}
    path = tmp_path / "README.md"
    model_card(config, scores, "abc1234").save(path)
    card = ModelCard.load(path)
    meta = card.data.to_dict()
    assert card.data.base_model == "Qwen/Qwen2-0.5B" and meta["base_model_path"] == str(base)
    assert card.data.license == "apache-2.0"
    assert card.data.datasets == ["add", "dataset"]
    assert {r.dataset_name for r in card.data.eval_results} == {"add", "dataset", "overall"}
    text = card.text
    assert "https://arxiv.org/abs/2604.27083" in text and "## Training" in text
    assert "task `add`, built-in domain, generated" in text
    assert "task `dataset`, dataset: " in text and "training /" in text
    assert "Merge: `average`" in text and "OPD beta" in text and "GRPO lr" in text
    assert "from_pretrained(PATH_OR_REPO)" in text
    # a base with no card: the license is stated as unknown, never guessed
    (base / "README.md").unlink()
    model_card(config, scores, None).save(path)
    assert ModelCard.load(path).data.license == "unknown"
