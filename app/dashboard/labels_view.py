"""Tags, notes and search on the dashboard (Streamlit): the query box of the Runs and Compare
pages, the Runs page's tags-and-notes editor, and the one-line summary the Live header shows.

    runs = search_box(runs, key="runs:query")     # the runs a query keeps (all on an error)
    tags_notes_editor(run)                         # edit a run's tags and notes, Save writes
    line = labels_line(run)                        # "tags: a, b · notes: first line"

The query language is copd/common/query.py (`opd.beta >= 1 and "ablation" in tags`); a bad
query shows one line naming the problem and leaves the runs unfiltered. Tags and notes are
user text: they are shown with st.text, in dataframe cells or md_escape'd, never as
markdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import streamlit as st

from app.dashboard.text import md_escape
from app.dashboard.widgets import get_store, invalidate
from copd.common.query import QueryError
from copd.common.tags import TagError, check_notes, check_tags

if TYPE_CHECKING:
    from storage import Run

QUERY_HELP = (
    "Fields: id, name, status, method, group, tags, notes, seed and any config field "
    '(opd.beta, schedule.cycles, branches.task). Operators: == != < <= > >= in, "not in", '
    'and, or, not, parentheses; strings in quotes. E.g. opd.beta >= 1 and "ablation" in tags'
)


def search_box(runs: list[Run], key: str) -> list[Run]:
    """A query text input above a run list; the runs it keeps. A bad query gets one error
    line (the message names the problem) and keeps every run."""
    from storage.search import filter_runs

    query = st.text_input(
        "Search", key=key, help=QUERY_HELP,
        placeholder='e.g. opd.beta >= 1 and method == "copd" and "ablation" in tags',
    )  # fmt: skip
    if not query or not query.strip():
        return runs
    try:
        return filter_runs(runs, query)
    except QueryError as e:
        st.error(md_escape(e))
        return runs


def labels_line(run: Run) -> str:
    """`tags: a, b · notes: the first line …` (empty when the run has neither)."""
    parts = []
    if run.tags:
        parts.append("tags: " + ", ".join(run.tags))
    if run.notes.strip():
        first, _, rest = run.notes.strip().partition("\n")
        parts.append("notes: " + first + (" …" if rest else ""))
    return " · ".join(parts)


def tags_notes_editor(run: Run, all_tags: list[str]) -> None:
    """The selected run's tags (pick known ones or type new ones) and notes; Save writes the
    changes (only the tags added or removed here, so another edit meanwhile is kept)."""
    left, right = st.columns([2, 3])
    picked = left.multiselect(
        "Tags", sorted(set(all_tags) | set(run.tags)), default=list(run.tags),
        key=f"runs:tags:{run.id}", accept_new_options=True,
        help="pick a tag or type a new one: letters, digits and _ - . : / = + @",
    )  # fmt: skip
    notes = right.text_area(
        "Notes", value=run.notes, key=f"runs:notes:{run.id}", height=80,
        help="free text, shown as typed",
    )  # fmt: skip
    changed = set(picked) != set(run.tags) or notes != run.notes
    if not st.button("Save tags and notes", key=f"runs:save_labels:{run.id}", disabled=not changed):
        return
    try:
        wanted, notes = check_tags(picked), check_notes(notes)  # both before either is written
        store = get_store()
        store.edit_tags(
            run.id, add=[t for t in wanted if t not in run.tags],
            remove=[t for t in run.tags if t not in wanted],
        )  # fmt: skip
        if notes != run.notes:
            store.set_notes(run.id, notes)
    except (TagError, KeyError) as e:
        st.error(md_escape(e.args[0] if e.args else e))
        return
    invalidate()
    st.rerun(scope="app")
