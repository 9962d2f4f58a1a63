"""Benchmarks apart from the training domains (config `benchmarks`, issue 40 item 1): a run
on two training domains with three benchmarks in two capability groups, scored at every
evaluation, checked against an independent greedy decode with `transformers`' own
`generate` on the exported merged model, and laid out by capability on Compare."""

from __future__ import annotations

import json
import math

import pytest
import torch
from app_support import clear_caches, new_app, use_store

from copd.common.tables import benchmark_table
from copd.spec import ConfigError, apply_overrides, presets
from copd.tasks import get_task

BENCHES = [
    {"name": "sort-b", "task": "sort", "capability": "letters"},
    {"name": "count-b", "task": "count", "capability": "letters", "n_prompts": 6},
    {"name": "arith", "task": "dataset#arith", "capability": "arithmetic"},
]


def _arith_file(tmp_path) -> str:
    """A benchmark data file: add-format problems the training split never saw (the add
    task's test split), written as a user's JSONL."""
    exs = get_task("add").eval_examples(10)
    path = tmp_path / "arith.jsonl"
    path.write_text("".join(json.dumps({"q": e.prompt, "a": e.answer}) + "\n" for e in exs))
    return str(path)


def _config(tiny_model_dir, tmp_path, *extra):
    from tiny_support import tiny_overrides

    opts = {"path": _arith_file(tmp_path), "prompt_field": "q", "answer_field": "a"}
    return apply_overrides(
        presets.get("demo"),
        tiny_overrides(tiny_model_dir)
        + [
            f"benchmarks={json.dumps(BENCHES)}",
            f"task_options={json.dumps({'dataset#arith': opts})}",
        ]
        + list(extra),
    ).validate()


