"""The method table (copd/spec/methods.py) is what every part reads about a method: the
loop dispatch, the branch-count check, the policies the world builds, the step budget,
the reported model, the chart titles, the export tags and the study's rows."""

from __future__ import annotations

import importlib
import inspect

import pytest

from copd.spec import METHOD_TABLE, METHODS, OWN_DOMAIN, ConfigError, presets, reported_model_of
from copd.tools.export import card_tags
from copd.train.algorithms.baselines import BUDGET_RULES, budget_for
from experiments.reproduce import Arm, row_labels
from experiments.study_analysis import overall, primary_model, run_scores

PRESET = {m: m for m in METHODS} | {"copd": "demo"}


def test_the_table_and_the_config_name_the_same_methods():
    assert set(METHOD_TABLE) == set(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_every_row_is_honoured_by_each_reader(method):
    info = METHOD_TABLE[method]
    cfg = presets.get(PRESET[method])
    assert cfg.method == method
    loop = importlib.import_module(f"copd.train.algorithms.{info.loop}")
    assert list(inspect.signature(loop.train).parameters) == ["world", "out_dir"]
    # policies: what the world builds
    branches = list(cfg.branch_names)
    expected = {
        "branches": branches,
        "one": [method],
        "branches+student": [*branches, method],
    }[info.policies]
    assert cfg.policy_names() == expected
    # the reported model is one the run scores (or the own-domain composition)
    reported = cfg.reported_model()
    assert reported in [*cfg.policy_names(), "merged", OWN_DOMAIN]
    assert (reported == "merged") == (info.merges and cfg.merge.enabled)
    assert reported_model_of(cfg.to_dict(), method) == reported
    # the step budget: a rule every baseline has, CoPD its own schedule
    if info.budget == "copd":
        assert method not in BUDGET_RULES and info.budget not in BUDGET_RULES
    else:
        budget = budget_for(cfg)
        assert set(budget.updates_per_policy) == set(cfg.policy_names())
    # export tags and the study's row for the reported model
    assert card_tags(cfg.to_dict()) == ["copd", *info.tags]
    rows = dict(row_labels(Arm(method, PRESET[method], "2 domains"), cfg))
    if reported != OWN_DOMAIN:
        assert reported in rows, rows


@pytest.mark.parametrize("method", [m for m, i in METHOD_TABLE.items() if i.min_branches > 1])
def test_the_branch_count_check_reads_the_table(method):
    cfg = presets.get(PRESET[method]).to_dict()
    cfg["branches"] = cfg["branches"][:1]
    with pytest.raises(ConfigError, match=r"branches: .*needs >= 2 branches"):
        type(presets.get("demo")).from_dict(cfg).validate()


@pytest.mark.parametrize("method", [m for m, i in METHOD_TABLE.items() if i.policies != "branches"])
def test_a_branch_may_not_take_the_name_of_the_methods_own_policy(method):
    """Mixed GRPO and MOPD train a policy named after the method: a branch of that name is
    refused when the config is validated, before anything is built."""
    cfg = presets.get(PRESET[method]).to_dict()
    cfg["branches"][0]["name"] = method
    with pytest.raises(ConfigError, match=rf"^branches: '{method}' is reserved"):
        type(presets.get("demo")).from_dict(cfg).validate()


def test_the_study_judges_each_run_by_its_reported_model():
    """An expert run's result is each expert on its own domain (not its first branch), a
    static-OPD run's its student (not the teacher listed first), computed by hand here."""
    expert = presets.get("expert").to_dict()
    a, b = (br["name"] for br in expert["branches"])
    ta, tb = (br["task"] for br in expert["branches"])
    scores = {
        a: {ta: 0.9, tb: 0.1, f"{ta}@val": 0.8, f"{tb}@val": 0.2, "overall": 0.5},
        b: {ta: 0.3, tb: 0.7, f"{ta}@val": 0.4, f"{tb}@val": 0.6, "overall": 0.5},
    }
    rs = run_scores(scores, expert, "expert")
    assert primary_model(rs) == OWN_DOMAIN
    assert rs[OWN_DOMAIN][ta] == 0.9 and rs[OWN_DOMAIN][tb] == 0.7
    assert overall(rs) == pytest.approx((0.9 + 0.7) / 2)
    assert overall(rs, split="val") == pytest.approx((0.8 + 0.6) / 2)

    static = presets.get("static_opd").to_dict()
    teacher, student = presets.get("static_opd").static_pair()
    scores = {teacher: {"overall": 0.9}, student: {"overall": 0.4}}
    assert primary_model(run_scores(scores, static, "static_opd")) == student
