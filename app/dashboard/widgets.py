"""Streamlit glue shared by the pages: cached store/launcher/supervisor, cached queries,
run pickers and empty states. The only app module that imports Streamlit.

    store = get_store()                 # one RunStore per DB URL per process
    launcher = get_launcher()           # the background supervisor's launcher
    runs = cached_runs(db_url())        # st.cache_data(ttl=2): shared by every open tab

The DB URL is $COPD_DB_URL (set by `copd dashboard --db`), else the store's default.
Set COPD_SUPERVISE=0 to run the dashboard without the background supervisor thread, and
COPD_TRAINER to replace the trainer command (`python -m copd train`; the browser tests run
tests/fake_trainer.py this way).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
import streamlit as st

from app.control.serve import TOKEN_ENV, TRUST_ENV

if TYPE_CHECKING:
    from app.control.gpus import GPU
    from app.control.launcher import Launcher
    from app.control.supervisor import Supervisor
    from storage import Event, Run, RunStore

T = TypeVar("T")
PAGES_DIR = Path(__file__).resolve().parents[2] / "pages"
QUERY_TTL_S = 2.0


def page_path(name: str) -> str:
    """Absolute path of a page script, for st.switch_page / st.page_link."""
    return str(PAGES_DIR / f"{name}.py")


def db_url() -> str:
    from storage import default_db_url

    return os.environ.get("COPD_DB_URL") or default_db_url()


def runs_root() -> Path:
    from app.control.launcher import default_runs_root

    return default_runs_root()


@st.cache_resource(show_spinner=False)
def _store(url: str) -> RunStore:
    from storage import RunStore

    return RunStore.from_url(url)


def get_store() -> RunStore:
    return _store(db_url())


def _stop_supervisor(sup: Supervisor | None) -> None:
    if sup is not None:
        sup.stop()


@st.cache_resource(show_spinner=False, on_release=_stop_supervisor)
def _supervisor(url: str, root: str) -> Supervisor | None:
    """ONE background thread per dashboard process that ticks the launcher (starts queued
    runs, marks dead ones crashed). Stopped when the cache entry is released."""
    if os.environ.get("COPD_SUPERVISE", "1") == "0":
        return None
    from app.control.supervisor import start_supervisor

    return start_supervisor(_store(url), root, **_supervisor_options())


def _launcher_options() -> dict[str, Any]:
    """$COPD_TRAINER (a command line) replaces the trainer command; under `copd dashboard`
    ($COPD_WAKE_SUPERVISOR) the pages wake its supervisor process to start what they queue."""
    from app.control.serve import DEFER_ENV

    trainer = os.environ.get("COPD_TRAINER")
    options: dict[str, Any] = {"trainer_argv": shlex.split(trainer)} if trainer else {}
    return {**options, "defer_starts": os.environ.get(DEFER_ENV) == "1"}


def _supervisor_options() -> dict[str, Any]:
    """The supervisor's launcher keeps a warm trainer for the next CPU run, unless
    $COPD_STANDBY=0 (app/control/launch_standby.py); it ticks itself (it is the supervisor)."""
    standby = os.environ.get("COPD_STANDBY", "1") != "0"
    return {**_launcher_options(), "standby": standby, "defer_starts": False}


@st.cache_resource(show_spinner=False)
def _plain_launcher(url: str, root: str) -> Launcher:
    from app.control.launcher import Launcher

    return Launcher(_store(url), root, **_launcher_options())


def get_launcher() -> Launcher:
    """The supervisor's launcher (so its children are reaped), or a plain one without it."""
    url, root = db_url(), str(runs_root())
    sup = _supervisor(url, root)
    return sup.launcher if sup is not None else _plain_launcher(url, root)


def ensure_supervisor() -> Supervisor | None:
    return _supervisor(db_url(), str(runs_root()))


