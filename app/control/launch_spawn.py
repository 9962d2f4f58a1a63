"""The Launcher's spawning: claim a queued run, start its trainer in its own session with
its output in train.log, record the process; the child's environment (GPUs, threads)."""

from __future__ import annotations

import json
import shutil
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

from app.control import procs
from app.control.launch_base import CONFIG_NAME, LOG_NAME, RESUME_MARKER, LauncherBase
from copd.runner import new_run_dir
from storage import Run, RunStatus


class Spawner(LauncherBase):
    """_start(run, gpu_ids): one trainer process; _child_env: its environment."""

    def _start(self, run: Run, gpu_ids: list[int]) -> bool:
        """Spawn the trainer and record it running; False when it could not be spawned."""
        if run.run_dir:
            run_dir = Path(run.run_dir)
        else:  # a row queued without a folder (an older store): one folder, chosen once
            fresh = new_run_dir(self.runs_root, run.id, run.name)
            run_dir = Path(self.store.set_run_dir_if_unset(run.id, str(fresh)))
            if run_dir != fresh:
                shutil.rmtree(fresh, ignore_errors=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = run_dir / CONFIG_NAME
        if not cfg_path.exists():  # folder cleaned by hand: the DB holds the config too
            cfg_path.write_text(json.dumps(run.config, indent=2) + "\n")
        argv = [*self.trainer_argv, str(cfg_path), "--out", str(run_dir)]
        argv += ["--db", self.db_url, "--run-id", str(run.id)]
        if run.config.get("trust_task_code"):  # granted at submit or resume, by the flag
            argv.append("--trust-task-code")
        marker = run_dir / RESUME_MARKER
        if marker.exists():
            argv += ["--resume", str(run_dir)]
        assigned = ",".join(str(g) for g in gpu_ids) if gpu_ids else None
        if not self.store.claim(run.id, self.host, assigned_gpus=assigned):
            return False  # another supervisor started it (or it was cancelled) meanwhile
        log_path = run_dir / LOG_NAME
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with open(log_path, "a") as log:
            log.write(f"=== {stamp} launch: {' '.join(argv)}\n")
        env = self._child_env(gpu_ids, None if gpu_ids else self.cpu_threads(run))
        try:  # a CPU run goes to the standby trainer when one is ready (launch_standby.py)
            child = None if gpu_ids else self._hand_over(argv, log_path, env)
            child = child or procs.spawn(argv, log_path=log_path, env=env, cwd=self.repo_root)
        except OSError as exc:  # e.g. the interpreter moved: record it, do not retry forever
            self._set_status(run.id, RunStatus.FAILED, f"could not start {argv[0]}: {exc}")
            return False
        marker.unlink(missing_ok=True)  # one resume per request; a fresh start never resumes
        start = procs.process_start_time(child.pid) or time.time()
        try:
            self.store.mark_running(run.id, child.pid, start, self.host, assigned_gpus=assigned)
        except Exception:
            procs.signal_group(child.pid, signal.SIGKILL)
            child.wait()
            raise
        self._children[run.id] = child
        return True

    def _child_env(self, gpu_ids: list[int], threads: int | None = None) -> dict[str, str]:
        env = dict(self.base_env)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("HF_DATASETS_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # ids as nvidia-smi/NVML number them
        env["PYTHONUNBUFFERED"] = "1"
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpu_ids)  # "" hides all GPUs
        if gpu_ids:
            threads = max(1, self.cores // max(1, len(self.gpus)))
        elif threads is None:
            threads = max(1, self.cores // self.max_cpu_runs)
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "COPD_THREADS"):
            env[key] = str(threads)
        env["COPD_HEARTBEAT_S"] = str(self.heartbeat_s)
        return env
