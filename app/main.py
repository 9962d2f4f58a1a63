"""Streamlit entrypoint: `streamlit run app/main.py` (or `copd dashboard`).

One `st.navigation` over the thin page scripts in the top-level `pages/` folder; the logic
lives in `app/` (charts, queries, forms are Streamlit-free). The DB comes from
$COPD_DB_URL, else the store's default (~/.copd/copd.db). One supervisor per dashboard
starts queued runs and marks dead ones crashed: under `copd dashboard` it is the
`copd supervise` process beside the server, which then runs with COPD_SUPERVISE=0; under a
plain `streamlit run` it is one background thread of this process. With
$COPD_DASHBOARD_TOKEN set (`copd dashboard --allow-remote`), no page renders until the
browser session gave `?token=...`.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ on the path, not the repo
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app.dashboard.widgets import PAGES_DIR, ensure_supervisor, require_token  # noqa: E402

st.set_page_config(page_title="copd", page_icon="📊", layout="wide")
require_token()  # a served-to-the-network dashboard: nothing renders without its token
ensure_supervisor()
# Page icons from Streamlit's bundled Material Symbols font, beside each page's name: they
# render without an emoji font (where an emoji would be an empty box).
nav = st.navigation(
    [
        st.Page(PAGES_DIR / "home.py", title="Home", icon=":material/home:", default=True),
        st.Page(PAGES_DIR / "launch.py", title="Launch", icon=":material/rocket_launch:"),
        st.Page(PAGES_DIR / "runs.py", title="Runs", icon=":material/table_rows:"),
        st.Page(PAGES_DIR / "live.py", title="Live run view", icon=":material/monitoring:"),
        st.Page(PAGES_DIR / "compare.py", title="Compare", icon=":material/balance:"),
        st.Page(PAGES_DIR / "studies.py", title="Studies", icon=":material/science:"),
    ]
)
nav.run()