# ---------------------------------------------------------------------- cached queries
@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def cached_runs(url: str) -> list[Run]:
    return _store(url).list_runs()


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def cached_runs_frame(url: str) -> pd.DataFrame:
    from app.dashboard.queries import runs_frame

    return runs_frame(_store(url))


# `version` (RunStore.data_version of the runs, or ()) is part of each cache key: a read
# made for a newer version of the data never returns a result cached before it.
@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def cached_series(
    url: str, run_ids: tuple[int, ...], keys: tuple[str, ...], max_points: int, version=()
):
    return _store(url).metric_series(list(run_ids), list(keys), max_points=max_points)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def cached_keys(url: str, run_ids: tuple[int, ...], version=()) -> list[str]:
    return _store(url).metric_keys(list(run_ids))


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def cached_evals(url: str, run_ids: tuple[int, ...], version=()) -> pd.DataFrame:
    return _store(url).evaluations(list(run_ids))


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def cached_alert_counts(url: str) -> dict[int, int]:
    from app.control.alerts import alert_counts

    store = _store(url)
    return alert_counts(store, store.list_runs())


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def cached_alerts(url: str, run_id: int, version=()) -> list[Event]:
    from app.control.alerts import alert_events

    return alert_events(_store(url), run_id)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def cached_gpus() -> list[GPU]:
    from app.control.gpus import detect_gpus

    return detect_gpus()


def data_version(url: str, run_ids: tuple[int, ...]) -> tuple:
    """The runs' data signature (RunStore.data_version), read afresh: a few index reads."""
    return _store(url).data_version(list(run_ids))


def group_run_ids(url: str, group: str | None) -> list[int]:
    """The ids of a group's runs, read afresh (an indexed read); none without a group."""
    return [] if not group else [r.id for r in _store(url).list_runs(group=group)]


MEMO_KEY, BUILDS_KEY, MEMO_SIZE = "copd:memo", "copd:builds", 96


def memo(name: str, sig: Any, build: Callable[[], T]) -> T:
    """What `build()` returned for `sig` in this browser session, built again only when
    `sig` changes: a Live view refresh whose data signature is unchanged reads nothing and
    builds no figure. Builds are counted per name in st.session_state[BUILDS_KEY]; the
    MEMO_SIZE most recently built names are kept."""
    cache: dict[str, tuple[Any, Any]] = st.session_state.setdefault(MEMO_KEY, {})
    hit = cache.get(name)
    if hit is not None and hit[0] == sig:
        return hit[1]
    value = build()
    cache.pop(name, None)
    cache[name] = (sig, value)
    while len(cache) > MEMO_SIZE:
        cache.pop(next(iter(cache)))
    builds: dict[str, int] = st.session_state.setdefault(BUILDS_KEY, {})
    builds[name] = builds.get(name, 0) + 1
    return value


def invalidate() -> None:
    """Drop cached query results after this session changed something."""
    for fn in (
        cached_runs,
        cached_runs_frame,
        cached_series,
        cached_keys,
        cached_evals,
        cached_alert_counts,
        cached_alerts,
    ):
        fn.clear()


# ---------------------------------------------------------------------- access token


def require_token() -> None:
    """Stop the script unless this browser session showed the dashboard's token (when it
    has one): `?token=...`, kept in the address on every page, so a reload (a new session)
    still carries it."""
    import hmac

    token = os.environ.get(TOKEN_ENV)
    if not token:
        return
    if st.session_state.get("copd:token_ok"):
        if st.query_params.get("token") != token:
            st.query_params["token"] = token  # back in the address a link or a page dropped
        return
    given = st.query_params.get("token")
    if given and hmac.compare_digest(given.encode(), token.encode()):
        st.session_state["copd:token_ok"] = True
        return
    st.error(
        "This dashboard needs its access token: open the address `copd dashboard` printed "
        "(it ends in ?token=...)."
    )
    st.stop()


# ---------------------------------------------------------------------- custom task code


def trusts_task_code() -> bool:
    """Whether this dashboard was started with `--trust-task-code`."""
    return os.environ.get(TRUST_ENV) == "1"


