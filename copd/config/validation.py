"""Validation of a `RunConfig`: one check per section, then the fields that depend on
each other (method, branches, topology, merge weights, backend).

Every failure raises `ConfigError("<field>: <fix>")` before any work starts.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from copd.config.choices import (
    BACKEND_KINDS,
    BRANCH_KINDS,
    LOSS_AGGS,
    MERGE_METHODS,
    METHODS,
    SAMPLING_ENGINES,
    TEACHERS,
    TOPOLOGIES,
)

if TYPE_CHECKING:
    from copd.config.sections import (
        BackendConfig,
        BranchSpec,
        DiagnosticsConfig,
        EvalConfig,
        GRPOConfig,
        MergeConfig,
        ModelConfig,
        OPDConfig,
        RunConfig,
        SamplingConfig,
        ScheduleConfig,
        TopologyConfig,
    )

BRANCH_NAME = re.compile(r"[A-Za-z0-9_.-]+")
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the field and the fix."""


def check(ok: bool, name: str, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {fix}")


def validate_run(cfg: RunConfig) -> None:
    """Every section on its own, then the cross-field rules."""
    check(cfg.method in METHODS, "method", f"must be one of {METHODS}")
    check(cfg.seed >= 0, "seed", "must be >= 0")
    check(cfg.threads >= 0, "threads", "use 0 for the default or a positive count")
    check(cfg.checkpoint_every >= 0, "checkpoint_every", "use 0 or a step count")
    check_model(cfg.model)
    check_sampling(cfg.sampling)
    check_grpo(cfg.grpo)
    check_opd(cfg.opd)
    check_schedule(cfg.schedule)
    check_branches(cfg.branches)
    check_topology(cfg.topology)
    check_merge(cfg.merge)
    check_eval(cfg.eval)
    check_diagnostics(cfg.diagnostics)
    check_backend(cfg.backend)
    check_cross(cfg)


def check_model(m: ModelConfig) -> None:
    check(bool(m.path), "model.path", "set a local model directory, a hub name or 'demo'")
    check(m.branch_kind in BRANCH_KINDS, "model.branch_kind", "use 'full' or 'lora'")
    check(
        bool(m.attn_implementation.strip()),
        "model.attn_implementation",
        "use 'auto', 'eager', 'sdpa' or another transformers attention name",
    )
    check(m.lora.r > 0, "model.lora.r", "LoRA rank must be a positive integer")
    check(
        m.demo_hidden % 4 == 0 and m.demo_hidden >= 16,
        "model.demo_hidden",
        "use a multiple of 4, at least 16",
    )
    check(m.demo_layers >= 1, "model.demo_layers", "use at least 1 layer")


def check_sampling(s: SamplingConfig) -> None:
    check(s.temperature > 0, "sampling.temperature", "must be > 0 (paper: 1.0)")
    check(s.max_new_tokens >= 1, "sampling.max_new_tokens", "must be >= 1")
    check(0 < s.top_p <= 1, "sampling.top_p", "must be in (0, 1]")
    check(s.engine in SAMPLING_ENGINES, "sampling.engine", f"use one of {SAMPLING_ENGINES}")
    check(
        0 < s.vllm_gpu_memory_utilization < 1,
        "sampling.vllm_gpu_memory_utilization",
        "must be in (0, 1): the share of the branch's GPU vLLM may take",
    )


def check_grpo(g: GRPOConfig) -> None:
    check(
        g.group_size >= 2, "grpo.group_size", "GRPO needs at least 2 samples per prompt (paper: 8)"
    )
    check(g.prompts_per_step >= 1, "grpo.prompts_per_step", "must be >= 1")
    check(g.lr > 0, "grpo.lr", "must be > 0")
    check(0 <= g.clip_low < 1, "grpo.clip_low", "must be in [0, 1) (paper: 0.2)")
    check(g.clip_high >= 0, "grpo.clip_high", "must be >= 0 (paper: 0.28)")
    check(g.loss_agg in LOSS_AGGS, "grpo.loss_agg", f"use one of {LOSS_AGGS}")
    check(g.kl_coef >= 0, "grpo.kl_coef", "must be >= 0 (paper: 0)")
    check(g.updates_per_batch >= 1, "grpo.updates_per_batch", "must be >= 1")


def check_opd(o: OPDConfig) -> None:
    check(o.beta >= 0, "opd.beta", "must be >= 0")
    check(o.cross_prompts_per_step >= 1, "opd.cross_prompts_per_step", "must be >= 1")
    check(o.cross_group_size >= 1, "opd.cross_group_size", "must be >= 1")
    check(o.teacher in TEACHERS, "opd.teacher", "use 'live' or 'snapshot'")


def check_schedule(sc: ScheduleConfig) -> None:
    check(sc.cycles >= 1, "schedule.cycles", "must be >= 1")
    check(sc.rl_steps >= 0 and sc.opd_steps >= 0, "schedule.rl_steps", "step counts must be >= 0")
    check(
        sc.rl_steps + sc.opd_steps >= 1,
        "schedule.rl_steps",
        "a cycle needs at least one step (rl_steps + opd_steps >= 1)",
    )
    check(sc.diag_every >= 0, "schedule.diag_every", "use 0 to measure only at phase ends")


def check_branches(branches: tuple[BranchSpec, ...]) -> None:
    names = [b.name for b in branches]
    check(len(names) >= 1, "branches", "add at least one branch")
    check(len(set(names)) == len(names), "branches", f"branch names must be unique: {names}")
    for b in branches:
        check(
            BRANCH_NAME.fullmatch(b.name) is not None,
            "branches.name",
            f"{b.name!r}: use letters, digits, '_', '.', '-' only",
        )
        check(bool(b.task), f"branches[{b.name}].task", "name a built-in task or module:factory")
        check(
            DEVICE.fullmatch(b.device) is not None,
            f"branches[{b.name}].device",
            "use auto, cpu, cuda or cuda:N",
        )


def check_topology(t: TopologyConfig) -> None:
    check(t.kind in TOPOLOGIES, "topology.kind", f"use one of {TOPOLOGIES}")


def check_merge(mg: MergeConfig) -> None:
    check(mg.method in MERGE_METHODS, "merge.method", f"use one of {MERGE_METHODS}")
    check(0 < mg.density <= 1, "merge.density", "must be in (0, 1]")


def check_eval(e: EvalConfig) -> None:
    check(e.n_prompts >= 1, "eval.n_prompts", "must be >= 1")
    check(e.pass_k >= 0, "eval.pass_k", "use 0 (off) or k >= 1")


def check_diagnostics(d: DiagnosticsConfig) -> None:
    check(d.top_k >= 1, "diagnostics.top_k", "must be >= 1 (paper: 10)")
    check(all(k >= 1 for k in d.extra_k), "diagnostics.extra_k", "every k must be >= 1")
    check(d.n_prompts >= 1 and d.samples_per_prompt >= 1, "diagnostics.n_prompts", "must be >= 1")


def check_backend(bk: BackendConfig) -> None:
    check(bk.kind in BACKEND_KINDS, "backend.kind", "use 'local' or 'ray'")
    check(
        bk.ray_address is None or bk.ray_address == "auto" or bk.ray_address.startswith("ray://"),
        "backend.ray_address",
        "use null (private local instance), 'auto' or 'ray://HOST:PORT'",
    )
    check(bk.num_gpus_per_branch >= 0, "backend.num_gpus_per_branch", "must be >= 0")
    check(bk.num_cpus_per_branch >= 0, "backend.num_cpus_per_branch", "must be >= 0")


def check_cross(cfg: RunConfig) -> None:
    """Rules that read more than one section."""
    names = [b.name for b in cfg.branches]
    if cfg.method in ("copd", "static_opd", "weight_average"):
        check(len(names) >= 2, "branches", f"method {cfg.method!r} needs >= 2 branches")
    if cfg.method == "mopd":
        check(len(names) >= 2, "branches", "MOPD needs >= 2 domain experts as teachers")
    t = cfg.topology
    if t.kind == "pair" and cfg.method == "copd":
        check(
            len(names) == 2,
            "topology.kind",
            f"'pair' needs exactly 2 branches (got {len(names)}); use 'hub' or 'full'",
        )
    if t.hub is not None:
        check(t.hub in names, "topology.hub", f"{t.hub!r} is not a branch; pick one of {names}")
    mg = cfg.merge
    # Weights apply alike to full-weight and LoRA branches: normalised by average/weighted,
    # per-task coefficients for task_arithmetic; TIES has no use for them.
    check(
        not (mg.weights and mg.method == "ties"),
        "merge.weights",
        "'ties' does not use weights; leave merge.weights empty, or use merge.method "
        "'weighted' or 'task_arithmetic'",
    )
    if mg.method == "weighted" or mg.weights:
        check(
            len(mg.weights) == len(names),
            "merge.weights",
            f"give one weight per branch ({len(names)})",
        )
    if mg.method == "weighted" or (mg.weights and mg.method == "average"):
        check(
            all(w >= 0 for w in mg.weights) and sum(mg.weights) > 0,
            "merge.weights",
            "weights must be >= 0 and not all zero",
        )
    if cfg.method == "static_opd" and cfg.static_direction is not None:
        parts = cfg.static_direction.split("->")
        check(
            len(parts) == 2 and all(p in names for p in parts) and parts[0] != parts[1],
            "static_direction",
            f"write TEACHER->STUDENT with two branch names from {names}",
        )
    if cfg.backend.kind == "ray":
        check(
            cfg.method == "copd",
            "backend.kind",
            f"'ray' runs the copd method only; use 'local' for {cfg.method!r}",
        )
