import pytest

from copd.spec import ConfigError, RunConfig, apply_overrides, config_diff


def test_json_round_trip(tmp_path):
    cfg = apply_overrides(RunConfig(), ["grpo.group_size=4", "opd.teacher=snapshot"])
    path = tmp_path / "c.json"
    cfg.to_json(path)
    again = RunConfig.from_file(path)
    assert again == cfg
    assert again.grpo.group_size == 4 and again.opd.teacher == "snapshot"


def test_validation_names_field_and_fix():
    cfg = apply_overrides(RunConfig(), ["grpo.group_size=1"])
    with pytest.raises(ConfigError, match=r"grpo.group_size: .*at least 2"):
        cfg.validate()


def test_unknown_override_is_refused():
    with pytest.raises(ConfigError, match="unknown field"):
        apply_overrides(RunConfig(), ["grpo.groupsize=4"])


def test_bad_literal_is_refused():
    with pytest.raises(ConfigError, match="topology.kind"):
        RunConfig.from_dict({"topology": {"kind": "ring"}})


def test_pair_topology_needs_two_branches():
    cfg = RunConfig.from_dict(
        {
            "branches": [
                {"name": "a", "task": "add"},
                {"name": "b", "task": "rev"},
                {"name": "c", "task": "sort"},
            ]
        }
    )
    with pytest.raises(ConfigError, match="topology.kind"):
        cfg.validate()


def test_config_diff_only_what_differs():
    a = RunConfig().to_dict()
    b = apply_overrides(RunConfig(), ["opd.beta=0.5"]).to_dict()
    assert config_diff(a, b) == {"opd.beta": (1.0, 0.5)}


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["merge.method=ties", "merge.weights=[1, 2]"], r"merge.weights: 'ties' does not use"),
        (["merge.weights=[1, 2, 3]"], r"merge.weights: give one weight per branch \(2\)"),
        (["merge.weights=[0, 0]"], r"merge.weights: weights must be >= 0"),
        (["merge.method=task_arithmetic", "merge.weights=[1]"], r"one weight per branch"),
    ],
)
def test_merge_weights_are_checked_for_every_method(overrides, match):
    cfg = apply_overrides(RunConfig(), overrides)
    with pytest.raises(ConfigError, match=match):
        cfg.validate()
    for ok in (
        ["merge.weights=[3, 1]"],
        ["merge.method=task_arithmetic", "merge.weights=[1, -0.5]"],
    ):
        apply_overrides(RunConfig(), ok).validate()


def test_allowed_values_come_from_the_literal_types():
    from typing import get_type_hints

    from copd.math.merge import MERGE_METHODS as MERGE_MODULE_METHODS
    from copd.spec import LOSS_AGGS, MERGE_METHODS, METHODS, TOPOLOGIES, MergeConfig

    assert get_type_hints(MergeConfig)["method"].__args__ == MERGE_METHODS
    assert MERGE_MODULE_METHODS is MERGE_METHODS
    assert "copd" in METHODS and "dr_grpo" in LOSS_AGGS and "hub" in TOPOLOGIES


def _message(fn) -> str:
    with pytest.raises(ConfigError) as info:
        fn()
    return str(info.value)


def test_unknown_field_reads_the_same_from_set_and_from_a_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text('{"grpo": {"lrr": 0.1}}')
    from_set = _message(lambda: apply_overrides(RunConfig(), ["grpo.lrr=0.1"]))
    from_file = _message(lambda: RunConfig.from_file(path))
    tail = "unknown field 'lrr'; did you mean 'lr'? known fields of grpo are ["
    assert tail in from_set and tail in from_file
    assert from_set.split(": ", 1)[1] == from_file.split(": ", 1)[1]
    assert "'group_size'" in from_set


def test_unknown_section_in_set_suggests_the_close_one():
    msg = _message(lambda: apply_overrides(RunConfig(), ["grpoo.lr=0.1"]))
    assert "unknown field 'grpoo'; did you mean 'grpo'? known fields are [" in msg
    msg = _message(lambda: apply_overrides(RunConfig(), ["grpo.zzz=1"]))
    assert "did you mean" not in msg and "known fields of grpo are" in msg


def test_demo_tasks_names_the_warm_up_domains():
    cfg = apply_overrides(RunConfig(), ['model.demo_tasks=["up","down"]']).validate()
    assert cfg.model.demo_tasks == ("up", "down")
    with pytest.raises(ConfigError, match=r"model.demo_tasks: .*'upp'.*built-in"):
        apply_overrides(RunConfig(), ['model.demo_tasks=["upp"]']).validate()
