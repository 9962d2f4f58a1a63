"""A trainer started before its run: `python -m copd standby` imports what a trainer needs
(torch, transformers, the store, the training loops) and then waits for one run on stdin.
A dashboard's launcher keeps one standby while it has no CPU run going and hands it the
next CPU run, which then starts without the seconds of imports a fresh interpreter pays
(the demo's first chart comes that much sooner after the click).

The job is one JSON line: {"argv": the `copd` arguments of the run, "env": its whole
environment, "cwd": its working folder, "log": its train.log}. The standby appends its
output to the log, takes the environment and the folder, and returns the arguments for
`copd.cli.main` to run in this process, which from then on is the run's trainer (its pid is
the one the launcher records). End of input without a job (the launcher closed the pipe
or died) returns None: the standby exits.

Only what is read at run time can change with the job: the thread count ($COPD_THREADS,
read by `set_threads` when the world is built) and the heartbeat. Variables the libraries
read at import ($HF_HUB_OFFLINE, $CUDA_VISIBLE_DEVICES, ...) are those the standby was
started with; the launcher hands over only a job whose environment agrees with them
(app/control/launch_standby.py) and starts any other run afresh.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO


def preload() -> None:
    """Import what `copd train` imports before its first step."""
    import torch  # noqa: F401
    import transformers.models.qwen2.modeling_qwen2  # noqa: F401  (the built-in base's kind)
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401

    import copd.train.algorithms  # noqa: F401
    import copd.train.world  # noqa: F401
    from copd.runner import import_store

    import_store()  # the store, the loggers, the run's lifecycle


def receive(stdin: TextIO = sys.stdin) -> list[str] | None:
    """Preload, then wait for the job; take its log, environment and folder and return its
    `copd` arguments (None at end of input)."""
    preload()
    line = stdin.readline()
    if not line.strip():
        return None
    job = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(job["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)  # sys.stdout and sys.stderr write to descriptors 1 and 2: now the log
    os.dup2(fd, 2)
    os.close(fd)
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    return [str(a) for a in job["argv"]]
