"""The run query language (copd/common/query.py) and the tag rules (copd/common/tags.py):
parsing, precedence, types, missing fields, errors with their column and fix; no eval."""

from __future__ import annotations

import pytest

from copd.common.query import (
    MISSING,
    Compare,
    Field,
    Literal,
    Logic,
    QueryError,
    compile_query,
    flatten,
    lookup,
    parse,
    search,
    tokenize,
)
from copd.common.tags import MAX_TAG_CHARS, TagError, check_notes, check_tag, split_tags

RUNS = [
    {"id": 1, "name": "copd-b1", "status": "finished", "method": "copd", "group": "abl",
     "tags": ["ablation", "paper"], "notes": "diverged late", "seed": 0, "opd.beta": 1.0,
     "schedule.cycles": 8, "eval.validation": True, "branches.task": ["add", "rev"]},
    {"id": 2, "name": "copd-b05", "status": "crashed", "method": "copd", "group": "abl",
     "tags": ["ablation"], "notes": "", "seed": 1, "opd.beta": 0.5, "schedule.cycles": 4,
     "eval.validation": False, "branches.task": ["add"]},
    {"id": 3, "name": "mixed", "status": "running", "method": "mixed", "group": None,
     "tags": [], "notes": "", "seed": 0, "opd.beta": 2, "schedule.cycles": 8,
     "eval.validation": True, "branches.task": ["add", "rev"]},
    {"id": 4, "name": "old", "status": "finished", "method": "expert", "group": None,
     "tags": [], "notes": "", "seed": 0},  # an older config: no opd, schedule or eval fields
]  # fmt: skip


def ids(text: str) -> list[int]:
    return [RUNS[i]["id"] for i in search(RUNS, text)]


# ---------------------------------------------------------------------- parsing
def test_the_issue_example():
    assert ids('opd.beta >= 1 and method == "copd" and "ablation" in tags') == [1]


def test_precedence_not_over_and_over_or():
    # a or b and c == a or (b and c)
    tree = parse("id == 1 or id == 2 and seed == 0")
    assert isinstance(tree, Logic) and tree.op == "or"
    assert isinstance(tree.right, Logic) and tree.right.op == "and"
    assert ids("id == 1 or id == 2 and seed == 0") == [1]
    assert ids("(id == 1 or id == 2) and seed == 0") == [1]
    assert ids("(id == 1 or id == 2) and seed == 1") == [2]
    # not binds looser than a comparison, tighter than and
    assert ids('not method == "copd" and seed == 0') == [3, 4]
    assert ids('not (method == "copd" and seed == 0)') == [2, 3, 4]
    assert ids("not not eval.validation") == [1, 3]


def test_tree_shape_and_columns():
    tree = parse("opd.beta >= 1")
    assert tree == Compare(">=", Field("opd.beta", 1), Literal(1, 13), 10)
    kinds = [t.kind for t in tokenize("a.b != 'x' AND [1, -2.5e1]")]
    assert kinds == ["name", "op", "string", "keyword", "[", "number", ",", "-", "number",
                     "]", "end"]  # fmt: skip


def test_literals_and_keywords_are_case_insensitive():
    assert ids("eval.validation == TRUE AND group == NULL") == [3]
    assert ids("eval.validation == True or eval.validation == None") == [1, 3, 4]
    assert ids("opd.beta == 2.0") == [3]  # ints and floats are one kind
    assert ids("opd.beta > -1 and opd.beta < .75") == [2]
    assert ids("schedule.cycles == 8 and opd.beta != 1e0") == [3]
    assert ids(r'name == "mix\x65d" or notes == "diverged late"') == [1]  # escapes kept literal
    assert ids("name == 'mixed'") == [3]


# ---------------------------------------------------------------------- semantics
def test_in_is_membership_in_lists_and_substring_in_text():
    assert ids('"add" in branches.task and not "rev" in branches.task') == [2]
    assert ids('"paper" not in tags and "ablation" in tags') == [2]
    assert ids('status in ["crashed", "running"]') == [2, 3]
    assert ids("seed in [1, 2]") == [2]
    assert ids('"copd" in name') == [1, 2]
    assert ids('"late" in notes') == [1]


