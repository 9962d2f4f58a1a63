"""What `copd dashboard` checks and arranges before it serves: who may reach the server,
whether its port is free, and children (Streamlit, the supervisor) that end with it.

    problem = host_problem(args.host, args.port, allow_remote=args.allow_remote)  # None: ok
    problem = port_problem("127.0.0.1", 8501)   # "port 8501 is in use by pid 42 (...) ..."
    subprocess.Popen(argv, preexec_fn=die_with_parent())

The dashboard has no accounts and its Launch page starts training processes, so it serves
on loopback; another interface needs `--allow-remote` and then a shared token
(`?token=...`, checked by app/main.py before any page renders). The safe way to reach it
from another machine is an SSH tunnel (`ssh -L 8501:127.0.0.1:8501 host`).
Standard library only (psutil, when installed, names the process holding a port).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import signal
import socket
from collections.abc import Callable

TOKEN_ENV = "COPD_DASHBOARD_TOKEN"  # the shared token app/main.py asks for
# Set by `copd dashboard` for its server: a `copd supervise` process runs beside it, so the
# pages wake that supervisor to start what they queue (Launcher.start_now) instead of
# starting trainers themselves; it holds the standby trainer (launch_standby.py).
DEFER_ENV = "COPD_WAKE_SUPERVISOR"
TRUST_ENV = "COPD_TRUST_TASK_CODE"  # "1": the Launch page may run module:factory tasks
TUNNEL = "ssh -L {port}:127.0.0.1:{port} <this host>"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) reaches only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: loopback when every address it resolves to is
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def host_problem(host: str, port: int, *, allow_remote: bool) -> str | None:
    """None when `host` may be served; else the one line that says why not and what to do."""
    if is_loopback(host) or allow_remote:
        return None
    return (
        f"--host {host} would serve the dashboard, which has no login and starts training "
        "processes, to every machine that reaches this one; keep the default 127.0.0.1 and "
        f"use an SSH tunnel ({TUNNEL.format(port=port)}), or pass --allow-remote to serve it "
        "with an access token"
    )


def remote_warning(host: str, port: int, token: str) -> str:
    """What `copd dashboard --allow-remote` prints: the risk, the address, the safe way."""
    shown = "<this host>" if host in ("0.0.0.0", "::") else host
    return (
        f"warning: serving on {host}:{port} to the network. Anyone with the token can start "
        "training processes and read every run (no TLS: the token crosses the network in the "
        f"clear).\n  open: http://{shown}:{port}/?token={token}\n  safer: keep 127.0.0.1 "
        f"and tunnel: {TUNNEL.format(port=port)}"
    )


def port_problem(host: str, port: int) -> str | None:
    """None when (host, port) can be bound; else which process holds it, if findable."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # as the server binds (so a port in TIME_WAIT after a restart counts as free)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return None
        except OSError:
            pass
    holder = port_holder(port)
    who = f" by {holder}" if holder else ""
    return f"port {port} is in use{who}; stop the other dashboard or pass --port"


def port_holder(port: int) -> str | None:
    """`pid 42 (python -m streamlit run ...)` listening on `port`, when psutil can tell."""
    try:
        import psutil
    except ImportError:
        return None
    with contextlib.suppress(psutil.Error, OSError):
        for c in psutil.net_connections(kind="inet"):
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid:
                cmd = " ".join(psutil.Process(c.pid).cmdline())[:120]
                return f"pid {c.pid} ({cmd})" if cmd else f"pid {c.pid}"
    return None


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get `sig` when this process dies, however it dies
    (SIGKILL included): Linux's PR_SET_PDEATHSIG. None where there is no prctl."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above ran
            os.kill(os.getpid(), sig)

    return preexec
