"""The Runs page's export of a finished run: the same Hub-ready folder as `copd export`
(copd/tools/export.py: merged model, model card, results.json), and a Hub upload only when
a repository is given.

    export_panel(run)      # an expander under the selected run (finished runs only)
    harness_panel(run, url)  # lm-evaluation-harness scores, stored as the run's evaluations
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
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


HARNESS_LOG = "harness.log"  # in the run folder: the harness process's output


def harness_command(
    run: Run, url: str, tasks: str, include_path: str, limit: int, model: str = "merged"
) -> list[str]:
    """The `copd eval RUN --harness lm-eval` command the panel starts for `run`."""
    argv = [sys.executable, "-m", "copd", "eval", str(run.id), "--harness", "lm-eval"]
    argv += ["--tasks", tasks, "--db", url]
    argv += ["--branch", model] if model != "merged" else []
    argv += ["--include-path", include_path] if include_path else []
    return argv + (["--limit", str(limit)] if limit else [])


def harness_models(run: Run) -> list[str]:
    """What the harness can score of `run`: its merged model (when it merged) and each of
    its policies."""
    from copd.spec import RunConfig

    try:
        cfg = RunConfig.from_dict(run.config)
    except Exception:  # an older or hand-edited config: the merged model alone
        return ["merged"]
    merged = ["merged"] if Path(run.run_dir or "", "merged", "config.json").is_file() else []
    return merged + list(cfg.policy_names())


def harness_panel(run: Run, url: str) -> None:
    """lm-evaluation-harness scores of a finished run's model, as `copd eval RUN --harness
    lm-eval` computes them: started as a background process that stores the scores as the
    run's evaluations (Compare shows them beside copd's own); its log tail below. Without
    the optional extra, the panel says how to install it instead."""
    if run.status != RunStatus.FINISHED or not run.run_dir:
        return
    with st.expander("Benchmark with lm-evaluation-harness"):
        if importlib.util.find_spec("lm_eval") is None:
            st.info(
                "lm-evaluation-harness is not installed here: `pip install -e '.[harness]'` "
                "(it also brings scipy), then reload. Offline, give your own task YAMLs over "
                "local files with the include path."
            )
            return
        tasks = st.text_input("Tasks", value="", key=f"harness:tasks:{run.id}",
                              placeholder="gsm8k,arc_easy or your own task names")  # fmt: skip
        include = st.text_input("Task folder (--include-path, optional)", value="",
                                key=f"harness:include:{run.id}")  # fmt: skip
        limit = st.number_input("Examples per task (0: all)", min_value=0, value=0, step=10,
                                key=f"harness:limit:{run.id}")  # fmt: skip
        model = st.selectbox("Model", harness_models(run), key=f"harness:model:{run.id}",
                             help="the merged model, or one branch (exported from the run's "
                             "last checkpoint)")  # fmt: skip
        log = Path(run.run_dir) / HARNESS_LOG
        if st.button("Score", key=f"harness:go:{run.id}", icon=":material/fact_check:"):
            if not tasks.strip():
                st.error("Name at least one task.")
            else:
                argv = harness_command(run, url, tasks.strip(), include.strip(), int(limit), model)
                with open(log, "w") as fh:
                    subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
                st.success(md_escape(f"Started: {' '.join(argv[2:])}; its output goes to {log}"))
        if log.is_file():
            lines = log.read_text(errors="replace").splitlines()[-20:]
            st.code("\n".join(lines) or "(no output yet)", language=None)
