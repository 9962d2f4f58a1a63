"""Built-in tasks: verifiers, the held-out split, difficulty and `get_task` resolution."""

from __future__ import annotations

import random
import sys
import textwrap

import pytest

from copd.tasks import Example, Task, builtin_alphabet, builtin_task_names, get_task

DEMO = ("add", "rev", "sort", "count")
MARKERS = {"add": "+", "rev": ">", "sort": "<", "count": "#", "mod": "%"}


def oracle(domain: str, prompt: str) -> str:
    """An independent answer key, written from the task descriptions."""
    if domain == "add":
        a, b = prompt.rstrip("=").split("+")
        return str(int(a) + int(b))
    if domain == "mod":
        a, d = prompt.rstrip("=").split("%")
        return str(int(a) % int(d))
    if domain == "rev":
        return "".join(reversed(prompt.rstrip(">")))
    if domain == "sort":
        return "".join(sorted(prompt.rstrip("<")))
    if domain == "count":
        s, letter = prompt.rstrip(":").split("#")
        return str(sum(ch == letter for ch in s))
    raise AssertionError(domain)


def test_builtin_names_cover_the_demo_domains():
    assert set(DEMO) <= set(builtin_task_names())
    assert builtin_task_names() == sorted(builtin_task_names())


@pytest.mark.parametrize("name", sorted(MARKERS))
def test_answers_match_an_independent_oracle(name):
    task = get_task(name)
    examples = task.sample(random.Random(1), 300) + task.eval_examples(100)
    for ex in examples:
        assert ex.domain == name
        assert ex.answer == oracle(name, ex.prompt), ex


@pytest.mark.parametrize("name", sorted(MARKERS))
def test_verifier_accepts_right_and_rejects_wrong(name):
    task = get_task(name)
    for ex in task.eval_examples(20):
        assert task.reward(ex, ex.answer) == 1.0
        assert task.reward(ex, f"  {ex.answer}\n") == 1.0  # surrounding whitespace is stripped
        assert task.reward(ex, "") == 0.0
        assert task.reward(ex, ex.answer + ex.answer[-1]) == 0.0
        assert task.reward(ex, ex.answer[:-1]) == 0.0
        assert task.reward(ex, ex.answer + "<pad>") == 0.0  # no partial credit


@pytest.mark.parametrize("name", sorted(MARKERS))
def test_eval_split_is_fixed_and_disjoint_from_training(name):
    task = get_task(name)
    held_out = task.eval_examples(128)
    assert held_out == get_task(name).eval_examples(128)  # seeded, same in a fresh instance
    assert len(held_out) == 128
    train = task.sample(random.Random(0), 2000)
    assert not {e.prompt for e in held_out} & {e.prompt for e in train}
    # Training draws differ by seed (it is the rng, not a fixed list).
    assert train[:20] != task.sample(random.Random(1), 20)


@pytest.mark.parametrize("name", sorted(MARKERS))
def test_held_out_membership_does_not_depend_on_difficulty(name):
    # Training at one difficulty must never see the prompts evaluated at another.
    held_out = {e.prompt for d in (1, 2, 3) for e in get_task(name, difficulty=d).eval_examples(64)}
    for d in (1, 2, 3):
        train = get_task(name, difficulty=d).sample(random.Random(d), 1000)
        assert not held_out & {e.prompt for e in train}


@pytest.mark.parametrize("name", sorted(MARKERS))
def test_difficulty_changes_the_input_distribution(name):
    def mean_len(d: int) -> float:
        examples = get_task(name, difficulty=d).sample(random.Random(0), 500)
        return sum(len(e.prompt) for e in examples) / len(examples)

    lengths = [mean_len(d) for d in (1, 3, 5)]
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1]


def test_add_difficulty_sets_operand_range():
    def max_operand(d: int) -> int:
        examples = get_task("add", difficulty=d).sample(random.Random(0), 1000)
        return max(int(x) for e in examples for x in e.prompt.rstrip("=").split("+"))

    assert max_operand(1) == 9
    assert max_operand(2) == 19


@pytest.mark.parametrize("name", sorted(MARKERS))
def test_domain_is_recognisable_from_the_prompt(name):
    task = get_task(name)
    others = set(MARKERS.values()) - {MARKERS[name]}
    for ex in task.sample(random.Random(0), 200):
        assert MARKERS[name] in ex.prompt
        assert not others & set(ex.prompt)
        assert set(ex.prompt + ex.answer) <= set(task.alphabet) <= set(builtin_alphabet())


def test_get_task_rejects_bad_names_and_options():
    with pytest.raises(ValueError, match=r"unknown task 'nope'.*add.*package\.module:factory"):
        get_task("nope")
    with pytest.raises(ValueError, match="difficulty"):
        get_task("add", difficulty=6)
    with pytest.raises(ValueError, match="bad options"):
        get_task("rev", colour="red")
    with pytest.raises(ValueError, match="cannot import module"):
        get_task("no_such_module_xyz:make", trust_task_code=True)


