"""`copd dashboard`: the Streamlit app on 127.0.0.1 and a `copd supervise` process beside
it (registered through the `copd.commands` entry point, like every app command).

    copd dashboard --port 8501 --db sqlite:///runs.db
    copd dashboard --host 0.0.0.0 --allow-remote      # asks for a token; an SSH tunnel is safer
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from app.control import serve

APP = Path(__file__).resolve().parent.parent / "main.py"


def register(sub: Any) -> None:
    add_dashboard_parser(sub)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Start the Streamlit app on 127.0.0.1 (never on a public interface by default), and a
    `copd supervise` process beside it, so queued runs start and crashes are detected from
    the moment the server is up, whether or not a browser has opened a page; the server
    then starts no supervisor thread (one supervisor per dashboard; `--no-supervisor` gives
    the thread back). Both children end with this process, even when it is SIGKILLed
    (app/control/serve.py)."""

    problem = serve.host_problem(args.host, args.port, allow_remote=args.allow_remote)
    problem = problem or serve.port_problem(args.host, args.port)
    if problem:  # before anything starts
        print(f"error: {problem}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if args.db:
        env["COPD_DB_URL"] = args.db
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.pop(serve.TRUST_ENV, None)  # only the flag opts in, not an exported variable
    if args.trust_task_code:
        env[serve.TRUST_ENV] = "1"
    token = args.token
    if not serve.is_loopback(args.host):
        import secrets

        token = token or secrets.token_urlsafe(16)
        print(serve.remote_warning(args.host, args.port, token), file=sys.stderr)
    env.pop(serve.TOKEN_ENV, None)
    if token:
        env[serve.TOKEN_ENV] = token
    argv = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", args.host, "--server.port", str(args.port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",  # no "Deploy" button: this is a local tool
    ]  # fmt: skip
    print(f"copd dashboard on http://{args.host}:{args.port}", file=sys.stderr)
    supervisor = None
    preexec = serve.die_with_parent()
    if not args.no_supervisor:
        sup_argv = [sys.executable, "-m", "copd", "supervise"]
        sup_argv += ["--db", args.db] if args.db else []
        sup_argv += [] if env.get("COPD_STANDBY") == "0" else ["--standby"]
        supervisor = subprocess.Popen(
            sup_argv, env=env, stdin=subprocess.DEVNULL, preexec_fn=preexec
        )
    import signal

    def _stop(*_):  # SIGTERM ends both processes (the finally below), not just this one
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, _stop)
    # One supervisor per dashboard: with the `copd supervise` process beside it, the
    # Streamlit process starts no supervisor thread of its own (app/dashboard/widgets.py).
    # The server's pages wake it to start what they queue (it holds the standby trainer).
    server_env = env if supervisor is None else {**env, "COPD_SUPERVISE": "0", serve.DEFER_ENV: "1"}
    try:
        return subprocess.call(argv, env=server_env, preexec_fn=preexec)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if supervisor is not None and supervisor.poll() is None:
            supervisor.terminate()
            try:
                supervisor.wait(15)
            except subprocess.TimeoutExpired:
                supervisor.kill()


def add_dashboard_parser(sub: Any) -> None:
    """`copd dashboard`: host (loopback unless --allow-remote), port, store, token, trust."""
    d = sub.add_parser("dashboard", help="start the Streamlit dashboard on 127.0.0.1")
    d.add_argument("--port", type=int, default=8501)
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    d.add_argument(
        "--no-supervisor",
        action="store_true",
        help="do not start `copd supervise` beside the server (another one runs already)",
    )
    d.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than loopback (the dashboard has no login: it then asks "
        "for an access token; an SSH tunnel is the safer way)",
    )
    d.add_argument(
        "--token", default=None, help="the access token (default: generated for --allow-remote)"
    )
    d.add_argument(
        "--trust-task-code",
        action="store_true",
        help="let the Launch page run tasks given as module:factory (code named by a form)",
    )
    d.set_defaults(func=cmd_dashboard)
