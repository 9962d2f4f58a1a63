"""Dataset tasks, verifiers and chat-template rendering (fast; tiny model only).

Covers: every verifier on real-looking rows, row validation with line numbers, JSONL /
CSV / Parquet loading, the held-out split, prompt rendering with and without a chat
template (and no second bos), and a dataset task resolved by import path in World.build.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time

import pytest

from copd.tasks import Example, get_task, verifiers
from copd.tasks.datasets import DatasetError, DatasetTask, from_file
from copd.tasks.verifiers import (
    choice_match,
    exact_match,
    extract_choice,
    get_verifier,
    math_match,
    numeric_match,
)


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


GSM_ROWS = [
    {
        "question": f"Tom has {a} apples and buys {b} more. How many apples now?",
        "answer": f"He has {a}+{b} = <<{a}+{b}={a + b}>>{a + b} apples.\n#### {a + b}",
    }
    for a, b in [(3, 4), (10, 62), (1200, 34), (5, 5), (7, 8), (11, 12), (20, 30), (40, 2)]
    + [(i, i + 1) for i in range(30)]
]


# ----------------------------------------------------------------------------- verifiers
def test_numeric_reads_gsm8k_gold_and_the_last_number_of_the_completion():
    gold = GSM_ROWS[1]["answer"]  # "... #### 72"
    assert numeric_match("10 + 62 = 72. The answer is 72.", gold) == 1.0
    assert numeric_match("The answer is 73.", gold) == 0.0
    assert numeric_match("72 apples, no wait, 71", gold) == 0.0  # the last number counts
    assert numeric_match("no idea", gold) == 0.0
    assert numeric_match("She pays $1,234 in total.", "#### 1234") == 1.0
    assert numeric_match("so 1234", "1,234") == 1.0
    assert numeric_match("x = -3", "#### -3") == 1.0
    assert numeric_match("0.5", "0.50") == 1.0
    assert numeric_match("0.5001", "0.5") == 0.0
    assert get_verifier("numeric", abs_tol=0.01)("0.5001", "0.5") == 1.0


def test_math_verifier_handles_boxed_fractions_and_latex():
    assert math_match("0.5", "\\boxed{\\frac{1}{2}}") == 1.0
    assert math_match("Thus the result is $\\boxed{\\frac{1}{2}}$.", "0.5") == 1.0
    assert math_match("so \\boxed{\\sqrt 2}", "\\sqrt{2}") == 1.0  # bare LaTeX gold
    assert math_match("The answer is 72.", "#### 72") == 1.0
    assert math_match("\\boxed{\\frac{1}{3}}", "\\frac{1}{2}") == 0.0
    assert math_match("I cannot solve this.", "\\frac{1}{2}") == 0.0


def test_math_verifier_times_out_a_pathological_completion_on_the_main_thread(monkeypatch):
    """A power tower hangs sympy without a limit (killed after 20 s when tried); on the main
    thread math-verify's limits are on, so it scores 0 within them, and an alarm that was
    pending before (a test runner's timeout) is still pending after."""
    monkeypatch.setattr(verifiers, "MATH_TIMEOUT_S", 1)
    assert verifiers.math_time_limit() == 1
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    signal.setitimer(signal.ITIMER_REAL, 60.0)
    try:
        t0 = time.monotonic()
        assert math_match("\\boxed{9^{9^{9^{9}}}}", "\\boxed{1}") == 0.0
        assert time.monotonic() - t0 < 8  # parse + verify, 1 s each, plus start-up
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 40 < left <= 60 and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_math_verifier_works_off_the_main_thread():
    # math-verify's time limits use signal.alarm, which raises in a worker thread
    # (Streamlit runs page scripts in one); there they are off.
    limits = []
    t = threading.Thread(target=lambda: limits.append(verifiers.math_time_limit()))
    t.start()
    t.join(10)
    assert limits == [None]
    out = []
    t = threading.Thread(target=lambda: out.append(math_match("\\boxed{0.5}", "\\frac12")))
    t.start()
    t.join(60)
    assert out == [1.0]


@pytest.mark.parametrize(
    "completion, letter",
    [
        ("The answer is (B).", "B"),
        ("Answer: C", "C"),
        ("I think D) is right", "D"),
        ("(A) 3, (B) 4 ... so the answer is J", "J"),
        ("After checking each option: E", "E"),
        ("E.", "E"),
        ("The answer is a bit unclear", None),
        ("Apples", None),
    ],
)
def test_choice_letter_extraction(completion, letter):
    assert extract_choice(completion) == letter


def test_choice_verifier_compares_letters():
    assert choice_match("The answer is (B).", "B") == 1.0
    assert choice_match("Answer: B", "(B)") == 1.0
    assert choice_match("Answer: B", "b") == 1.0
    assert choice_match("Answer: C", "B") == 0.0
    assert choice_match("I don't know", "B") == 0.0


def test_exact_match_normalises_whitespace_and_case_by_default():
    assert exact_match("  New   York\n", "new york") == 1.0
    assert exact_match("New York", "new york", ignore_case=False) == 0.0
    assert exact_match("New  York", "New York", collapse_whitespace=False) == 0.0
    assert exact_match("New Yorks", "New York") == 0.0


def test_unknown_verifier_names_the_choices():
    with pytest.raises(ValueError, match="choice"):
        get_verifier("fuzzy")


# ----------------------------------------------------------------------------- loading
def test_jsonl_task_maps_fields_splits_and_rewards(tmp_path):
    path = write_jsonl(tmp_path / "gsm.jsonl", GSM_ROWS)
    task = from_file(
        path,
        prompt_field="question",
        answer_field="answer",
        verifier="numeric",
        name="gsm8k",
        system_prompt="Solve it.",
        prompt_template="{prompt}\nEnd with the number.",
        eval_fraction=0.25,
    )
    assert task.name == "gsm8k"
    assert len(task.train) + len(task.validation) + len(task.held_out) == len(GSM_ROWS)
    assert task.train and task.held_out and task.validation
    held = {ex.prompt for ex in task.held_out}
    val = {ex.prompt for ex in task.validation}
    assert not held & val
    train_draws = task.sample(random.Random(0), 200)
    assert not (held | val) & {ex.prompt for ex in train_draws}  # training sees neither
    assert task.val_examples(1000) == task.validation
    assert task.eval_examples(1000) == task.held_out  # stable, file order, capped
    ex = task.eval_examples(1)[0]
    assert ex.domain == "gsm8k" and ex.system == "Solve it."
    assert ex.prompt.endswith("\nEnd with the number.")
    gold = ex.answer.rsplit("#### ", 1)[1]
    assert task.reward(ex, f"The answer is {gold}.") == 1.0
    assert task.reward(ex, "The answer is -1.") == 0.0
    # the split depends only on (name, prompt): a second load splits identically
    again = from_file(
        path, prompt_field="question", verifier="numeric", name="gsm8k", eval_fraction=0.25
    )
    assert [e.answer for e in again.held_out] == [e.answer for e in task.held_out]


def test_malformed_jsonl_lists_every_bad_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(
        '{"prompt": "1+1=", "answer": "2"}\n'
        "\n"  # blank lines are skipped but still counted
        '{"prompt": "2+2=", "answer": 4}\n'  # a number answer is fine (converted to "4")
        '{"prompt": "", "answer": "1"}\n'  # line 4: empty prompt
        '{"prompt": "3+3="}\n'  # line 5: missing answer
        '{"prompt": "x", "answer": ["a", "b"]}\n'  # line 6: a list cannot be an answer
    )
    with pytest.raises(DatasetError) as e:
        from_file(str(p), eval_fraction=0.0)
    msg = str(e.value)
    assert str(p) in msg
    assert "line 4: empty prompt" in msg
    assert "line 5: missing field 'answer'" in msg and "set answer_field" in msg
    assert "line 6: answer field 'answer' is a list" in msg
    assert "line 1" not in msg and "line 3" not in msg


def test_jsonl_syntax_errors_are_reported_with_line_numbers(tmp_path):
    p = tmp_path / "broken.jsonl"
    p.write_text('{"prompt": "a", "answer": "b"}\n{"prompt": "a" "answer"}\n[1, 2]\n')
    with pytest.raises(DatasetError, match=r"(?s)line 2: not valid JSON.*line 3: a JSON list"):
        from_file(str(p))


def test_mixed_types_in_a_jsonl_column_are_checked_row_by_row(tmp_path):
    # Arrow cannot hold a column of numbers and strings: such a file is read line by line.
    p = write_jsonl(
        tmp_path / "mixed.jsonl",
        [{"prompt": "a", "answer": "b"}, {"prompt": {"text": "a"}, "answer": 3}],
    )
    with pytest.raises(DatasetError, match="line 2: prompt field 'prompt' is a dict"):
        from_file(p)
    p = write_jsonl(
        tmp_path / "ok.jsonl", [{"prompt": "a", "answer": "b"}, {"prompt": "c", "answer": 3}]
    )
    assert [e.answer for e in from_file(p, eval_fraction=0.0).train] == ["b", "3"]


def test_error_list_is_capped(tmp_path):
    p = write_jsonl(tmp_path / "empty.jsonl", [{"prompt": "", "answer": "1"}] * 30)
    with pytest.raises(DatasetError) as e:
        from_file(p, max_errors=5)
    assert str(e.value).count("empty prompt") == 5 and "only 5 shown" in str(e.value)


def test_gold_answers_are_checked_against_the_verifier(tmp_path):
    p = write_jsonl(
        tmp_path / "mcq.jsonl", [{"prompt": "Pick", "answer": "B"}, {"prompt": "Q", "answer": "7"}]
    )
    with pytest.raises(DatasetError, match="line 2: choice answer '7' is not a letter"):
        from_file(p, verifier="choice", eval_fraction=0.0)


def test_csv_and_parquet_load_like_jsonl(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(
        {
            "q": [f"Question {i}? (A) x (B) y" for i in range(40)],
            "label": ["A" if i % 2 else "B" for i in range(40)],
            "img": [f"img/{i}.png" for i in range(40)],
        }
    )
    frame.to_csv(tmp_path / "mcq.csv", index=False)
    frame.to_parquet(tmp_path / "mcq.parquet")
    tasks = [
        from_file(
            tmp_path / f"mcq.{suffix}",
            prompt_field="q",
            answer_field="label",
            image_field="img",
            verifier="choice",
            name="mcq",
        )
        for suffix in ("csv", "parquet")
    ]
    assert [e.prompt for e in tasks[0].held_out] == [e.prompt for e in tasks[1].held_out]
    ex = tasks[1].held_out[0]
    assert ex.images == (str(tmp_path / "img" / f"{ex.prompt.split()[1][:-1]}.png"),)
    assert tasks[0].reward(ex, "Answer: " + ex.answer) == 1.0


def test_csv_errors_give_file_lines(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text("prompt,answer\n1+1=,2\n,3\n2+2=,\n")
    with pytest.raises(DatasetError) as e:
        from_file(p, eval_fraction=0.0)
    assert "line 3: missing field 'prompt'" in str(e.value)
    assert "line 4: missing field 'answer'" in str(e.value)


def test_separate_eval_file_and_numeric_answers(tmp_path):
    train = write_jsonl(
        tmp_path / "t.jsonl", [{"prompt": f"{i}+1=", "answer": i + 1} for i in range(5)]
    )
    ev = write_jsonl(tmp_path / "e.jsonl", [{"prompt": "9+1=", "answer": 10.0}])
    task = from_file(train, eval_path=ev, verifier="exact")
    assert len(task.train) == 5
    assert task.eval_examples(8) == [Example("9+1=", "10", task.name)]
    assert task.max_answer_chars == 2


def test_bad_options_name_the_fix(tmp_path):
    p = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "a", "answer": "b"}])
    with pytest.raises(DatasetError, match="use one of"):
        from_file(p, verifier="fuzzy")
    with pytest.raises(DatasetError, match=r"\{prompt\}"):
        from_file(p, prompt_template="no placeholder")
    with pytest.raises(DatasetError, match="empty eval split"):
        from_file(p, eval_fraction=0.1)
    with pytest.raises(DatasetError, match="no such file"):
        from_file(tmp_path / "missing.jsonl")
    (tmp_path / "x.txt").write_text("prompt,answer\n")
    with pytest.raises(DatasetError, match=r"\*\.jsonl"):
        from_file(tmp_path / "x.txt")


