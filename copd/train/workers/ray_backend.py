"""Ray back end: every branch is a Ray actor holding its own model copy, optimizer and RNGs.

    group = RayGroup(world)        # world built with backend.kind="ray": tokenizer, tasks, base
    group.rl_steps({"add": (examples, 8, False), "rev": (examples2, 8, False)})  # in parallel
    group.close()

Each actor builds a one-branch `World` from the run's config (same seed, same base, the
branch's token generator seeded from (seed, name)) and runs a `LocalWorker` on it, so the
numerics are the in-process ones: on CPU, the same seed gives the same metrics on both back
ends. The driver keeps the base model (vs-base diagnostics and the merge), the prompt RNGs
and the schedule. Results come back as CPU tensors.

Loopback only. Without `backend.ray_address`, `init_ray` starts a private instance bound to
127.0.0.1: Ray's usage reporting and its cloud-metadata probe are switched off by
environment variables (set before Ray is imported) and a stub `ray_bootstrap_config.yaml`
in a private HOME for the processes Ray starts. With `ray_address` ("auto" or
"ray://host:port") the run joins an existing cluster instead (docs/DISTRIBUTED.md).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from copd.policy.rollout import RolloutBatch
from copd.train.checkpoint import BranchState
from copd.train.workers.base import Call, WorkerGroup

# Must be in the environment before `import ray` (and inherited by the processes it starts).
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # else _node_ip_address is remapped
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
}
BOOTSTRAP_STUB = "cluster_name: local\nprovider: {type: local}\n"
# What the actors need from the driver's environment (offline hub, caches, threads).
_FORWARD_ENV = (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HOME",
    "TOKENIZERS_PARALLELISM",
    "COPD_HOME",
    "COPD_THREADS",
)


def init_ray(address: str | None = None, num_cpus: int = 2, temp_dir: str | None = None) -> bool:
    """Start a private loopback Ray instance (address None) or join a cluster. Returns True
    when this call started Ray (the caller shuts it down), False when it was running."""
    os.environ.update(RAY_ENV)
    import ray

    if ray.is_initialized():
        return False
    with _sigterm_kept():
        _start_or_join(ray, address, num_cpus, temp_dir)
    return True


@contextmanager
def _sigterm_kept():
    """Keep SIGTERM for the trainer while Ray starts. `ray.init` replaces the process's
    SIGTERM handler (Python's with `sys.exit`, and a native one that aborts), so a
    cancelled run would die without its checkpoint: the handler in place before is put
    back. And the daemons of a private instance (gcs_server, raylet, their workers) are
    started with SIGTERM blocked, as Ray blocks SIGINT for them: they live in the
    trainer's process group, which the launcher signals as a whole, and must outlive the
    trainer's final checkpoint. `ray.shutdown` still stops them (SIGKILL after its grace
    period). A SIGTERM that arrives meanwhile is held, then delivered to the handler."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _start_or_join(ray, address: str | None, num_cpus: int, temp_dir: str | None) -> None:
    if address is not None:
        ray.init(address=address, include_dashboard=False, log_to_driver=True)
        return
    root = Path(temp_dir or tempfile.mkdtemp(prefix="copd-ray-"))
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "ray_bootstrap_config.yaml").write_text(BOOTSTRAP_STUB)
    # Ray's processes read ~/ray_bootstrap_config.yaml: without it the dashboard's usage
    # module probes the cloud-metadata address. Only the processes started here need the
    # private HOME; the driver gets its own back afterwards.
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            _temp_dir=str(root / "ray"),
        )
    finally:
        if old_home is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old_home


def _cpu(obj: Any) -> Any:
    """Move every tensor in a worker's result to the CPU (what crosses processes)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, RolloutBatch):
        return obj.to("cpu")
    if isinstance(obj, BranchState):
        return BranchState(*(_cpu(getattr(obj, f.name)) for f in dataclasses.fields(obj)))
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


class BranchActor:
    """The body of one branch actor: a one-branch world and a LocalWorker on it."""

    def __init__(self, cfg_dict: dict, name: str, env: dict[str, str]) -> None:
        os.environ.update(env)
        from copd.spec import RunConfig
        from copd.train.logger import NullLogger
        from copd.train.workers.local import LocalWorker
        from copd.train.world import World

        cfg = RunConfig.from_dict(cfg_dict)
        self.world = World.build(cfg, NullLogger(), names=[name])
        self.worker = LocalWorker(self.world, self.world.branches[0])

    def run(self, op: Callable[..., Any], *args: Any) -> Any:
        """`op(worker, *args)`: one of `workers.base.Ops`, results on the CPU."""
        return _cpu(op(self.worker, *args))

    def device(self) -> str:
        return str(self.worker.branch.device)


def actor_config(world) -> dict:
    """The run's config as each actor builds it: in-process inside the actor, the base
    model path already resolved by the driver, devices picked inside the actor (Ray
    sets CUDA_VISIBLE_DEVICES to the actor's GPUs, so `auto` is cuda:0 there)."""
    d = dict(world.config_dict)
    d["backend"] = {**d["backend"], "kind": "local"}
    d["model"] = {**d["model"], "path": world.base_path or d["model"]["path"]}
    d["branches"] = [{**b, "device": "auto"} for b in d["branches"]]
    return d


class RayGroup(WorkerGroup):
    """One Ray actor per branch (`backend.num_gpus_per_branch` GPUs and
    `backend.num_cpus_per_branch` CPUs each). Calls to different actors run in parallel."""

    def __init__(self, world) -> None:
        bk = world.backend
        self.names = list(world.branch_tasks)
        need = math.ceil(len(self.names) * bk.num_cpus_per_branch)
        self._owns_ray = init_ray(bk.ray_address, max(2, need), bk.ray_temp_dir)
        import ray

        self._ray = ray
        from copd.builders.tiny import copd_home

        env = {k: os.environ[k] for k in _FORWARD_ENV if k in os.environ}
        # The actors' HOME may be the private stub folder: point caches at the real ones.
        env.setdefault("COPD_HOME", str(copd_home()))
        env.setdefault("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
        remote = ray.remote(num_cpus=bk.num_cpus_per_branch, num_gpus=bk.num_gpus_per_branch)(
            BranchActor
        )
        cfg_dict = actor_config(world)
        self.actors = {n: remote.remote(cfg_dict, n, env) for n in self.names}
        self.devices = dict(
            zip(self.names, ray.get([a.device.remote() for a in self.actors.values()]), strict=True)
        )
        # Each actor decides its own rollout engine (it sees its GPUs); the driver logs why
        # one fell back to the built-in decoder.
        from copd.policy.rollout_vllm import report_engines

        report_engines(world.logger.log_event, self.sampling_engines(), world.state.step)

    def call(self, calls: list[Call]) -> list[Any]:
        # A batch sent to several actors (a probe, a cross batch) is stored once.
        puts: dict[int, Any] = {}

        def ref(x: Any) -> Any:
            if isinstance(x, RolloutBatch):
                if id(x) not in puts:
                    puts[id(x)] = self._ray.put(x)
                return puts[id(x)]
            return x

        refs = [self.actors[c.worker].run.remote(c.op, *(ref(a) for a in c.args)) for c in calls]
        return self._ray.get(refs)

    def close(self) -> None:
        for a in self.actors.values():
            self._ray.kill(a)
        self.actors = {}
        if self._owns_ray:
            self._ray.shutdown()
