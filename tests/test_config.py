import pytest

from copd.config import ConfigError, RunConfig, apply_overrides, config_diff


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