def test_get_task_resolves_alias_label_and_import_path(tmp_path):
    p = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "a", "answer": "b"}])
    for spec in ("dataset", "dataset#one", "copd.tasks.datasets:from_file#two"):
        task = get_task(spec, path=p, eval_fraction=0.0, name="xx")
        assert isinstance(task, DatasetTask) and task.name == "xx"
    assert get_task("add#easy", difficulty=1).name == "add"


# ----------------------------------------------------------------------------- chat
# Role markers made only of characters the built-in char tokenizer knows, so the tiny model
# can run on the rendered text: "#" opens a system turn, "<" a user turn, ":" the answer.
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}#{% else %}<{% endif %}{{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}:{% endif %}"
)


def char_tokenizer(template: str | None = None):
    from copd.builders.tiny import build_char_tokenizer, default_alphabet

    tok = build_char_tokenizer(default_alphabet())
    tok.chat_template = template
    return tok


def test_chat_template_renders_system_and_user_without_a_second_bos():
    from copd.policy.chat import render_prompt
    from copd.policy.sampler import encode_prompts

    tok = char_tokenizer(TEMPLATE)
    ex = Example("1+2=", "3", "add", system="be brief")
    text = render_prompt(tok, ex)
    assert text == "<bos>#be brief <1+2= :"
    ids, mask = encode_prompts(
        tok, [text, render_prompt(tok, Example("1+22=", "23", "add"))], "cpu", False
    )
    for row, m in zip(ids.tolist(), mask.tolist(), strict=True):
        real = [t for t, k in zip(row, m, strict=True) if k]
        assert real.count(tok.bos_token_id) == 1 and real[0] == tok.bos_token_id
    # the tokenizer's own post-processor would have doubled it
    doubled = tok(text)["input_ids"]
    assert doubled[:2] == [tok.bos_token_id, tok.bos_token_id]


