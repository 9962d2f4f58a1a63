"""Live run view: one run's overlap, KL, rewards, evaluations, timing and system metrics,
with its group overlaid (CoPD vs independent experts), refreshing by itself (pausable)
while a run of the view is active; or its Samples tab. Links: `live?run=ID`,
`live?run=ID&tab=samples`."""

import streamlit as st

from app.dashboard.links import absent_run, default_live_run, url_run_id
from app.dashboard.live_view import draw_run, live_signature
from app.dashboard.samples_view import draw_samples
from app.dashboard.text import md_escape
from app.dashboard.widgets import (
    cached_runs,
    db_url,
    empty_state,
    get_store,
    invalidate,
    run_label,
)

st.title(":material/monitoring: Live run view")
url = db_url()
runs = cached_runs(url)
if not runs:
    empty_state("No runs yet: launch the demo, then watch it here.", key="live")
    st.stop()

by_id = {r.id: r for r in runs}
ids = list(by_id)
own = "live_run" in st.session_state or "live:run" in st.session_state  # not a link's
absent = None if own else absent_run(st.query_params.get("run"), ids)
if absent:  # a link to a run this store lacks: say so, show no other run in its place
    st.warning(md_escape(absent))
    st.stop()
# The run: asked for elsewhere (Launch/Runs/Home), else the link's `?run=ID`, else the one
# already picked, else the newest running CoPD run (links.default_live_run). The picker writes the link back.
wanted = st.session_state.pop("live_run", None)
linked = url_run_id(st.query_params.get("run"))
if wanted in by_id:
    st.session_state["live:run"] = wanted
elif linked in by_id:
    st.session_state["live:run"] = linked
elif st.session_state.get("live:run") not in by_id:
    st.session_state["live:run"] = default_live_run(runs)


def _write_link() -> None:
    st.query_params["run"] = str(st.session_state["live:run"])


run_id = st.selectbox(
    "Run", ids, format_func=lambda i: run_label(by_id[i]), key="live:run", on_change=_write_link
)
st.query_params["run"] = str(run_id)  # a bookmarkable, shareable link to this view

c1, c2, c3, c4, c5 = st.columns([1, 1, 2, 1, 1])
live = c1.toggle("Auto-refresh", value=True, key="live:auto", help="pause to inspect a chart")
every = c2.selectbox("every (s)", [2, 5, 10, 30], index=1, key="live:every")
smoothing = c3.select_slider(
    "Smoothing (EMA)",
    ["auto", 0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99],
    value="auto",
    key="live:smooth",
    help="auto: rewards and the signal share smoothed (0.6), the raw line faint behind; "
    "diagnostics drawn as measured. A number: that weight on every chart.",
)
x = c4.radio("x axis", ["step", "time"], horizontal=True, key="live:x")
fmt = c5.selectbox("image", ["png", "svg"], key="live:fmt", help="format of the 📷 button")
max_points = 500

shown = [
    r for r in runs if r.id == run_id or (by_id[run_id].group and r.group == by_id[run_id].group)
]
active = any(not r.is_terminal for r in shown)  # the run or its group: queued or running
# until a run's first rows are in (progress 0), look twice a second (a look is a few index
# reads): the first chart appears as soon as the trainer writes it, not `every` s later
waiting = active and by_id[run_id].progress == 0
run_every = (0.5 if waiting else every) if (live and active) else None


# Charts (refreshing by themselves) or Samples (what the branches generated, token by
# token); `&tab=samples` in a link opens the second.
TABS = {"charts": "Charts", "samples": "Samples"}
if "live:tab" not in st.session_state:
    asked = st.query_params.get("tab", "charts")
    st.session_state["live:tab"] = asked if asked in TABS else "charts"
tab = st.radio("View", list(TABS), format_func=TABS.get, horizontal=True, key="live:tab")
st.query_params["tab"] = tab
if tab == "samples":
    draw_samples(by_id[run_id], url)
    st.stop()


def charts() -> None:
    run = get_store().get_run(run_id)  # fresh status/progress on every run
    if run.status != by_id[run_id].status:  # the picker and the refresh switch follow it
        invalidate()
        st.rerun(scope="app")
    # what this draw shows, taken before reading it: a write after this reruns the page
    st.session_state["live:seen"] = live_signature(run, url)
    draw_run(run, url, smoothing=smoothing, x=x, max_points=max_points, fmt=fmt)


@st.fragment(run_every=run_every)
def watch() -> None:
    """Every `every` seconds while a run of the view is active: the page reruns only when
    what it draws has changed (the run's status, progress or error, the data signature of
    it and its group: a few index reads). A tick with nothing new touches no chart, so
    nothing fades; a rerun rebuilds only the figures whose data moved (live_view.memo)."""
    if live_signature(get_store().get_run(run_id), url) != st.session_state.get("live:seen"):
        st.rerun(scope="app")


charts()
if run_every:
    watch()
if not active:
    st.caption("No run of this view is active: auto-refresh is off.")