def test_get_task_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_tasks_mod.py").write_text(
        textwrap.dedent(
            """
            from copd.tasks import Example, Task

            class Echo(Task):
                name = "echo"
                alphabet = "xyz="
                max_answer_chars = 3

                def __init__(self, word="xyz"):
                    self.word = word

                def sample(self, rng, n):
                    return [Example(self.word + "=", self.word, self.name)] * n

                def eval_examples(self, n):
                    return [Example(self.word + "=", self.word, self.name)] * n

            def make_task(**options):
                return Echo(**options)

            def not_a_task():
                return 42
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    task = get_task("my_tasks_mod:make_task", trust_task_code=True, word="zy")
    assert isinstance(task, Task) and task.name == "echo"
    ex = task.eval_examples(1)[0]
    assert ex == Example("zy=", "zy", "echo")
    assert task.reward(ex, "zy") == 1.0 and task.reward(ex, "zz") == 0.0
    with pytest.raises(ValueError, match="has no callable 'missing'"):
        get_task("my_tasks_mod:missing", trust_task_code=True)
    with pytest.raises(TypeError, match="return a copd.tasks.Task"):
        get_task("my_tasks_mod:not_a_task", trust_task_code=True)
    sys.modules.pop("my_tasks_mod", None)


@pytest.mark.parametrize("name", ["add", "rev", "sort", "count", "mod"])
def test_three_splits_are_disjoint_and_stable(name):
    task = get_task(name, difficulty=2)
    test_keys = {ex.prompt for ex in task.eval_examples(64)}
    val = task.val_examples(64)
    val_keys = {ex.prompt for ex in val}
    train_keys = {ex.prompt for ex in task.sample(random.Random(3), 500)}
    assert val_keys and test_keys and train_keys
    assert not val_keys & test_keys
    assert not train_keys & (val_keys | test_keys)
    # stable: a new task object (as in another process) draws the same validation prompts
    assert get_task(name, difficulty=2).val_examples(64) == val
    # the test split is the one of before validation existed (u < holdout_fraction)
    assert all(task.split_of(k) == "test" for k in [task.draw(random.Random(i)) for i in range(200)]
               if task.is_held_out(k))  # fmt: skip
    assert task.split_examples("validation", 5) == val[:5]
    with pytest.raises(ValueError, match="val_fraction"):
        get_task(name, val_fraction=0.9)


def test_up_and_down_map_the_same_strings_oppositely():
    """The conflict pair: one split of the letter strings for both, opposite letter maps,
    told apart by the opening tag alone (same end marker), inside the demo vocabulary."""
    up, down = get_task("up"), get_task("down")
    letters = "abcdefghij"
    for task, step, tag in ((up, 1, "+"), (down, -1, "=")):
        for ex in task.sample(random.Random(0), 300) + task.eval_examples(64):
            s = ex.prompt[1:-1]
            assert ex.prompt[0] == tag and ex.prompt[-1] == ":" and set(s) <= set(letters)
            assert ex.answer == "".join(letters[(letters.index(c) + step) % 10] for c in s)
    assert up.render("aj").answer == "ba" and down.render("aj").answer == "ji"
    # a string held out under one tag is held out under the other (one split by string)
    strings = [up.draw(random.Random(i)) for i in range(500)]
    assert [up.split_of(s) for s in strings] == [down.split_of(s) for s in strings]
    train = {e.prompt[1:] for e in up.sample(random.Random(0), 2000)}
    assert not train & {e.prompt[1:] for e in down.eval_examples(128) + down.val_examples(128)}
    assert set(up.alphabet + down.alphabet) <= set(builtin_alphabet())
    assert builtin_alphabet() == "#%+0123456789:<=>abcdefghij"  # the vocabulary is unchanged


def test_fwd_and_back_are_the_same_maps_cued_by_the_first_letter():
    """The cue pair: no tag, the same end marker; fwd's strings open with a-e and shift one
    on, back's open with f-j and shift one back; the rest of the string is drawn alike, and
    a string's split is the same under either task (one split by string with up and down)."""
    fwd, back = get_task("fwd"), get_task("back")
    letters = "abcdefghij"
    for task, step, cue in ((fwd, 1, letters[:5]), (back, -1, letters[5:])):
        examples = task.sample(random.Random(0), 300) + task.eval_examples(64)
        for ex in examples + task.val_examples(64):
            s = ex.prompt[:-1]
            assert ex.prompt[-1] == ":" and set(s) <= set(letters) and s[0] in cue
            assert ex.answer == "".join(letters[(letters.index(c) + step) % 10] for c in s)
        assert set("".join(ex.prompt[1:-1] for ex in examples)) == set(letters)  # the rest: a-j
        assert {len(ex.prompt) - 1 for ex in examples} == {3, 4, 5}
    assert fwd.render("bj").answer == "ca" and back.render("hj").answer == "gi"
    assert fwd.split_of("bcd") == get_task("up").split_of("bcd")
    assert set(fwd.alphabet + back.alphabet) <= set(builtin_alphabet())
    assert builtin_alphabet() == "#%+0123456789:<=>abcdefghij"


def test_a_fresh_test_draw_is_held_out_stable_and_disjoint_from_the_scored_prompts():
    """eval.test_draw=fresh (issue 39: final tables on prompts no earlier table scored):
    test-split inputs, the same on every call, none among the standard stream's first
    SCORED prompts; a domain too small for it says so."""
    from copd.tasks import get_task
    from copd.tasks.base import SCORED

    t = get_task("fwd")
    fresh = t.fresh_examples(64)
    assert [e.prompt for e in fresh] == [e.prompt for e in t.fresh_examples(64)]
    scored = {e.prompt for e in t.eval_examples(SCORED)}
    assert not {e.prompt for e in fresh} & scored and len({e.prompt for e in fresh}) == 64
    keys = [k for k in t._fixed_keys(f"fresh|{t.name}|{t.difficulty}", "test", 64, set())]
    assert all(t.split_of(k) == "test" for k in keys)
    with pytest.raises(ValueError, match="beyond the 512 already scored"):
        get_task("add").fresh_examples(8)


def test_a_run_on_a_fresh_draw_scores_those_prompts(tiny_cfg):
    from copd.spec import ConfigError
    from copd.train.evaluate import eval_examples
    from copd.train.world import World

    one = 'branches=[{"name": "fwd", "task": "fwd"}]'
    world = World.build(tiny_cfg("demo", "eval.test_draw=fresh", one, "method=expert"))
    task = world.tasks["fwd"]
    assert [e.prompt for e in eval_examples(world.evaluation, task, "test")] == [
        e.prompt for e in task.fresh_examples(world.evaluation.n_prompts)
    ]
    with pytest.raises(ConfigError, match="eval.test_draw"):
        World.build(tiny_cfg("demo", "eval.test_draw=fresh"))  # add: too small / no fresh


def test_fresh_or_whole_scores_an_exhausted_test_split_whole_and_says_so(tiny_cfg):
    """The built-in pair's fresh table (issue 39): add's test split was scored whole by
    every earlier table (110 inputs), so `fresh_or_whole` scores all of it, each input once,
    and the run's log says so; rev, with inputs to spare, gets the fresh draw."""
    from copd.tasks import get_task
    from copd.train.evaluate import eval_examples
    from copd.train.world import World

    add, rev = get_task("add"), get_task("rev")
    assert add.test_split_exhausted() and not rev.test_split_exhausted()
    whole = {e.prompt for e in add.fresh_or_whole_examples(128)}
    assert whole == {e.prompt for e in add.eval_examples(512)}
    assert len(whole) == len(add.scored_keys()) < 128
    assert all(add.is_held_out(k) for k in add.scored_keys())
    assert [e.prompt for e in rev.fresh_or_whole_examples(64)] == [
        e.prompt for e in rev.fresh_examples(64)
    ]
    from copd.train.logger import NullLogger

    class Events(NullLogger):
        def __init__(self):
            self.lines = []

        def log_event(self, message, *, level="info", step=None):
            self.lines.append(message)

    log = Events()
    rev2 = 'task_options={"add": {"difficulty": 1}, "rev": {"difficulty": 2}}'
    world = World.build(tiny_cfg("demo", "eval.test_draw=fresh_or_whole", rev2), logger=log)
    n = world.evaluation.n_prompts
    got = {
        t: [e.prompt for e in eval_examples(world.evaluation, world.tasks[t], "test")]
        for t in world.tasks
    }
    wadd, wrev = world.tasks["add"], world.tasks["rev"]  # add at the tiny difficulty
    assert got["add"] == [wadd.render(k).prompt for k in wadd.scored_keys()]
    assert got["rev"] == [e.prompt for e in wrev.fresh_examples(n)]
    assert [m for m in log.lines if "fresh_or_whole" in m] == [
        f"eval.test_draw=fresh_or_whole: add's test split holds {len(got['add'])} inputs, all "
        "scored before; scored whole, each once"
    ]


def test_a_split_s_fixed_prompts_are_drawn_once_per_task():
    """Every evaluation asks for the same prompts of every model; add's test split (110
    inputs) took 50 x n rejected draws each time (seconds per evaluation, the step-0 one
    included). The second call draws nothing and gives the same prompts."""
    from copd.tasks import get_task

    t = get_task("add")
    first = [e.prompt for e in t.eval_examples(128)]
    calls = []
    draw = t.draw
    t.draw = lambda rng: calls.append(1) or draw(rng)
    assert [e.prompt for e in t.eval_examples(128)] == first and not calls
    assert [e.prompt for e in get_task("add").eval_examples(128)] == first  # a new instance
