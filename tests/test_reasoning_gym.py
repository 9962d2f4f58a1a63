"""reasoning-gym datasets as tasks (`rg:<dataset>`): options, split, verifier, a short run.

Skipped when reasoning-gym is not installed (`pip install -e .[rg]`)."""

import json
import random

import pytest

pytest.importorskip("reasoning_gym", reason="reasoning-gym is not installed (extra `rg`)")

from copd.tasks import get_task  # noqa: E402
from copd.tasks.reasoning_gym import ReasoningGymTask, parse_spec  # noqa: E402

ARITH = "rg:basic_arithmetic?min_terms=2&max_terms=2&min_digits=1&max_digits=1"


def test_spec_options_parse_as_json_and_keywords_win():
    assert parse_spec("rg:leg_counting?max_animals=3&name=legs&strict=true") == (
        "leg_counting",
        {"max_animals": 3, "name": "legs", "strict": True},
    )
    task = get_task("rg:leg_counting?max_animals=5#easy", max_animals=3, min_animals=2)
    assert isinstance(task, ReasoningGymTask)
    assert task.dataset.config.max_animals == 3 and task.dataset.config.min_animals == 2
    assert task.name == "leg_counting"


def test_unknown_dataset_and_bad_options_name_the_fix():
    with pytest.raises(ValueError, match="no dataset 'nope'"):
        get_task("rg:nope")
    with pytest.raises(ValueError, match="bad options"):
        get_task("rg:leg_counting", not_a_field=1)


@pytest.mark.parametrize(
    "spec", [ARITH, "rg:leg_counting?min_animals=2&max_animals=3", "rg:chain_sum"]
)
def test_split_is_disjoint_stable_and_by_question_hash(spec):
    task = get_task(spec, system_prompt="")
    held = task.eval_examples(40)
    assert held == task.eval_examples(40)  # fixed
    assert len({e.prompt for e in held}) >= 30
    train = task.sample(random.Random(0), 300)
    val = task.val_examples(20)
    assert not {e.prompt for e in held} & {e.prompt for e in train}
    assert not {e.prompt for e in val} & ({e.prompt for e in train} | {e.prompt for e in held})
    # Membership does not depend on the pool's seed: the same question text lands on the
    # same side from a differently seeded pool.
    other = get_task(spec, system_prompt="", seed=7)
    other_train = {e.prompt for e in other.sample(random.Random(1), 300)}
    assert not other_train & {e.prompt for e in held}
    assert other_train & {e.prompt for e in train}  # small spaces: the pools do overlap
    share = sum(task.is_held_out(i) for i in range(400)) / 400
    assert 0.15 < share < 0.35  # holdout_fraction 0.25


@pytest.mark.parametrize("spec", [ARITH, "rg:leg_counting?min_animals=2&max_animals=3"])
def test_verifier_is_the_dataset_scorer_on_the_answer_tags(spec):
    task = get_task(spec)
    ex = task.eval_examples(3)
    assert ex[0].system and "<answer>" in ex[0].system  # reasoning-gym's default system prompt
    for e in ex:
        assert task.reward(e, f"Thinking... <answer>{e.answer}</answer>") == 1.0
        assert task.reward(e, e.answer) == 1.0  # no tags: the whole completion is the answer
        assert task.reward(e, "<answer>not a number</answer>") < 1.0
        wrong = str(int(e.answer) + 1)
        assert task.reward(e, f"<answer>{wrong}</answer>") < 1.0
    strict = get_task(spec, strict=True)
    e = strict.eval_examples(1)[0]
    assert strict.reward(e, "<answer>x</answer>") == 0.0


def test_short_copd_run_with_a_reasoning_gym_branch(tiny_cfg, tmp_path):
    """The tiny model co-evolves an `add` branch with a basic_arithmetic branch."""
    import torch

    from copd.spec import BranchSpec, replace_in
    from copd.train.algorithms.copd import train
    from copd.train.logger import NullLogger
    from copd.train.world import World

    cfg = replace_in(
        tiny_cfg("demo"),
        branches=(BranchSpec("add", "add"), BranchSpec("arith", ARITH)),
        task_options={"add": {"difficulty": 1}, ARITH: {"system_prompt": ""}},
    ).validate()
    world = World.build(cfg, NullLogger())
    before = [p.detach().clone() for p in world.branches[1].params]
    scores = train(world, tmp_path)
    assert set(scores) == {"add", "arith", "merged"}
    assert "basic_arithmetic" in scores["arith"]
    assert any(
        not torch.equal(a, b.detach())
        for a, b in zip(before, world.branches[1].params, strict=True)
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert "basic_arithmetic" in json.dumps(results)
