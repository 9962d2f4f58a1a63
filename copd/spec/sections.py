"""The config's sections: one frozen dataclass each (the whole run is `run.RunConfig`).

Defaults follow the paper (arXiv 2604.27083) wherever it gives a value; what it leaves
open is a documented field. Each section checks its own fields (`check()`);
`RunConfig.validate` runs them, then the cross-field rules. Allowed values live in
`choices.py`, the JSON mapping in `serialize.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from copd.errors import check
from copd.spec.choices import (
    BRANCH_KINDS,
    LOSS_AGGS,
    MERGE_METHODS,
    OPD_ADVANTAGES,
    OPD_SAMPLES,
    SAMPLING_ENGINES,
    TEACHER_WEIGHTINGS,
    TEACHERS,
    TOPOLOGIES,
    BranchKind,
    Dtype,
    LossAgg,
    MergeMethod,
    OPDAdvantage,
    OPDSamples,
    SamplingEngine,
    Teacher,
    TeacherWeighting,
    TopologyKind,
)

BRANCH_NAME = re.compile(r"[A-Za-z0-9_.-]+")
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")

MAX_STEPS = 10_000_000  # steps in one run (a day at 100 steps/s); more is a typo


@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapter settings (used when `model.branch_kind == "lora"`)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    )


@dataclass(frozen=True)
class ModelConfig:
    """Base model. `path="demo"` is the built-in tiny model (built and cached locally);
    otherwise a local Hugging Face directory or a hub name (needs network)."""

    path: str = "demo"
    gguf_file: str | None = None  # a GGUF file inside `path` (transformers `gguf_file=`)
    dtype: Dtype = "float32"
    branch_kind: BranchKind = "full"
    lora: LoraSpec = field(default_factory=LoraSpec)
    # transformers attention kernel. "auto": "eager" on the CPU for short-context models
    # (<= 512 positions, e.g. the demo's: there the CPU SDPA kernel's fixed cost per call
    # outweighs its savings; see docs/PERFORMANCE.md), "sdpa" otherwise. Any name
    # transformers accepts ("flash_attention_2", ...) passes through.
    attn_implementation: str = "auto"
    # Built-in demo model only: size and the supervised warm-up that puts base rewards
    # away from 0 and 1 (cached on disk by a hash of these fields).
    demo_hidden: int = 128
    demo_layers: int = 2
    demo_warmup_steps: int = 500
    demo_warmup_lr: float = 3e-3
    # the warm-up's domains (built-in names); empty: add, rev, sort, count (the shipped base's)
    demo_tasks: tuple[str, ...] = ()

    def check(self) -> None:
        check(bool(self.path), "model.path", "set a local model directory, a hub name or 'demo'")
        from copd.tasks.synthetic import BUILTIN_TASKS

        unknown = [t for t in self.demo_tasks if t not in BUILTIN_TASKS]
        check(
            not unknown,
            "model.demo_tasks",
            f"{unknown} are not built-in domains; use names from {sorted(BUILTIN_TASKS)}",
        )
        check(self.branch_kind in BRANCH_KINDS, "model.branch_kind", "use 'full' or 'lora'")
        check(
            bool(self.attn_implementation.strip()),
            "model.attn_implementation",
            "use 'auto', 'eager', 'sdpa' or another transformers attention name",
        )
        check(self.lora.r > 0, "model.lora.r", "LoRA rank must be a positive integer")
        check(
            self.demo_hidden % 4 == 0 and self.demo_hidden >= 16,
            "model.demo_hidden",
            "use a multiple of 4, at least 16",
        )
        check(self.demo_layers >= 1, "model.demo_layers", "use at least 1 layer")


@dataclass(frozen=True)
class SamplingConfig:
    """Rollout sampling. Paper: temperature 1.0; plain softmax sampling (no top-k/p)."""

    temperature: float = 1.0
    max_new_tokens: int = 8
    top_p: float = 1.0
    # "hf": the built-in batched decoder (copd/policy/rollout.py). "vllm": a vLLM engine per branch
    # worker on the branch's GPU, weights synced after every update (copd/policy/rollout_vllm.py);
    # falls back to "hf" with a warning where vLLM or CUDA is missing. docs/DISTRIBUTED.md.
    engine: SamplingEngine = "hf"
    vllm_gpu_memory_utilization: float = 0.3  # share of the GPU for vLLM (weights + KV cache)
    vllm_sleep: bool = False  # offload vLLM's weights, free its KV cache while the branch trains

    def check(self) -> None:
        check(self.temperature > 0, "sampling.temperature", "must be > 0 (paper: 1.0)")
        check(self.max_new_tokens >= 1, "sampling.max_new_tokens", "must be >= 1")
        check(0 < self.top_p <= 1, "sampling.top_p", "must be in (0, 1]")
        check(self.engine in SAMPLING_ENGINES, "sampling.engine", f"use one of {SAMPLING_ENGINES}")
        check(
            0 < self.vllm_gpu_memory_utilization < 1,
            "sampling.vllm_gpu_memory_utilization",
            "must be in (0, 1): the share of the branch's GPU vLLM may take",
        )


@dataclass(frozen=True)
class GRPOConfig:
    """Group Relative Policy Optimisation on verifiable rewards.

    Paper: G=8, clip eps_low 0.2 / eps_high 0.28, no reference KL, constant lr.
    `prompts_per_step` x `group_size` rollouts per branch per step.
    """

    group_size: int = 8
    prompts_per_step: int = 16
    lr: float = 5e-4
    weight_decay: float = 0.0
    clip_low: float = 0.2
    clip_high: float = 0.28
    std_normalize: bool = True  # (r - mean) / std; False = Dr. GRPO style (r - mean)
    loss_agg: LossAgg = "token_mean"
    kl_coef: float = 0.0  # KL to the base (reference) policy; paper: none
    grad_clip: float = 1.0
    updates_per_batch: int = 1  # >1 reuses one rollout batch (PPO epochs; ratio != 1)
    # Groups whose rewards are all equal (advantage 0) skip the forward and backward; the
    # update is unchanged. Not applied with kl_coef > 0, to vision-language models or to
    # mixture-of-experts models, where those rows would change the update.
    skip_zero_advantage: bool = True
    # PPO mini-batches per rollout batch: the batch's prompt groups are split into this many
    # parts, one optimizer step each, so the clipped ratio acts from the second part on.
    minibatches: int = 1
    # Gradient accumulation: rows (whole prompt groups) per forward/backward; 0 = the whole
    # batch at once. Same gradient, activations held for one slice (GPU memory).
    micro_batch_rows: int = 0
    # Clip each loss term's gradient to grad_clip on its own and sum them (no clip of the
    # sum): a dominant OPD gradient then no longer shrinks the GRPO term's share of a
    # phase-II step (the signal balance shows OPD ~5x GRPO at beta 1 on the demo).
    clip_per_term: bool = False

    def check(self) -> None:
        check(
            self.group_size >= 2,
            "grpo.group_size",
            "GRPO needs at least 2 samples per prompt (paper: 8)",
        )
        check(self.prompts_per_step >= 1, "grpo.prompts_per_step", "must be >= 1")
        check(self.lr > 0, "grpo.lr", "must be > 0")
        check(0 <= self.clip_low < 1, "grpo.clip_low", "must be in [0, 1) (paper: 0.2)")
        check(self.clip_high >= 0, "grpo.clip_high", "must be >= 0 (paper: 0.28)")
        check(self.loss_agg in LOSS_AGGS, "grpo.loss_agg", f"use one of {LOSS_AGGS}")
        check(self.kl_coef >= 0, "grpo.kl_coef", "must be >= 0 (paper: 0)")
        check(self.updates_per_batch >= 1, "grpo.updates_per_batch", "must be >= 1")
        check(self.minibatches >= 1, "grpo.minibatches", "must be >= 1 (1 = one step per batch)")
        check(
            not (self.clip_per_term and self.micro_batch_rows),
            "grpo.clip_per_term",
            "is not combined with grpo.micro_batch_rows yet; set one of them",
        )
        check(
            self.micro_batch_rows >= 0,
            "grpo.micro_batch_rows",
            "use 0 (the whole batch at once) or the rows per forward/backward, e.g. 16",
        )
        check(
            self.prompts_per_step % self.minibatches == 0,
            "grpo.minibatches",
            f"must divide grpo.prompts_per_step ({self.prompts_per_step}) so every mini-batch "
            "holds whole prompt groups",
        )


@dataclass(frozen=True)
class OPDConfig:
    """Mutual on-policy distillation in phase II (and the OPD baselines).

    Token advantage = beta * (log p_teacher(y_t) - log p_student(y_t)), stop-gradient,
    on the student's own samples of the teacher's prompts (sampled-token reverse KL).
    Open in the paper: beta, the cross batch size, live vs frozen teacher.
    """

    beta: float = 1.0
    cross_prompts_per_step: int = 8  # prompts from EACH peer's domain per phase-II step
    cross_group_size: int = 4  # samples per cross prompt
    teacher: Teacher = "live"  # snapshot = frozen at each phase start
    native_rl: bool = True  # phase II keeps the branch's own GRPO batch (paper: yes)
    one_way: bool = False  # ablation: only the first branch (hub) teaches, nobody teaches it
    cross_weight: float = 1.0  # weight of the cross-branch loss term in the combined update
    teacher_weighting: TeacherWeighting = "mean"  # or "per_teacher" (cross_weight each)
    advantage: OPDAdvantage = "sampled"  # or "full_kl" / "topk" (direct reverse-KL losses)
    topk: int = 16  # tokens of the teacher's distribution kept by advantage="topk"
    # "teacher": the student learns the teacher's greedy answers by cross-entropy instead
    # of its own samples (supervised distillation, the calibration's ceiling; MOPD only)
    samples: OPDSamples = "student"

    def check(self) -> None:
        check(self.beta >= 0, "opd.beta", "must be >= 0")
        check(
            self.teacher_weighting in TEACHER_WEIGHTINGS,
            "opd.teacher_weighting",
            f"use one of {TEACHER_WEIGHTINGS}",
        )
        check(self.advantage in OPD_ADVANTAGES, "opd.advantage", f"use one of {OPD_ADVANTAGES}")
        check(self.samples in OPD_SAMPLES, "opd.samples", f"use one of {OPD_SAMPLES}")
        check(self.topk >= 1, "opd.topk", "must be >= 1, e.g. 16")
        check(self.cross_prompts_per_step >= 1, "opd.cross_prompts_per_step", "must be >= 1")
        check(self.cross_group_size >= 1, "opd.cross_group_size", "must be >= 1")
        check(self.teacher in TEACHERS, "opd.teacher", "use 'live' or 'snapshot'")


@dataclass(frozen=True)
class ScheduleConfig:
    """N cycles of `rl_steps` phase-I (GRPO) steps then `opd_steps` phase-II steps.

    Baselines (expert, mixed GRPO) run `total_steps()` GRPO steps per policy with the
    same rule, so budgets stay comparable; the rule is recorded with each run.
    """

    cycles: int = 8
    rl_steps: int = 6
    opd_steps: int = 4  # paper's best ratio S_RL:S_OPD = 1.5:1
    diag_every: int = 2  # diagnostics every M steps (and always at phase boundaries)
    eval_every_cycles: int = 2  # 0 = only at the end

    def total_steps(self) -> int:
        return self.cycles * (self.rl_steps + self.opd_steps)

    def check(self) -> None:
        check(self.cycles >= 1, "schedule.cycles", "must be >= 1")
        check(
            self.rl_steps >= 0 and self.opd_steps >= 0,
            "schedule.rl_steps",
            "step counts must be >= 0",
        )
        check(
            self.rl_steps + self.opd_steps >= 1,
            "schedule.rl_steps",
            "a cycle needs at least one step (rl_steps + opd_steps >= 1)",
        )
        check(
            self.total_steps() <= MAX_STEPS,
            "schedule.cycles",
            f"{self.cycles} cycles x {self.rl_steps + self.opd_steps} steps is "
            f"{self.total_steps():,} steps; at most {MAX_STEPS:,}: lower schedule.cycles",
        )
        check(self.diag_every >= 0, "schedule.diag_every", "use 0 to measure only at phase ends")


@dataclass(frozen=True)
class BranchSpec:
    """One branch: a name, the task it learns (a built-in domain or `module:factory`),
    and its device (`cpu`, `cuda`, `cuda:1`, or `auto`)."""

    name: str
    task: str
    device: str = "auto"

    def check(self) -> None:
        check(
            BRANCH_NAME.fullmatch(self.name) is not None,
            "branches.name",
            f"{self.name!r}: use letters, digits, '_', '.', '-' only",
        )
        check(
            bool(self.task), f"branches[{self.name}].task", "name a built-in task or module:factory"
        )
        check(
            DEVICE.fullmatch(self.device) is not None,
            f"branches[{self.name}].device",
            "use auto, cpu, cuda or cuda:N",
        )


@dataclass(frozen=True)
class TopologyConfig:
    """Who teaches whom in phase II: `pair` (2 branches), `hub` (hub-and-spoke: the hub
    teaches and learns from every spoke; spokes do not distil from each other), `full`."""

    kind: TopologyKind = "pair"
    hub: str | None = None  # branch name; default: the first branch

    def check(self) -> None:
        check(self.kind in TOPOLOGIES, "topology.kind", f"use one of {TOPOLOGIES}")


@dataclass(frozen=True)
class MergeConfig:
    """Final parameter merge of the branches. Paper: element-wise averaging.

    Full-weight and LoRA branches merge by the same rules (LoRA in weight-delta space)."""

    enabled: bool = True
    method: MergeMethod = "average"
    # One per branch; normalised, except task arithmetic's coefficients; empty = uniform.
    weights: tuple[float, ...] = ()
    scale: float = 1.0  # task arithmetic / TIES scaling of the summed delta
    density: float = 0.2  # TIES: fraction of each delta kept (largest magnitudes)

    def check(self) -> None:
        check(self.method in MERGE_METHODS, "merge.method", f"use one of {MERGE_METHODS}")
        check(0 < self.density <= 1, "merge.density", "must be in (0, 1]")