def test_a_missing_field_fails_every_comparison_but_not_equal():
    assert ids("opd.beta >= 0") == [1, 2, 3]  # run 4 has no opd.beta
    assert ids("opd.beta != 1") == [2, 3, 4]
    assert ids("opd.beta == null") == [4]
    assert ids("group == null") == [3, 4] and ids("group != null") == [1, 2]


def test_ordering_of_text_and_an_empty_query():
    assert ids('status < "g"') == [1, 2, 4]  # crashed, finished < g < running
    assert ids("") == ids("   ") == [1, 2, 3, 4]


def test_a_compiled_query_runs_on_any_record():
    query = compile_query("seed > 0", RUNS)
    assert query({"seed": 3}) and not query({"seed": 0}) and not query({})
    assert compile_query("nothing.here > 1", []).node is not None  # no runs: syntax only


def test_lookup_reads_one_field_as_flatten_would():
    from copd.spec import RunConfig

    cfg = RunConfig().to_dict()
    flat = flatten(cfg)
    assert len(flat) > 80
    assert all(lookup(cfg, k) == v for k, v in flat.items())
    assert lookup(cfg, "branches.task") == ["add", "rev"]
    for absent in ("opd", "opd.nope", "opd.beta.x", "branches.nope", "nope"):
        assert lookup(cfg, absent) is MISSING


def test_flatten_keeps_lists_and_spreads_a_list_of_mappings():
    cfg = {"opd": {"beta": 1.0}, "task_options": {}, "diagnostics": {"extra_k": [1, 5]},
           "branches": [{"name": "a", "task": "add"}, {"name": "b", "task": "rev"}]}  # fmt: skip
    flat = flatten(cfg)
    assert flat["opd.beta"] == 1.0 and flat["task_options"] == {}
    assert flat["diagnostics.extra_k"] == [1, 5]
    assert flat["branches.task"] == ["add", "rev"] and flat["branches.name"] == ["a", "b"]


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("opd.bta > 1", "unknown field 'opd.bta' at column 1; did you mean 'opd.beta'?"),
        ("cycles > 1", "unknown field 'cycles' at column 1; did you mean 'schedule.cycles'?"),
        ("zzz == 1", "unknown field 'zzz' at column 1; see a run's config for the field names"),
        (
            "opd.beta >=",
            "expected a field, a string or a number after '>=' at column 12, got "
            "the end of the query",
        ),  # fmt: skip
        ("seed == 1 and", "expected a field, a string or a number at column 14"),
        ("(seed == 1", "'(' at column 1 is never closed: add ')' at the end"),
        ("seed == 1)", "')' at column 10 has no matching '('"),
        ("1 < seed < 3", "comparisons do not chain ('<' at column 10): write a < x and x < b"),
        ("seed = 1", "'=' at column 6 is not part of the query language: write '==' to compare"),
        (
            "seed == 1 && id == 2",
            "'&&' at column 11 is not part of the query language: write 'and'",
        ),
        ("seed <> 1", "'<>' at column 6: write '!='"),
        ('name == "open', 'the string opened at column 9 is never closed: end it with "'),
        ("seed == 1 id == 2", "unexpected 'id' at column 11: join conditions with and / or"),
        ("[seed] == [1]", "a list holds strings and numbers only ('seed' at column 2)"),
        ("seed == [1 2]", "needs ',' between items or ']' to close it (found '2' at column 12)"),
    ],
)
def test_syntax_and_field_errors_name_the_problem_and_the_column(text, message):
    with pytest.raises(QueryError) as exc:
        search(RUNS, text)
    assert str(exc.value).startswith("query: ") and message in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'opd.beta > "1"',
            "'opd.beta' holds numbers but \"1\" is a string; compare like with "
            "like (write 1, without quotes)",
        ),  # fmt: skip
        (
            "method == 1",
            "'method' holds strings but 1 is a number; compare like with like "
            '(write "1", in quotes)',
        ),  # fmt: skip
        ("eval.validation == 1", "'eval.validation' holds booleans but 1 is a number"),
        ("opd.beta <= true", "orders numbers or text, and true is a boolean"),
        ("tags < 1", "orders numbers or text, and 'tags' holds lists"),
        ("group > null", "null has no order; compare with == null or != null"),
        ('"x" in opd.beta', "the right side must be a list or text, and 'opd.beta' holds numbers"),
        ("1 in name", "only text is found inside text; quote the left side"),
        ("method", "'method' at column 1 is not a condition: compare it"),
        ("tags", 'is not a condition: write "x" in tags'),
        ('"ablation"', 'not a condition: write "ablation" in tags, or name == "ablation"'),
        ("seed == 1 and opd.beta", "'opd.beta' at column 15 is not a condition"),
    ],
)
def test_type_errors_are_caught_before_evaluation(text, message):
    with pytest.raises(QueryError, match="^query: ") as exc:
        search(RUNS, text)
    assert message in str(exc.value)


