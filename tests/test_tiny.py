"""The tiny demo model: char tokenizer, builder, warm-up, sampling and the on-disk cache."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from copd.builders import demo_base, tiny
from copd.tasks import builtin_alphabet, get_task


@pytest.fixture(scope="module")
def tok():
    return tiny.build_char_tokenizer()


def test_vocab_is_specials_then_sorted_characters(tok):
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    names = [name for name, _ in vocab]
    assert names[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert names[4:] == sorted(set(builtin_alphabet() + " "))
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.padding_side == "left"


def test_tokenizer_round_trips_and_survives_save_reload(tok, tmp_path):
    texts = ["7+12=", "abcd>dcba", "aabab#a:3", "j i  h", "17%5="]
    tok.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for t in (tok, reloaded):
        assert t.padding_side == "left"
        assert (t.pad_token_id, t.bos_token_id, t.eos_token_id) == (0, 1, 2)
        for text in texts:
            ids = t(text)["input_ids"]
            assert ids[0] == t.bos_token_id and len(ids) == len(text) + 1  # one id per char
            assert t(text, add_special_tokens=False)["input_ids"] == ids[1:]
            assert t.decode(ids, skip_special_tokens=True) == text
        assert t("a?")["input_ids"][-1] == t.unk_token_id
    batch = reloaded(["1+1=", "abcd>"], padding=True)["input_ids"]
    assert batch[0][0] == tok.pad_token_id and batch[0][1] == tok.bos_token_id  # left padded


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_built_model_loads_and_gives_logits_over_the_vocab(tmp_path, arch):
    path = tiny.build_tiny_model(tmp_path / arch, hidden=32, layers=1, heads=2, arch=arch)
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.tie_word_embeddings
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    enc = tok(["3+4=", "ab>"], return_tensors="pt", padding=True)
    logits = model(**enc).logits
    assert logits.shape == (2, enc["input_ids"].shape[1], len(tok))
    assert torch.isfinite(logits).all()


def test_build_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match="divisible by heads"):
        tiny.build_tiny_model(tmp_path, hidden=30, heads=4)
    with pytest.raises(ValueError, match="arch='gpt9'"):
        tiny.build_tiny_model(tmp_path, hidden=32, heads=2, arch="gpt9")


def test_sft_batch_puts_loss_on_answer_and_eos_only(tok):
    ex = get_task("add").sample(random.Random(0), 2)
    ids, mask, labels = tiny._sft_batch(tok, ex)
    for i, e in enumerate(ex):
        n = 1 + len(e.prompt) + len(e.answer) + 1
        assert mask[i].sum() == n and (mask[i, :n] == 1).all()  # right padded
        kept = labels[i][labels[i] != -100].tolist()
        assert kept == tok(e.answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_warmup_is_seeded_and_changes_every_parameter():
    tasks = [get_task("add", difficulty=1), get_task("rev", difficulty=1)]

    def run():
        model, tok = tiny._new_model(32, 1, 2, None, 64, seed=0, arch="qwen2")
        before = {k: v.clone() for k, v in model.state_dict().items()}
        stats = tiny.warmup(model, tok, tasks, steps=3, lr=1e-3, batch_size=8, seed=0)
        return before, model.state_dict(), stats

    before, after, stats = run()
    _, again, stats2 = run()
    assert all(not torch.equal(before[k], after[k]) for k in after if "rotary" not in k)
    assert all(torch.equal(after[k], again[k]) for k in after)
    assert stats["loss"] == stats2["loss"] and stats["loss"] > 0


def test_sampled_completions_are_cut_at_eos(tiny_model_dir):
    model, tok = tiny.load(tiny_model_dir)
    prompts = ["1+2=", "ab>", "ba<", "ab#a:"]
    texts = tiny.sample_completions(model, tok, prompts, max_new_tokens=6, seed=3)
    assert len(texts) == 4 and all("<eos>" not in t for t in texts)
    assert texts == tiny.sample_completions(model, tok, prompts, max_new_tokens=6, seed=3)


def test_tiny_test_model_records_its_warmup(tiny_model_dir):
    info = json.loads((tiny.Path(tiny_model_dir) / "warmup.json").read_text())
    assert info["build_version"] == tiny.BUILD_VERSION
    assert set(info["base_reward"]) == set(tiny.DEMO_TASKS)
    assert all(0.0 <= r <= 1.0 for r in info["base_reward"].values())


def test_base_model_is_built_once_and_cached(tmp_path):
    logs: list[str] = []
    kwargs = dict(
        tasks=("add", "rev"),
        hidden=16,
        layers=1,
        warmup_steps=2,
        batch_size=4,
        cache_dir=tmp_path,
        task_options={"add": {"difficulty": 1}, "rev": {"difficulty": 1}},
        log=logs.append,
    )
    first = demo_base.demo_base_model(**kwargs)
    assert first.parent == tmp_path and first.name.startswith("demo-")
    stamp = (first / "warmup.json").stat().st_mtime_ns
    builds = sum("building" in m for m in logs)
    assert builds == 1
    second = demo_base.demo_base_model(**kwargs)
    assert second == first
    assert (first / "warmup.json").stat().st_mtime_ns == stamp
    assert sum("building" in m for m in logs) == 1  # no second build
    info = json.loads((first / "warmup.json").read_text())
    assert info["warmup_steps"] == 2 and set(info["base_reward"]) == {"add", "rev"}
    # Nothing half-written is left behind, and a different argument is a different model.
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [first.name]
    other = demo_base.demo_base_model(**{**kwargs, "seed": 1})
    assert other != first and (other / "config.json").exists()
    AutoModelForCausalLM.from_pretrained(other)


def test_demo_cache_honours_copd_home(tmp_path, monkeypatch):
    monkeypatch.setenv("COPD_HOME", str(tmp_path))
    path = demo_base.demo_base_model(
        tasks=("count",), hidden=16, layers=1, warmup_steps=1, batch_size=2
    )
    assert path.parent == tmp_path / "models"
