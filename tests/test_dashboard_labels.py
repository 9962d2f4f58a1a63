"""Tags, notes and search on the dashboard, through Streamlit's AppTest on a seeded store
(tests/seed.py): the Runs table shows tags and filters by tag and by a query (a bad query is
one error line, the table unfiltered); the Runs page edits tags and notes; the Live header
and the Compare report show them as text; the Launch page records them with the runs."""

from __future__ import annotations

import pytest

from app.dashboard.report import runs_html
from storage import RunStore
from tests.app_support import clear_caches, new_app, use_store
from tests.seed import seed_store

NOTES = "**bold** [link](http://evil.example) $x$\nsecond line"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('labels') / 'copd.db'}"
    ids = seed_store(url)
    store = RunStore.from_url(url)
    store.edit_tags(ids.finished, add=["ablation", "paper"])
    store.edit_tags(ids.crashed, add=["ablation"])
    store.update_run(
        ids.crashed, config={**store.get_run(ids.crashed).config, "opd": {"beta": 2.0}}
    )
    store.set_notes(ids.finished, NOTES)
    store.close()
    return url, ids


@pytest.fixture
def app(seeded, monkeypatch, tmp_path):
    url, ids = seeded
    use_store(monkeypatch, tmp_path, url)
    at = new_app()
    yield at, ids
    clear_caches()


def _runs_page(at):
    at.run()
    at.switch_page("../pages/runs.py").run()
    assert not at.exception
    return at


def _ids(at) -> list[int]:
    return [int(i) for i in at.dataframe[0].value["id"]]


def _query_errors(at) -> list[str]:
    """The query's error lines (a crashed run's header is an error too)."""
    shown = [e.value.replace("\\", "") for e in at.error]  # md_escape's backslashes off
    return [e for e in shown if e.startswith("query:")]


def test_runs_table_shows_tags_and_notes_as_text(app):
    at, ids = app
    df = _runs_page(at).dataframe[0].value
    row = df[df["id"] == ids.finished].iloc[0]
    assert row["tags"] == "ablation, paper"
    assert row["notes"] == "**bold** [link](http://evil.example) $x$ second line"  # one line


def test_runs_search_filters_and_a_bad_query_is_one_line(app):
    at, ids = app
    _runs_page(at)
    everything = _ids(at)
    at.text_input(key="runs:query").set_value('opd.beta >= 2 and "ablation" in tags').run()
    assert not at.exception and not _query_errors(at)
    assert _ids(at) == [ids.crashed]
    at.text_input(key="runs:query").set_value('"paper" in tags or status == "running"').run()
    assert sorted(_ids(at)) == sorted([ids.finished, ids.running])
    at.text_input(key="runs:query").set_value("opd.bta >= 1").run()
    assert not at.exception
    (err,) = _query_errors(at)
    assert err == "query: unknown field 'opd.bta' at column 1; did you mean 'opd.beta'?"
    assert _ids(at) == everything  # a bad query filters nothing
    at.text_input(key="runs:query").set_value("").run()
    at.multiselect(key="runs:tag_filter").set_value(["paper"]).run()
    assert _ids(at) == [ids.finished]


def test_runs_page_edits_tags_and_notes(app, seeded):
    at, ids = app
    rid = ids.group[0]  # a finished run of the seed group
    _runs_page(at)
    at.selectbox(key="runs:selected").set_value(rid).run()
    at.multiselect(key=f"runs:tags:{rid}").set_value(["paper", "nan-run"]).run()
    at.text_area(key=f"runs:notes:{rid}").set_value("loss went NaN at 20").run()
    at.button(key=f"runs:save_labels:{rid}").click().run()
    assert not at.exception and not at.error
    store = RunStore.from_url(seeded[0])
    run = store.get_run(rid)
    assert (run.tags, run.notes) == (("nan-run", "paper"), "loss went NaN at 20")
    at.multiselect(key=f"runs:tags:{rid}").set_value(["two words"]).run()
    at.button(key=f"runs:save_labels:{rid}").click().run()
    assert any("a space is not allowed" in e.value for e in at.error)
    assert store.get_run(rid).tags == ("nan-run", "paper")  # nothing saved
    store.edit_tags(rid, remove=["nan-run", "paper"])
    store.set_notes(rid, "")
    store.close()


def test_live_header_and_report_show_labels_as_text(app):
    at, ids = app
    at.run()
    at.switch_page("../pages/live.py").run()
    at.selectbox(key="live:run").set_value(ids.finished).run()
    assert not at.exception
    texts = [t.value for t in at.text]
    assert "tags: ablation, paper · notes: **bold** [link](http://evil.example) $x$ …" in texts
    assert not any("evil.example" in m.value for m in at.markdown)  # never as markdown


def test_compare_search_narrows_the_runs(app):
    at, ids = app
    at.run()
    at.switch_page("../pages/compare.py").run()
    at.text_input(key="compare:query").set_value('"ablation" in tags').run()
    assert not at.exception
    at.radio(key="compare:source").set_value("Pick runs").run()
    assert len(at.multiselect(key="compare:runs").options) == 2  # the two tagged runs
    at.text_input(key="compare:query").set_value("status ==").run()
    assert not at.exception
    assert _query_errors(at) == [
        "query: expected a field, a string or a number after '==' at column 10, got the end "
        "of the query"
    ]


def test_report_rows_carry_tags_and_escaped_notes(seeded):
    url, ids = seeded
    store = RunStore.from_url(url)
    html = runs_html([store.get_run(ids.finished)])
    store.close()
    assert "<td>ablation, paper</td>" in html
    assert "[link](http://evil.example)" in html and "<a " not in html


def test_launch_page_records_tags_and_notes_on_a_run_and_an_ablation_set(monkeypatch, tmp_path):
    from app.control.launcher import Launcher

    url = f"sqlite:///{tmp_path / 'launch.db'}"
    use_store(monkeypatch, tmp_path, url)
    monkeypatch.setattr(Launcher, "tick", lambda self: [])  # queue only: start no trainer
    at = new_app().run()
    at.switch_page("../pages/launch.py").run()
    at.text_input(key="launch:tags").set_value("bad tag!").run()
    assert any("'!' is not allowed" in e.value.replace("\\", "") for e in at.error)
    at.text_input(key="launch:tags").set_value("ablation, beta-sweep").run()
    at.text_area(key="launch:notes").set_value("first try").run()
    at.multiselect(key="ablation:presets").set_value(["demo"])
    at.text_input(key="ablation:seeds").set_value("0")
    at.text_input(key="ablation:group").set_value("g1")
    at.button(key="ablation:go").click().run()
    assert not at.exception
    (run,) = RunStore.from_url(url).list_runs(group="g1")
    assert (run.tags, run.notes) == (("ablation", "beta-sweep"), "first try")
    at.button(key="launch:go").click().run()  # the single run takes them too
    assert not at.exception
    single = RunStore.from_url(url).list_runs()[0]
    assert single.id != run.id and single.group is None
    assert (single.tags, single.notes) == (("ablation", "beta-sweep"), "first try")
    clear_caches()