def _hf_greedy_score(model_dir, examples, max_new_tokens) -> float:
    """Exact-match accuracy of transformers' greedy `generate` on `examples`, one prompt at
    a time (no padding), cut at the end token: independent of copd's sampler."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    right = 0
    for ex in examples:
        enc = tok(ex.prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            )[0, enc["input_ids"].shape[1] :].tolist()  # fmt: skip
        if tok.eos_token_id in out:
            out = out[: out.index(tok.eos_token_id)]
        right += tok.decode(out, skip_special_tokens=True).strip() == ex.answer
    return right / len(examples)


def _distinct(examples):
    seen, out = set(), []
    for e in examples:
        if (e.prompt, e.answer) not in seen:
            seen.add((e.prompt, e.answer))
            out.append(e)
    return out


def test_benchmarks_are_scored_apart_from_the_domains_and_equal_an_independent_decode(
    tiny_model_dir, tmp_path, monkeypatch
):
    from copd.runner import train_run

    cfg = _config(tiny_model_dir, tmp_path, "group=bench-demo")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    out = tmp_path / "run"
    scores = train_run(cfg, out, db=url)
    merged = scores["merged"]
    # the domains' Overall is over the training domains only
    assert merged["overall"] == pytest.approx((merged["add"] + merged["rev"]) / 2)
    assert {"sort-b@bench", "count-b@bench", "arith@bench"} <= set(merged)
    assert {"sort-b@bench", "arith@bench"} <= set(scores["add"])  # every branch too
    # independent: the benchmark's examples rebuilt here, decoded by transformers
    n, T = cfg.eval.n_prompts, cfg.sampling.max_new_tokens
    arith = get_task("add").eval_examples(10)  # the file's rows (the whole file is the benchmark)
    expected = {
        "sort-b": _distinct(get_task("sort").eval_examples(n)),
        "count-b": _distinct(get_task("count").eval_examples(6)),
        "arith": _distinct(arith)[:n],
    }
    for name, exs in expected.items():
        want = _hf_greedy_score(out / "merged", exs, T)
        assert merged[f"{name}@bench"] == pytest.approx(want), name
    results = json.loads((out / "results.json").read_text())
    assert results["eval_n"]["arith@bench"] == len(expected["arith"])
    assert results["eval_n"]["count-b@bench"] == len(expected["count-b"])

    # the store holds them as evaluations at every evaluation step, and Compare lays
    # them out by capability
    from storage import RunStore

    store = RunStore.from_url(url)
    evals = store.evaluations([1])
    steps = sorted(evals[evals["benchmark"] == "arith@bench"]["step"].unique())
    assert len(steps) >= 2 and steps[0] == 0  # the base at step 0, then every evaluation
    use_store(monkeypatch, tmp_path, url)
    at = new_app()
    at.query_params["group"] = cfg.group
    at.run()
    at.switch_page("../pages/compare.py").run()
    assert not at.exception
    text = "\n".join(str(m.value) for m in at.markdown)
    head = r"letters · sort\-b | letters · count\-b | letters · avg | arithmetic · arith | "
    assert head + "arithmetic · avg | Overall | seeds" in text  # names escaped as user text
    avg = (merged["sort-b@bench"] + merged["count-b@bench"]) / 2
    row = next(line for line in text.splitlines() if "· merged" in line and "@" not in line
               and "arithmetic" not in line and line.count("|") > 6)  # fmt: skip
    assert f"{avg:.3f}" in row and f"{merged['arith@bench']:.3f}" in row
    from app.dashboard.bench_data import benchmark_results
    from app.dashboard.report import compare_report

    runs = store.list_runs(group=cfg.group)
    html = compare_report(runs, [], evals.iloc[:0], evals.iloc[:0], title="t",
                          benchmarks=benchmark_results(evals, runs))  # fmt: skip
    assert "<th>letters · avg</th>" in html and f"{merged['arith@bench']:.3f}" in html
    clear_caches()


def test_benchmark_table_groups_by_capability_and_averages_per_seed():
    per_seed = {
        "copd · merged": [
            {"a@bench": 0.2, "b@bench": 0.4, "c@bench": 0.9, "add": 0.5},
            {"a@bench": 0.4, "b@bench": 0.6, "c@bench": 0.7},
        ]
    }
    t = benchmark_table(per_seed, {"a": "math", "b": "math", "c": "video"})
    assert t.columns == [
        "math · a",
        "math · b",
        "math · avg",
        "video · c",
        "video · avg",
        "Overall",
    ]
    assert t.cell("copd · merged", "math · avg")[0] == pytest.approx((0.3 + 0.5) / 2)
    # Overall per seed = mean over every benchmark: (0.5, 0.5667) -> their mean
    assert t.cell("copd · merged", "Overall")[0] == pytest.approx((1.5 / 3 + 1.7 / 3) / 2)
    assert math.isnan(benchmark_table({"x": [{"add": 1.0}]}, {"a": "m"}).cell("x", "Overall")[0])


def test_a_bad_benchmark_is_refused_before_anything_runs():
    cfg = presets.get("demo")
    with pytest.raises(ConfigError, match=r"benchmarks\[a@b\].name"):
        apply_overrides(cfg, ['benchmarks=[{"name": "a@b", "task": "sort"}]']).validate()
    with pytest.raises(ConfigError, match="names must be unique"):
        two = '[{"name": "s", "task": "sort"}, {"name": "s", "task": "count"}]'
        apply_overrides(cfg, [f"benchmarks={two}"]).validate()


def test_a_branch_of_a_finished_run_exported_as_a_folder_scores_as_in_the_run(
    tiny_model_dir, tmp_path
):
    """Issue 40: any branch can be scored by a tool that loads a model folder (the harness):
    the exported branch's greedy accuracy equals the run's own final score of that branch."""
    from tiny_support import tiny_overrides

    from copd.policy.decoding import Decoding
    from copd.policy.models import PolicyView, load_policy
    from copd.policy.rollout import accuracy
    from copd.runner import train_run
    from copd.spec import ConfigError
    from copd.tools.branch_export import export_branch

    cfg = apply_overrides(presets.get("demo"), tiny_overrides(tiny_model_dir)).validate()
    out = tmp_path / "run"
    scores = train_run(cfg, out)
    folder = export_branch(out, "rev")
    assert folder == out / "branches" / "rev" and (folder / "config.json").is_file()
    model, tok = load_policy(str(folder))
    task = get_task("rev", **cfg.task_options.get("rev", {}))
    examples = _distinct(task.eval_examples(cfg.eval.n_prompts))
    with torch.inference_mode(), PolicyView(model).use() as m:
        greedy = Decoding(max_new_tokens=cfg.sampling.max_new_tokens, greedy=True)
        got = accuracy(
            m, tok, task, examples, greedy, generator=torch.Generator().manual_seed(cfg.seed)
        )
    assert got == pytest.approx(scores["rev"]["rev"])
    assert export_branch(out, "rev") == folder  # written once, reused
    with pytest.raises(ConfigError, match=r"policies are \['add', 'rev'\]"):
        export_branch(out, "sort")
