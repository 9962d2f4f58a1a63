"""copd.math.schedule: cycle and phase of every step, cycle ends, and who teaches whom."""

import pytest

from copd.math.schedule import is_cycle_end, position, teachers_of
from copd.spec import ScheduleConfig

# (rl_steps, opd_steps, cycles) -> per step: (cycle, phase, index, phase_start, phase_end,
# cycle_end). "r"/"o" abbreviate the phases "rl"/"opd".
SCHEDULES = {
    (2, 1, 2): [
        (0, "r", 0, True, False, False),
        (0, "r", 1, False, True, False),
        (0, "o", 0, True, True, True),
        (1, "r", 0, True, False, False),
        (1, "r", 1, False, True, False),
        (1, "o", 0, True, True, True),
    ],
    (1, 2, 2): [
        (0, "r", 0, True, True, False),
        (0, "o", 0, True, False, False),
        (0, "o", 1, False, True, True),
        (1, "r", 0, True, True, False),
        (1, "o", 0, True, False, False),
        (1, "o", 1, False, True, True),
    ],
    # RL only (validation allows opd_steps=0): every cycle still ends, on its last RL step.
    (3, 0, 2): [
        (0, "r", 0, True, False, False),
        (0, "r", 1, False, False, False),
        (0, "r", 2, False, True, True),
        (1, "r", 0, True, False, False),
        (1, "r", 1, False, False, False),
        (1, "r", 2, False, True, True),
    ],
    (1, 0, 3): [
        (0, "r", 0, True, True, True),
        (1, "r", 0, True, True, True),
        (2, "r", 0, True, True, True),
    ],
    # OPD only.
    (0, 2, 2): [
        (0, "o", 0, True, False, False),
        (0, "o", 1, False, True, True),
        (1, "o", 0, True, False, False),
        (1, "o", 1, False, True, True),
    ],
}


@pytest.mark.parametrize("rl,opd,cycles", list(SCHEDULES))
def test_position_of_every_step(rl, opd, cycles):
    sc = ScheduleConfig(cycles=cycles, rl_steps=rl, opd_steps=opd)
    expected = SCHEDULES[(rl, opd, cycles)]
    assert sc.total_steps() == len(expected)
    phases = {"r": "rl", "o": "opd"}
    for step, (cycle, phase, index, start, end, cyc_end) in enumerate(expected):
        p = position(step, sc)
        got = (p.cycle, p.phase, p.index, p.phase_start, p.phase_end, p.cycle_end)
        assert got == (cycle, phases[phase], index, start, end, cyc_end), f"step {step}"
        assert p.step == step
        assert is_cycle_end(step, sc) == cyc_end, f"step {step}"
    # one cycle end per cycle, whatever the split
    assert sum(position(s, sc).cycle_end for s in range(sc.total_steps())) == cycles


@pytest.mark.parametrize("step", [-1, 6])
def test_position_outside_the_schedule_is_refused(step):
    with pytest.raises(ValueError, match="outside the schedule"):
        position(step, ScheduleConfig(cycles=2, rl_steps=2, opd_steps=1))


NAMES = ("a", "b", "c")

# (kind, one_way) -> student -> teachers, for branches a, b, c with hub "a"
TEACHERS = {
    ("full", False): {"a": ["b", "c"], "b": ["a", "c"], "c": ["a", "b"]},
    ("hub", False): {"a": ["b", "c"], "b": ["a"], "c": ["a"]},
    ("full", True): {"a": [], "b": ["a"], "c": ["a"]},
    ("hub", True): {"a": [], "b": ["a"], "c": ["a"]},
}


@pytest.mark.parametrize("kind,one_way", list(TEACHERS))
def test_teachers_of(kind, one_way):
    for student, teachers in TEACHERS[(kind, one_way)].items():
        assert teachers_of(student, NAMES, kind, hub="a", one_way=one_way) == teachers


@pytest.mark.parametrize(
    "one_way,expected", [(False, {"a": ["b"], "b": ["a"]}), (True, {"a": [], "b": ["a"]})]
)
def test_teachers_of_pair(one_way, expected):
    for student, teachers in expected.items():
        assert teachers_of(student, ("a", "b"), "pair", hub="a", one_way=one_way) == teachers


def test_hub_other_than_first_branch():
    assert teachers_of("c", NAMES, "hub", hub="c") == ["a", "b"]
    assert teachers_of("a", NAMES, "hub", hub="c") == ["c"]


def test_unknown_topology_is_refused():
    with pytest.raises(ValueError, match="topology.kind 'ring'"):
        teachers_of("a", NAMES, "ring", hub="a")
