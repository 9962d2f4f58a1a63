"""`copd eval RUN --harness lm-eval` (issue 40): a benchmark defined as a harness task over
a local data file, scored through lm-evaluation-harness's Python API on a finished run's
merged model (the tiny model), stored as the run's evaluations and shown by Compare; equal
to copd's own evaluator on the same prompts with the same metric (greedy exact match)."""

from __future__ import annotations

import json

import pytest

from copd.cli import main
from copd.runner import train_run

# The extra `harness`: .ci/run installs it and runs this file; ./test.sh alone skips it (it
# stays out of dev: lm-eval brings scipy, which transformers imports at every trainer start).
pytest.importorskip("lm_eval")

TASK_YAML = """task: copd_add_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def finished(tiny_model_dir, tmp_path_factory):
    from tiny_support import tiny_overrides

    from copd.spec import apply_overrides, presets
    from storage import RunStore

    root = tmp_path_factory.mktemp("harness")
    url = f"sqlite:///{root / 'runs.db'}"
    cfg = apply_overrides(presets.get("demo"), tiny_overrides(tiny_model_dir)).validate()
    store = RunStore.from_url(url)
    out = root / "run"
    run = store.create_run(cfg.name, cfg.method, cfg.to_dict(), run_dir=str(out))
    assert train_run(cfg, out, store=store, run_id=run.id) is not None
    return url, run.id, out, root


def test_a_harness_task_on_a_local_file_is_stored_and_equals_copds_own_score(
    finished, capsys, monkeypatch
):
    import torch

    from app.dashboard.bench_data import benchmark_results
    from app.dashboard.queries import results_table
    from copd.policy.decoding import Decoding
    from copd.policy.models import PolicyView, load_policy
    from copd.policy.rollout import accuracy
    from copd.tasks import get_task
    from storage import RunStore

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    url, run_id, out, root = finished
    task = get_task("add")
    examples = task.eval_examples(32)
    data = root / "add.jsonl"
    data.write_text("".join(json.dumps({"prompt": e.prompt, "answer": e.answer}) + "\n"
                            for e in examples))  # fmt: skip
    tasks = root / "tasks"
    tasks.mkdir()
    (tasks / "copd_add_local.yaml").write_text(TASK_YAML.format(data=data))

    args = ["eval", str(run_id), "--harness", "lm-eval", "--tasks", "copd_add_local",
            "--include-path", str(tasks), "--db", url]  # fmt: skip
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    harness = printed["scores"]["copd_add_local:exact_match@bench"]

    # copd's own evaluator on the same prompts, greedy, exact match
    model, tok = load_policy(str(out / "merged"))
    with torch.inference_mode(), PolicyView(model).use() as m:
        own = accuracy(m, tok, task, examples, Decoding(max_new_tokens=8, greedy=True))
    assert harness == pytest.approx(own)

    store = RunStore.from_url(url)
    evals = store.evaluations([run_id])
    row = evals[evals["benchmark"] == "copd_add_local:exact_match@bench"]
    steps = json.loads((out / "results.json").read_text())["steps"]
    assert row[["model", "score", "n", "step"]].values.tolist() == [["merged", harness, 32, steps]]
    events = [e.message for e in store.events(run_id)]
    assert any(m.startswith("lm-eval ") and "copd_add_local" in m for m in events)
    runs = [store.get_run(run_id)]
    table = results_table(evals, runs)  # the domains' table and its Overall: not there
    assert not [c for c in table.columns if "copd_add_local" in c]
    bench = benchmark_results(evals, runs)  # Compare's benchmarks table: there
    assert "lm-eval · copd_add_local:exact_match" in bench.columns
    assert bench.cell("copd #1 · merged", "lm-eval · copd_add_local:exact_match")[0] == harness
    assert json.loads((out / "harness.json").read_text())["version"]
    # a branch of the run, exported from its last checkpoint, scored and stored as itself
    assert main([*args, "--branch", "add", "--limit", "8"]) == 0
    evals = store.evaluations([run_id])
    row = evals[
        (evals["benchmark"] == "copd_add_local:exact_match@bench") & (evals["model"] == "add")
    ]
    assert len(row) == 1 and (out / "branches" / "add" / "config.json").is_file()
    store.close()


def test_harness_refusals_name_the_fix(finished, capsys):
    url, run_id, _, root = finished
    assert main(["eval", str(run_id), "--harness", "lm-eval", "--tasks", "no_such_task",
                 "--db", url]) == 2  # fmt: skip
    assert "lm-eval knows no task ['no_such_task']" in capsys.readouterr().err
    assert main(["eval", str(run_id), "--harness", "lm-eval", "--tasks", "x"]) == 2
    assert "a run id needs --db URL" in capsys.readouterr().err
