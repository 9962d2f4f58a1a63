"""The Runs page's export of a finished run: the same Hub-ready folder as `copd export`
(copd/tools/export.py: merged model, model card, results.json), and a Hub upload only when
a repository is given.

    export_panel(run)      # an expander under the selected run (finished runs only)
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.dashboard.text import md_escape
from storage import Run, RunStatus


def export_panel(run: Run) -> None:
    """Folder and optional Hub repository, one button; the result or the one-line error."""
    if run.status != RunStatus.FINISHED or not run.run_dir:
        return
    with st.expander("Export (Hugging Face format, model card)"):
        default = str(Path(run.run_dir) / "export")
        out = st.text_input("Folder", value=default, key=f"export:out:{run.id}")
        repo = st.text_input(
            "Push to Hub repository (optional)",
            value="",
            key=f"export:repo:{run.id}",
            help="OWNER/NAME; created private. Empty: nothing leaves this machine",
        )
        if st.button("Export", key=f"export:go:{run.id}", icon=":material/ios_share:"):
            from copd.tools.export import export_run

            try:
                done = export_run(
                    run.run_dir, out, revision=run.code_revision, push=repo.strip() or None
                )
            except Exception as e:  # the one-line reason (ExportError names the fix)
                st.error(md_escape(str(e)))
            else:
                where = f" and pushed to {repo.strip()}" if repo.strip() else ""
                st.success(md_escape(f"Exported to {done}{where}"))
