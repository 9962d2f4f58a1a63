"""Streamlit entrypoint: `streamlit run app/main.py` (or `copd dashboard`).

One `st.navigation` over the thin page scripts in the top-level `pages/` folder.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent.parent / "pages"

st.set_page_config(page_title="copd", page_icon="📊", layout="wide")
nav = st.navigation([st.Page(PAGES / "home.py", title="Home", default=True)])
nav.run()
