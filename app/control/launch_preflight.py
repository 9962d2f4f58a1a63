"""The Launcher's preflight: `copd check` on a config in a child process before a run is
recorded, one check per distinct (model, tasks, task options)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.control.launch_base import CONFIG_NAME, PREFLIGHT_TIMEOUT_S, LauncherBase
from copd.spec import ConfigError


class Preflight(LauncherBase):
    """check(config): the trainer's own checks, run where the trainer would run."""

    def check(self, config: Mapping[str, Any]) -> None:
        """`python -m copd check` on `config` in a child process (the trainer's interpreter
        and imports); ConfigError with its message when it fails. One check per distinct
        (model, tasks, task options), so a sweep of many runs checks each setting once."""
        key = json.dumps(
            {k: config.get(k) for k in ("model", "branches", "task_options", "trust_task_code")},
            sort_keys=True,
            default=str,
        )
        if key not in self._checked:
            self._checked[key] = self._run_check(config)
        if self._checked[key]:
            raise ConfigError(self._checked[key])

    def _run_check(self, config: Mapping[str, Any]) -> str:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="copd-check-") as tmp:
            path = Path(tmp) / CONFIG_NAME
            path.write_text(json.dumps(dict(config), indent=2) + "\n")
            argv = [*self.trainer_argv[:-1], "check", str(path)]
            if self.trainer_argv[-1] != "train":  # a stand-in trainer: the engine's own check
                argv = [sys.executable, "-m", "copd", "check", str(path)]
            if config.get("trust_task_code"):  # the submitter was given --trust-task-code
                argv.append("--trust-task-code")
            env = self._child_env([])
            try:
                res = subprocess.run(
                    argv, cwd=self.repo_root, env=env, capture_output=True, text=True,
                    timeout=PREFLIGHT_TIMEOUT_S, stdin=subprocess.DEVNULL,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                return f"copd check did not finish in {PREFLIGHT_TIMEOUT_S:.0f} s"
        if res.returncode == 0:
            return ""
        lines = [ln for ln in (res.stderr or res.stdout).strip().splitlines() if ln.strip()]
        starts = [i for i, ln in enumerate(lines) if ln.startswith("error: ")]
        if starts:  # the message, with its continuation lines (e.g. a dataset's bad rows)
            return "\n".join(lines[starts[-1] :])[len("error: ") :]
        return "copd check failed:\n" + "\n".join(lines[-15:])