def task_trust(cfg: Any) -> tuple[Any, str | None]:
    """The browser's rule for `module:factory` tasks (they run code the form names): refused
    unless the dashboard was started with `--trust-task-code`, and then recorded on the run
    as trust_task_code=true. Returns (the config to submit, the refusal or None)."""
    from dataclasses import replace

    from copd.tasks import needs_trust

    custom = [b.task for b in cfg.branches if needs_trust(b.task)]
    if trusts_task_code():
        return (replace(cfg, trust_task_code=True) if custom else cfg), None
    if custom or cfg.trust_task_code:
        what = f"task {custom[0]!r} is a custom factory" if custom else "trust_task_code is set"
        return cfg, (
            f"{what}: the dashboard runs no code named by a form unless it was started with "
            "`copd dashboard --trust-task-code`"
        )
    return cfg, None


# ---------------------------------------------------------------------- small widgets
def run_label(run: Run) -> str:
    """A run picker's label: id, name, method; never the status. The browser keeps the
    label it showed for the selected option, so a status in it stays "running" after the
    run has finished; pages show the status beside the picker instead."""
    return f"#{run.id} {run.name} · {run.method}"


def empty_state(message: str, *, button: str = "Launch the demo", key: str = "empty") -> None:
    """A friendly 'nothing here yet' with the next step as a button that launches the demo
    group and opens it on the Live view."""
    st.info(message)
    if st.button(button, key=f"{key}:launch", type="primary", icon=":material/rocket_launch:"):
        launch_demo_and_watch()


def launch_demo_and_watch() -> None:
    """One click: queue the demo CoPD run and the independent experts (one group, same
    seed), start the first, and open the Live view on it (`?run=ID`)."""
    from app.control.demo import launch_demo

    # said at once (the click's rerun reaches here in a fraction of a second); the check
    # and queueing below take about a second more, then the Live view opens
    st.info(
        "Queuing the demo: CoPD and the independent experts (one group, same seed); "
        "checking the config, then opening the Live view…",
        icon=":material/hourglass_top:",
    )
    launcher = get_launcher()
    runs = launch_demo(launcher.store, launcher)
    invalidate()
    st.session_state["live_run"] = runs[0].id
    st.switch_page(page_path("live"), query_params={"run": str(runs[0].id)})


def gpu_summary() -> str:
    gpus = cached_gpus()
    if not gpus:
        return "CPU only (no CUDA GPU found)"
    return " · ".join(
        f"GPU {g.index} {g.name}: {g.free_mb / 1024:.1f}/{g.total_mb / 1024:.1f} GiB free"
        for g in gpus
    )


def csv_button(df: pd.DataFrame, label: str, file_name: str, key: str) -> None:
    """A download of `df` as CSV, written when clicked (not on every refresh)."""
    index = not isinstance(df.index, pd.RangeIndex)
    st.download_button(
        label,
        lambda: df.to_csv(index=index).encode(),
        file_name=file_name,
        mime="text/csv",
        key=key,
    )


def lazy_section(label: str, name: str, expanded: bool = False):
    """An expander whose content is run only while it is open (`box.open`; Streamlit reruns
    the page when it is toggled), its state kept per session under `live:open:<name>`, so
    a section a researcher opened stays open across runs and refreshes.

        with lazy_section("Signal balance", "signal") as box:
            if box.open:
                ...draw..."""
    return st.expander(label, expanded=expanded, key=f"live:open:{name}", on_change="rerun")


def plot(fig: Any, key: str, image_format: str = "png") -> None:
    """st.plotly_chart with a stable key (zoom survives refreshes) and an offline camera
    button in the chosen format (png or svg, rendered by the browser)."""
    st.plotly_chart(
        fig,
        key=key,
        config={
            "displaylogo": False,
            "toImageButtonOptions": {"format": image_format, "filename": key.replace(":", "-")},
        },
    )