def test_plain_prompt_without_a_template():
    from copd.policy.chat import render_prompt, render_prompts

    tok = char_tokenizer(None)
    assert render_prompt(tok, Example("1+2=", "3", "add")) == "1+2="
    assert render_prompt(tok, Example("1+2=", "3", "add", system="hi")) == "hi\n\n1+2="
    assert render_prompts(tok, [Example("a", "b", "c")]) == (["a"], False)


def test_sample_rollouts_applies_the_template(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from copd.policy.decoding import Decoding
    from copd.policy.rollout import sample_rollouts

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    greedy = Decoding(max_new_tokens=3, greedy=True)
    examples = [Example("1+2=", "3", "add"), Example("ab>", "ba", "rev")]
    plain = sample_rollouts(
        model,
        char_tokenizer(None),
        examples,
        greedy,
        group_size=2,
    )
    chat = sample_rollouts(
        model,
        char_tokenizer(TEMPLATE),
        examples,
        greedy,
        group_size=2,
    )
    tok = char_tokenizer(None)
    first = [
        t
        for t, m in zip(
            chat.prompt_ids_B_P[0].tolist(), chat.prompt_mask_B_P[0].tolist(), strict=True
        )
        if m
    ]
    assert tok.decode(first) == "<bos><1+2= :"
    p0 = [
        t
        for t, m in zip(
            plain.prompt_ids_B_P[0].tolist(), plain.prompt_mask_B_P[0].tolist(), strict=True
        )
        if m
    ]
    assert tok.decode(p0) == "<bos>1+2="  # the built-in path is unchanged: bos + prompt
    assert chat.prompt_ids_B_P.shape[0] == 4  # rows grouped per prompt


# ----------------------------------------------------------------------------- engine
def test_dataset_tasks_through_world_build(tmp_path, tiny_cfg):
    from copd.train.algorithms.copd import phase1_step
    from copd.train.world import World

    add = write_jsonl(
        tmp_path / "add.jsonl",
        [{"q": f"{a}+{b}=", "a": a + b} for a in range(10) for b in range(10)],
    )
    rev = write_jsonl(
        tmp_path / "rev.jsonl",
        [
            {"q": f"{s}>", "a": s[::-1]}
            for s in ("ab", "abc", "cab", "bca", "dea", "fgh", "hij", "ji")
        ],
    )
    spec = "copd.tasks.datasets:from_file"
    options = {
        f"{spec}#add": {
            "path": add,
            "prompt_field": "q",
            "answer_field": "a",
            "verifier": "numeric",
            "name": "addfile",
        },
        f"{spec}#rev": {
            "path": rev,
            "prompt_field": "q",
            "answer_field": "a",
            "verifier": "exact",
            "name": "revfile",
            "eval_fraction": 0.0,
        },
    }
    cfg = tiny_cfg(
        "demo",
        f'branches=[{{"name": "a", "task": "{spec}#add"}}, {{"name": "r", "task": "{spec}#rev"}}]',
        "task_options=" + json.dumps(options),
    )
    world = World.build(cfg)
    assert {t.name for t in world.tasks.values()} == {"addfile", "revfile"}
    assert world.branch("a").task.name == "addfile"
    metrics = phase1_step(world)
    assert "branch/a/reward_on/addfile" in metrics and "branch/r/reward_on/revfile" in metrics


def test_validation_split_from_a_file_or_none(tmp_path):
    path = write_jsonl(tmp_path / "gsm.jsonl", GSM_ROWS)
    val = write_jsonl(tmp_path / "val.jsonl", GSM_ROWS[:3])
    opts = dict(prompt_field="question", answer_field="answer", verifier="numeric")
    task = from_file(path, val_path=val, eval_fraction=0.25, **opts)
    assert len(task.validation) == 3
    assert len(task.train) + len(task.held_out) == len(GSM_ROWS)
    none = from_file(path, val_fraction=0.0, **opts)
    with pytest.raises(DatasetError, match="no validation split"):
        none.val_examples(4)
    with pytest.raises(DatasetError, match="val_fraction"):
        from_file(path, val_fraction=0.95, **opts)