def test_no_python_is_ever_evaluated():
    for text in ("__import__('os').system('true')", "seed.__class__ == 1", "open('x')",
                 "lambda: 1", "seed if 1 else 2", "[x for x in tags]"):  # fmt: skip
        with pytest.raises(QueryError):
            search(RUNS, text)


# ---------------------------------------------------------------------- tags and notes
def test_tags_charset_length_and_control_characters():
    assert check_tag("beta=0.5") == "beta=0.5" and check_tag("v2/run:a+b@x") == "v2/run:a+b@x"
    assert split_tags(" ablation, beta-sweep  paper,ablation ") == ("ablation", "beta-sweep",
                                                                     "paper")  # fmt: skip
    for bad, why in [
        ("", "empty"),
        ("-x", "start it with a letter or a digit"),
        ("two words", "a space is not allowed"),
        ("a*b", "'*' is not allowed"),
        ("é", "start it with a letter or a digit"),
        ("tab\there", "control character '\\t'"),
        ("x" * (MAX_TAG_CHARS + 1), f"shorten it to at most {MAX_TAG_CHARS}"),
    ]:
        with pytest.raises(TagError, match="^tag ") as exc:
            check_tag(bad)
        assert why in str(exc.value)
    assert check_notes("two\nlines\twith a tab") == "two\nlines\twith a tab"
    with pytest.raises(TagError, match="control character"):
        check_notes("escape \x1b[31m")


HOSTILE = {
    "nested parentheses": ("(" * 300 + "id == 1" + ")" * 300, "nested more than 32 deep"),
    "nested nots": ("not " * 300 + "id == 1", "nested more than 32 deep"),
    "an or chain": (" or ".join(f"id == {i}" for i in range(1000)), "characters long"),
    "a shorter or chain": (" or ".join(f"id=={i}" for i in range(100)), "more than 64 conditions"),
    "a long number": ("id == 1" + "0" * 5000, "characters long"),
    "a 60-digit number": ("id == 1" + "0" * 60, "the number at column 7 is 61 characters"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_queries_are_one_line_in_the_cli(name, tmp_path, capsys):
    """Before: RecursionError (300 parentheses, 1,000 `or`s) or ValueError (5,000 zeros),
    a traceback in the CLI and an exception box on the Runs page."""
    from copd import cli

    text, message = HOSTILE[name]
    with pytest.raises(QueryError, match=message):
        compile_query(text, [])
    db = f"sqlite:///{tmp_path / 'copd.db'}"
    assert cli.main(["runs", "--db", db, "--where", text]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_queries_within_the_limits_still_parse():
    records = [{"id": 1}]
    ok = " or ".join(f"id == {i}" for i in range(64))
    assert compile_query(ok, records)({"id": 63}) is True
    assert compile_query("(" * 32 + "id == 1" + ")" * 32, records)({"id": 1}) is True
    assert compile_query("id == 1" + "0" * 30, records)({"id": 10**30}) is True
