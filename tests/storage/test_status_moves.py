"""One owner of a run's status: the table of legal moves in storage/entities.py and one
conditional UPDATE (`RunStore.move`) that claim, set_status and mark_running go through."""

from __future__ import annotations

import threading

import pytest

from storage import IllegalTransition, RunStatus, RunStore, allows
from storage.entities import MOVES, STATUSES, sources


def test_the_table_is_the_only_source_of_moves_and_actions():
    assert tuple(s.value for s in RunStatus) == STATUSES
    assert sources("running") == ("queued",)
    assert set(sources("queued")) == {"cancelled", "crashed", "failed"}
    assert MOVES[RunStatus.FINISHED] == ()
    assert allows("running", "cancel") and not allows("running", "delete")
    assert allows("crashed", "resume") and not allows("finished", "resume")


def test_move_is_conditional_and_one_of_many_concurrent_claims_wins(tmp_path):
    url = f"sqlite:///{tmp_path / 'copd.db'}"
    store = RunStore.from_url(url)
    run = store.create_run("r", "copd", {})
    assert not store.move(run.id, "finished")  # queued -> finished is not a move
    assert store.get_run(run.id).status == "queued"
    stores = [RunStore.from_url(url) for _ in range(6)]
    wins: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def claim(s: RunStore) -> None:
        barrier.wait()
        wins.append(s.claim(run.id, host="h"))

    threads = [threading.Thread(target=claim, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(wins) == [False] * 5 + [True]
    assert store.get_run(run.id).status == "running"
    with pytest.raises(IllegalTransition, match="from 'running' to 'queued'"):
        store.set_status(run.id, "queued")
    assert store.set_status(run.id, RunStatus.FINISHED).status == "finished"
    for s in [store, *stores]:
        s.close()


def test_stored_strings_read_back_as_the_enum_and_actions_come_from_the_table(tmp_path):
    """A status written as its plain string (as every store before the enum did) reads back
    as that RunStatus; the actions a status allows are the table's."""
    from sqlalchemy import text

    from storage.entities import allowed_actions

    store = RunStore.from_url(f"sqlite:///{tmp_path / 'copd.db'}")
    run = store.create_run("old", "copd", {})
    with store.db.session(write=True) as s:  # what an older writer left behind
        s.execute(text("UPDATE runs SET status = 'crashed' WHERE id = :id"), {"id": run.id})
    back = store.get_run(run.id)
    assert back.status is RunStatus.CRASHED and back.status == "crashed"
    assert [r.id for r in store.list_runs(status=RunStatus.CRASHED)] == [run.id]
    assert allowed_actions(back.status) == ("resume", "delete")
    assert allowed_actions(RunStatus.RUNNING) == ("cancel",)
    assert allowed_actions(RunStatus.FINISHED) == ("delete",)
    assert store.set_status(run.id, RunStatus.QUEUED).status is RunStatus.QUEUED
    store.close()
