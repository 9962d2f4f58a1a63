"""`copd doctor`: what this machine has, and (`--gpu`) one check that CoPD works on its GPUs.

    copd doctor                          # environment: python, torch/CUDA, GPUs, packages
    copd doctor --gpu                    # GPU tests + short runs + figures (about 8 minutes)
    copd doctor --gpu --model /models/Qwen2.5-0.5B-Instruct   # + LoRA branches on it
    scripts/gpu_check.sh [--model DIR]   # the same under $PYTHON, with carried wheels

`--gpu` runs these parts, each in its own process with a timeout (a failure or a hang in
one does not stop the others), then prints a pass/fail table and the measured figures:

- `gpu-tests`: `pytest -m gpu` (tests/test_gpu.py, the vLLM GPU tests where vLLM is
  installed: samples change after a weight sync, greedy vLLM equals greedy built-in
  decoding), when pytest and the tests folder are present;
- `tiny`: the tiny test model (copd/builders/tiny.py, the demo preset's run shrunk) on cuda:0: built-in decoder tokens/s, GRPO
  step time and peak GPU memory per branch, then a short CoPD run (a few steps);
- `lora` (with `--model`): the same on the given instruction model with LoRA branches;
- `vllm` (where vLLM imports): a short CoPD run with `sampling.engine=vllm` and its tokens/s;
- `two-gpu` (with two or more GPUs): two full branches on cuda:0 and cuda:1.

Without a CUDA device it says so and runs nothing that needs one (exit code 0). The
engine path imports nothing from the dashboard or the run store (no streamlit,
SQLAlchemy, pandas or plotly needed: tests/test_doctor.py blocks them and runs this).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("torch", "transformers", "peft", "vllm", "ray", "reasoning-gym", "pytest", "tokenizers")
# Seconds per part; the whole check stops starting parts after `--budget` seconds.
TIMEOUTS = {"gpu-tests": 180, "tiny": 120, "lora": 150, "vllm": 150, "two-gpu": 90}


# ----------------------------------------------------------------------------- environment
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """Python, platform, package versions, torch's CUDA build, the GPUs and the driver."""
    env: dict = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "cuda": False,
        "gpus": [],
    }
    try:
        import torch
    except ImportError as e:
        env["torch_error"] = str(e)
        return env
    env["torch_cuda_build"] = torch.version.cuda
    env["cuda"] = torch.cuda.is_available()
    if env["cuda"]:
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            env["gpus"].append({"index": i, "name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                                "capability": f"{p.major}.{p.minor}"})  # fmt: skip
        env["cudnn"] = torch.backends.cudnn.version()
        env["bf16"] = torch.cuda.is_bf16_supported()
    env["driver"] = _driver_version()
    return env


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (
        out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    )


def format_environment(env: dict) -> str:
    lines = [
        f"python       {env['python']} ({env['executable']})",
        f"platform     {env['platform']}",
        f"torch        {env['packages'].get('torch')} (CUDA build {env.get('torch_cuda_build')})",
        f"driver       {env.get('driver') or 'no nvidia-smi'}",
    ]
    lines += [f"{p:<12} {v or 'not installed'}" for p, v in env["packages"].items() if p != "torch"]
    if env["gpus"]:
        for g in env["gpus"]:
            lines.append(
                f"gpu {g['index']}        {g['name']}, {g['memory_gib']} GiB, sm {g['capability']}"
            )
    else:
        lines.append("gpus         none visible to torch")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the parts
def _short_config(part: str, model: str | None, tiny_model: str | None, device: str):
    """A CoPD run of a few steps: 1 cycle of 2 RL + 1 OPD steps, small batches."""
    from dataclasses import replace

    from copd.spec import BranchSpec, apply_overrides, presets

    sets = [
        "schedule.cycles=1", "schedule.rl_steps=2", "schedule.opd_steps=1",
        "schedule.diag_every=0", "schedule.eval_every_cycles=0", "eval.at_start=false",
        "eval.n_prompts=16", "diagnostics.n_prompts=2", "grpo.prompts_per_step=8",
        "grpo.group_size=4", "opd.cross_prompts_per_step=4", "opd.cross_group_size=2",
        "grpo.skip_zero_advantage=false", "merge.enabled=false",
    ]  # fmt: skip
    if part == "lora":
        sets += [f"model.path={model}", "model.dtype=bfloat16", "model.branch_kind=lora",
                 "sampling.max_new_tokens=32", "grpo.lr=1e-5"]  # fmt: skip
    elif tiny_model:
        sets += [f"model.path={tiny_model}", "sampling.max_new_tokens=4",
                 'task_options={"add": {"difficulty": 1}, "rev": {"difficulty": 1}}']  # fmt: skip
    if part == "vllm":
        sets += ["sampling.engine=vllm", "sampling.vllm_gpu_memory_utilization=0.1"]
    devices = ("cuda:0", "cuda:1") if part == "two-gpu" else (device, device)
    cfg = apply_overrides(presets.get("demo"), sets)
    branches = tuple(BranchSpec(n, n, d) for n, d in zip(("add", "rev"), devices, strict=True))
    return replace(cfg, branches=branches).validate()


def _measure(world) -> dict:
    """Per branch: rollout tokens/s (the branch worker's engine: built-in decoder or vLLM),
    GRPO step seconds, peak GPU memory (GiB) over both."""
    import torch

    from copd.train.update import grpo_update
    from copd.train.workers.local import LocalWorker

    figures: dict = {}
    draws = world.batches
    for b in world.branches:
        cuda = b.device.type == "cuda"

        def sync(dev=b.device, cuda=cuda):
            if cuda:
                torch.cuda.synchronize(dev)

        worker = LocalWorker(world, b)
        examples = b.task.sample(world.rngs[b.name], draws.prompts_per_step)
        worker.rollout(examples, draws.group_size)  # warm-up (and vLLM's first sync)
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats(b.device)
        t0 = time.perf_counter()
        batch = worker.rollout(examples, draws.group_size)
        sync()
        t_roll = time.perf_counter() - t0
        tokens = int(batch.completion_mask_B_T.sum())
        grpo_update(world, b, batch)  # warm-up (allocates the AdamW state)
        sync()
        t0 = time.perf_counter()
        grpo_update(world, b, batch)
        sync()
        figures[b.name] = {
            "engine": worker.engine,
            "rollout_tokens_per_s": tokens / t_roll,
            "rollout_rows": int(batch.completion_ids_B_T.shape[0]),
            "grpo_step_s": time.perf_counter() - t0,
            "peak_gib": torch.cuda.max_memory_allocated(b.device) / 2**30 if cuda else None,
            "device": str(b.device),
        }
    return figures


def run_part(
    name: str, model: str | None, device: str, out: Path, tiny_model: str | None = None
) -> dict:
    """One part, in this process: its figures (raises on failure)."""
    from copd.train.algorithms import run
    from copd.train.world import World

    if tiny_model is None and name != "lora":  # the test suite's model: built in seconds
        from copd.builders.tiny import tiny_test_model

        tiny_model = str(tiny_test_model(REPO / ".cache" / "test-models"))
    cfg = _short_config(name, model, tiny_model, device)
    world = World.build(cfg)
    figures: dict = {"branches": _measure(world)}
    world = World.build(cfg)  # a fresh world: the measured updates do not leak into the run
    t0 = time.perf_counter()
    figures["scores"] = run(world, out)
    figures["run_s"] = time.perf_counter() - t0
    return figures


def _part_main(argv: list[str]) -> int:
    """`python -m copd.tools.doctor --part NAME --result FILE ...`: one part, figures to FILE."""
    p = argparse.ArgumentParser()
    p.add_argument("--part", required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--model")
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--tiny-model")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix=f"copd-doctor-{a.part}-") as tmp:
        figures = run_part(a.part, a.model, a.device, Path(tmp), a.tiny_model)
    Path(a.result).write_text(json.dumps(figures, default=str))
    return 0


def _spawn(args: list[str], timeout: float, log: Path) -> tuple[str, float, str]:
    """Run a part in a child process: (status, seconds, last lines of its output)."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True)  # fmt: skip
        try:
            rc = proc.wait(timeout=max(timeout, 1))
            status = "pass" if rc == 0 else f"fail (exit {rc})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            status = f"timeout ({timeout:.0f} s)"
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    return status, time.perf_counter() - t0, " | ".join(tail)[-300:]


def gpu_check(
    model: str | None,
    budget_s: float,
    device: str = "cuda:0",
    allow_cpu: bool = False,
    tiny_model: str | None = None,
    parts: tuple[str, ...] = tuple(TIMEOUTS),
) -> int:
    """The `--gpu` check (module docstring). Returns 0 unless a part failed."""
    env = environment()
    print(format_environment(env), flush=True)
    if not env["cuda"] and not allow_cpu:
        print(
            "\nno CUDA GPU is visible to torch on this machine: nothing that needs a GPU was run."
        )
        return 0
    n_gpus = len(env["gpus"])
    vllm = env["packages"].get("vllm") is not None
    plan = [("gpu-tests", _version("pytest") is not None and (REPO / "tests").is_dir(),
             "pytest or tests/ missing"),
            ("tiny", True, ""),
            ("lora", model is not None, "no --model given"),
            ("vllm", vllm, "vLLM not installed"),
            ("two-gpu", n_gpus >= 2, f"{n_gpus} GPU(s)")]  # fmt: skip
    logs = Path(tempfile.mkdtemp(prefix="copd-doctor-"))
    deadline = time.perf_counter() + budget_s
    rows, figures = [], {}
    for name, wanted, why in plan:
        if name not in parts:
            continue
        left = deadline - time.perf_counter()
        if not wanted or left < 10:
            rows.append((name, "skip", 0.0, why if not wanted else "out of time"))
            continue
        print(f"\n[doctor] {name} ...", flush=True)
        if name == "gpu-tests":
            args = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                    "--override-ini", "addopts=-ra", str(REPO / "tests")]  # fmt: skip
        else:
            result = logs / f"{name}.json"
            args = [sys.executable, "-m", "copd.tools.doctor", "--part", name, "--result", str(result),
                    "--device", device] + (["--model", model] if model else [])  # fmt: skip
            args += ["--tiny-model", tiny_model] if tiny_model else []
        status, secs, tail = _spawn(args, min(TIMEOUTS[name], left), logs / f"{name}.log")
        if name != "gpu-tests" and (logs / f"{name}.json").exists():
            figures[name] = json.loads((logs / f"{name}.json").read_text())
        rows.append((name, status, secs, tail if status != "pass" or name == "gpu-tests" else ""))
    print("\n" + format_figures(figures))
    print("\n" + format_table(rows))
    print(f"(logs: {logs})")
    return 0 if all(r[1] in ("pass", "skip") for r in rows) else 1


def format_figures(figures: dict) -> str:
    lines = ["measured figures"]
    for part, f in figures.items():
        for branch, b in f.get("branches", {}).items():
            peak = f"{b['peak_gib']:.2f} GiB" if b.get("peak_gib") is not None else "n/a"
            lines.append(
                f"  {part:<9} {branch:<4} {b['device']:<7} {b['engine']:<5} rollout "
                f"{b['rollout_tokens_per_s']:8.0f} tok/s  GRPO step {b['grpo_step_s']:.3f} s  "
                f"peak {peak}"
            )
        if "run_s" in f:
            lines.append(f"  {part:<8} short CoPD run {f['run_s']:.1f} s")
    return "\n".join(lines) if len(lines) > 1 else "measured figures: none"


def format_table(rows: list[tuple[str, str, float, str]]) -> str:
    lines = [f"{'part':<10} {'result':<16} {'seconds':>8}  note", "-" * 60]
    lines += [f"{n:<10} {s:<16} {t:8.1f}  {note}" for n, s, t, note in rows]
    ok = all(s in ("pass", "skip") for _, s, _, _ in rows)
    lines.append("-" * 60)
    lines.append("GPU CHECK: PASS" if ok else "GPU CHECK: FAIL")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI
def cmd_doctor(args: argparse.Namespace) -> int:
    if not args.gpu:
        print(format_environment(environment()))
        return 0
    parts = tuple(args.parts.split(",")) if args.parts else tuple(TIMEOUTS)
    return gpu_check(args.model, args.budget, args.device, args.allow_cpu, args.tiny_model, parts)


def register(subparsers) -> argparse.ArgumentParser:
    """Add `copd doctor` to a `copd` subparsers object."""
    p = subparsers.add_parser("doctor", help="print the environment; --gpu: check CoPD on the GPUs")
    p.add_argument("--gpu", action="store_true", help="run the GPU check (about 8 minutes)")
    p.add_argument("--model", help="a local instruction model directory for the LoRA part")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for all parts together")
    p.add_argument("--device", default="cuda:0", help=argparse.SUPPRESS)
    p.add_argument("--parts", help=f"a comma-separated subset of {','.join(TIMEOUTS)}")
    # Tests only: run the parts on the CPU, with the tiny test model.
    p.add_argument("--allow-cpu", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tiny-model", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_doctor)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--part"]:
        return _part_main(argv)
    parser = argparse.ArgumentParser(prog="copd")
    register(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(["doctor", *argv])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
