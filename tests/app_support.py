"""The dashboard under Streamlit's AppTest, pointed at a store: one set-up for every test.

use_store(monkeypatch, tmp_path, url)   # env for the app, caches of earlier tests gone
at = new_app().run()                    # app/main.py, Home first
at.switch_page("../pages/live.py").run()
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

ENTRY = str(Path(__file__).resolve().parent.parent / "app" / "main.py")


def use_store(monkeypatch, tmp_path: Path, url: str) -> None:
    """The app reads `url`, keeps its files under `tmp_path`, starts no supervisor, and
    shares no cached query or resource with another test."""
    monkeypatch.setenv("COPD_DB_URL", url)
    monkeypatch.setenv("COPD_HOME", str(tmp_path))
    monkeypatch.setenv("COPD_SUPERVISE", "0")
    clear_caches()


def clear_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


def new_app(timeout: float = 60) -> AppTest:
    return AppTest.from_file(ENTRY, default_timeout=timeout)
