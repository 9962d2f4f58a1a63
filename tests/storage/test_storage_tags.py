"""Tags and notes in the run store: set with the run, edited later, validated by every writer,
deleted with the run, and searched by `list_runs(where=...)` (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest

from copd.common.query import QueryError
from copd.common.tags import MAX_TAGS, TagError
from storage import RunStore


def test_tags_and_notes_set_at_creation_come_back_sorted(any_store: RunStore):
    run = any_store.create_run("r", "copd", {}, tags=["zeta", "ablation", "zeta"], notes="a\nb")
    assert run.tags == ("ablation", "zeta") and run.notes == "a\nb"
    again = any_store.get_run(run.id)
    assert (again.tags, again.notes) == (("ablation", "zeta"), "a\nb")
    plain = any_store.create_run("p", "copd", {})
    assert (plain.tags, plain.notes) == ((), "")
    listed = {r.id: r.tags for r in any_store.list_runs()}
    assert listed == {run.id: ("ablation", "zeta"), plain.id: ()}


def test_an_invalid_tag_or_note_records_nothing(any_store: RunStore):
    with pytest.raises(TagError, match="a space is not allowed"):
        any_store.create_run("r", "copd", {}, tags=["two words"])
    with pytest.raises(TagError, match="control character"):
        any_store.create_run("r", "copd", {}, notes="bell\x07")
    assert any_store.list_runs() == []


def test_edit_tags_adds_and_removes_in_one_go(any_store: RunStore):
    run = any_store.create_run("r", "copd", {}, tags=["old", "keep"])
    after = any_store.edit_tags(run.id, add=["new", "keep"], remove=["old", "absent"])
    assert after.tags == ("keep", "new")
    assert any_store.edit_tags(run.id).tags == ("keep", "new")  # nothing asked, nothing done
    assert any_store.list_tags() == ["keep", "new"]
    with pytest.raises(TagError, match="start it with a letter or a digit"):
        any_store.edit_tags(run.id, add=["-x"], remove=["keep"])
    assert any_store.get_run(run.id).tags == ("keep", "new")  # the failed edit changed nothing
    with pytest.raises(KeyError, match="run 999 does not exist"):
        any_store.edit_tags(999, add=["x"])


def test_a_run_holds_at_most_max_tags(any_store: RunStore):
    run = any_store.create_run("r", "copd", {}, tags=[f"t{i}" for i in range(MAX_TAGS)])
    with pytest.raises(TagError, match=f"at most {MAX_TAGS}: remove some"):
        any_store.edit_tags(run.id, add=["one-more"])
    assert len(any_store.get_run(run.id).tags) == MAX_TAGS
    assert "one-more" in any_store.edit_tags(run.id, add=["one-more"], remove=["t0"]).tags


def test_notes_replace_append_and_refuse(any_store: RunStore):
    run = any_store.create_run("r", "copd", {})
    assert any_store.set_notes(run.id, "diverged at 300").notes == "diverged at 300"
    assert any_store.set_notes(run.id, "lr too high", append=True).notes == (
        "diverged at 300\nlr too high"
    )
    assert any_store.set_notes(run.id, "").notes == ""
    with pytest.raises(TagError, match="at most 10000"):
        any_store.set_notes(run.id, "x" * 10_001)
    assert any_store.get_run(run.id).notes == ""


def test_concurrent_tag_edits_all_land(any_store: RunStore):
    run = any_store.create_run("r", "copd", {})
    errors: list[BaseException] = []

    def tag(i: int) -> None:
        try:
            any_store.edit_tags(run.id, add=[f"t{i}", "shared"])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=tag, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert any_store.get_run(run.id).tags == ("shared", *sorted(f"t{i}" for i in range(8)))


def test_deleting_a_run_deletes_its_tags(any_store: RunStore):
    a = any_store.create_run("a", "copd", {}, tags=["x"])
    any_store.create_run("b", "copd", {}, tags=["y"])
    any_store.delete_run(a.id)
    assert any_store.list_tags() == ["y"]


def test_list_runs_where_filters_before_the_limit(any_store: RunStore):
    for beta in (0.5, 1.0, 2.0, 4.0):
        tags = ["ablation"] if beta >= 1 else []
        any_store.create_run(f"b{beta}", "copd", {"opd": {"beta": beta}}, tags=tags)
    any_store.create_run("m", "mixed", {"opd": {"beta": 8.0}})
    query = 'opd.beta >= 1 and method == "copd" and "ablation" in tags'
    assert [r.name for r in any_store.list_runs(where=query)] == ["b4.0", "b2.0", "b1.0"]
    assert [r.name for r in any_store.list_runs(where=query, limit=2)] == ["b4.0", "b2.0"]
    assert len(any_store.list_runs(where="  ")) == 5  # an empty query keeps every run
    with pytest.raises(QueryError, match="did you mean 'opd.beta'"):
        any_store.list_runs(where="opd.bta > 1")


def test_tags_of_many_runs_come_in_one_listing(store: RunStore):
    """Past 500 runs the tags are read through a subquery, not a long IN list."""
    with store.db.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO runs (id, name, method, status, config, seed, created_at, progress,"
            " requested_gpus, cpu_slots, notes) VALUES "
            + ", ".join(
                f"({i}, 'r{i}', 'copd', 'queued', '{{}}', 0, '2026-01-01 00:00:00', 0, 0, 1, '')"
                for i in range(1, 602)
            )
        )
        conn.exec_driver_sql("INSERT INTO run_tags (run_id, tag) VALUES (7, 'seven'), (600, 'x')")
    runs = store.list_runs()
    assert len(runs) == 601
    tagged = {r.id: r.tags for r in runs if r.tags}
    assert tagged == {7: ("seven",), 600: ("x",)}
    assert [r.id for r in store.list_runs(limit=2)] == [601, 600]
