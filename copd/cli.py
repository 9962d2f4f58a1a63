"""Command line: `copd train|eval|merge|presets|dashboard|launch|runs|cancel|resume`.

copd train demo --set schedule.cycles=4 --out runs/demo
copd dashboard --port 8501
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Start the Streamlit app on 127.0.0.1 (never on a public interface by default)."""
    env = dict(os.environ)
    if args.db:
        env["COPD_DB_URL"] = args.db
    argv = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO / "app" / "main.py"),
        "--server.address",
        args.host,
        "--server.port",
        str(args.port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    return subprocess.call(argv, env=env)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="copd", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dashboard", help="start the Streamlit dashboard on 127.0.0.1")
    d.add_argument("--port", type=int, default=8501)
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    d.set_defaults(func=cmd_dashboard)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
