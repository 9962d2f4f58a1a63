"""Recorded completions in the store: round trip, the per-run cap, resume truncation, and
the StoreLogger path (off the training thread)."""

from __future__ import annotations

import math

from storage import RunStore, Sample
from storage.logger import StoreLogger
from storage.samples import thinned


def _sample(step: int, branch: str = "add", prompt_index: int = 0, gap: float = 0.5) -> Sample:
    return Sample(
        step=step, kind="probe", branch=branch, domain="add", prompt_index=prompt_index,
        prompt="12+3=", completion="15", reward=1.0, correct=True, tokens=["1", "5", "</s>"],
        logp=[-0.1, None, -2.0],
        peers={"rev": {"logp": [-0.3, -1.0, -2.5], "in_topk": [True, False, True]}},
        disagreement=gap, overlap=0.8,
    )  # fmt: skip


def test_round_trip_and_order(any_store: RunStore):
    run = any_store.create_run("r", "copd", {})
    any_store.log_samples(
        run.id,
        [_sample(4, gap=0.1), _sample(4, "rev", 1, 0.9), _sample(2), _sample(4, gap=math.nan)],
    )
    got = any_store.samples(run.id, step=4)
    assert [s.disagreement for s in got][:2] == [0.9, 0.1]  # most divergent first
    assert math.isnan(got[-1].disagreement)  # NaN kept as "unknown", sorted last
    s = got[0]
    assert (s.branch, s.prompt_index, s.tokens, s.logp) == ("rev", 1, ["1", "5", "</s>"],
                                                            [-0.1, None, -2.0])  # fmt: skip
    assert s.peers["rev"]["in_topk"] == [True, False, True]
    assert any_store.sample_steps(run.id) == [(2, "probe"), (4, "probe")]
    hist = any_store.sample_history([run.id], "add", 0)
    assert [h.step for h in hist] == [2, 4, 4]


def test_thinning_keeps_an_even_stride_and_the_newest():
    rows = {s: 10 for s in range(0, 100, 10)}  # 10 steps x 10 rows
    assert thinned(rows, cap=100) == []
    assert thinned(rows, cap=60) == [10, 30, 50, 70]  # stride 20, and the newest (90)
    assert thinned(rows, cap=40) == [10, 20, 30, 50, 60, 70]  # stride 40: 0, 40, 80 + 90
    assert thinned({5: 500}, cap=100) == []  # one step over the cap stays whole


def test_cap_holds_on_a_long_run(store: RunStore):
    """1,000 recorded steps x 16 samples against a cap of 500: never more than the cap,
    the first and the newest step kept, the kept steps spread over the whole run."""
    run = store.create_run("long", "copd", {})
    for step in range(0, 10_000, 10):
        store.log_samples(run.id, [_sample(step, prompt_index=i) for i in range(16)], cap=500)
        assert store.sample_count(run.id) <= 500
    kept = sorted({s for s, _ in store.sample_steps(run.id)})
    assert kept[0] == 0 and kept[-1] == 9_990
    assert len(kept) >= 500 // 16 // 2
    gaps = [b - a for a, b in zip(kept, kept[1:], strict=False)]
    assert max(gaps) <= 4 * (9_990 / len(kept))  # evenly thinned, no hole


def test_truncate_after_removes_later_samples(store: RunStore):
    run = store.create_run("r", "copd", {})
    store.log_samples(run.id, [_sample(s) for s in (0, 5, 10)])
    counts = store.truncate_after(run.id, 5)
    assert counts["samples"] == 1
    assert [s for s, _ in store.sample_steps(run.id)] == [0, 5]


def test_store_logger_writes_samples_in_its_thread(store: RunStore):
    run = store.create_run("r", "copd", {})
    lg = StoreLogger(store, run.id, flush_every_s=0.05, samples_cap=1000)
    row = {k: v for k, v in _sample(0).__dict__.items()
           if k not in ("step", "cycle", "phase", "wall_time", "run_id")}  # fmt: skip
    lg.log_samples([row, {**row, "branch": "rev"}], step=3, cycle=1, phase="opd")
    lg.close()
    got = store.samples(run.id)
    assert {(s.step, s.cycle, s.phase, s.branch) for s in got} == {
        (3, 1, "opd", "add"),
        (3, 1, "opd", "rev"),
    }
    store.delete_run(run.id)  # ON DELETE CASCADE takes the samples with the run
    assert store.sample_count(run.id) == 0
