"""Typed, frozen run configuration for CoPD and its baselines.

One `RunConfig` describes a whole run: the base model, the branches (one per domain),
sampling, GRPO, on-policy distillation (OPD), the cycle schedule, the topology of the
mutual-OPD graph, the final merge, evaluation and diagnostics. Defaults follow the paper
(arXiv 2604.27083) wherever it gives a value; what it leaves open is a documented field.

    cfg = RunConfig.from_json(path)                     # or presets.get("demo")
    cfg = apply_overrides(cfg, ["grpo.group_size=8"])   # --set on the command line
    cfg.validate()                                      # raises ConfigError naming field + fix

Paper values: G=8, temperature 1.0, clip 0.2/0.28, no reference KL, S_RL:S_OPD = 1.5:1,
top-k overlap k=10, constant learning rate. Open in the paper (our defaults documented on
each field): beta, the number of cycles N, the native/cross split of a phase-II batch,
merge weights, live vs frozen teacher.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

METHODS = ("copd", "expert", "mixed", "static_opd", "mopd", "weight_average")
TOPOLOGIES = ("pair", "hub", "full")
LOSS_AGGS = ("token_mean", "seq_mean_token_mean", "dr_grpo")
MERGE_METHODS = ("average", "weighted", "task_arithmetic", "ties")
SAMPLING_ENGINES = ("hf", "vllm")


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the field and the fix."""


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
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    branch_kind: Literal["full", "lora"] = "full"
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


@dataclass(frozen=True)
class SamplingConfig:
    """Rollout sampling. Paper: temperature 1.0; plain softmax sampling (no top-k/p)."""

    temperature: float = 1.0
    max_new_tokens: int = 8
    top_p: float = 1.0
    # "hf": the built-in batched decoder (copd/rollout.py). "vllm": a vLLM engine per branch
    # worker on the branch's GPU, weights synced after every update (copd/rollout_vllm.py);
    # falls back to "hf" with a warning where vLLM or CUDA is missing. docs/DISTRIBUTED.md.
    engine: Literal["hf", "vllm"] = "hf"
    vllm_gpu_memory_utilization: float = 0.3  # share of the GPU for vLLM (weights + KV cache)
    vllm_sleep: bool = False  # offload vLLM's weights, free its KV cache while the branch trains


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
    loss_agg: Literal["token_mean", "seq_mean_token_mean", "dr_grpo"] = "token_mean"
    kl_coef: float = 0.0  # KL to the base (reference) policy; paper: none
    grad_clip: float = 1.0
    updates_per_batch: int = 1  # >1 reuses one rollout batch (PPO epochs; ratio != 1)
    # Groups whose rewards are all equal (advantage 0) skip the forward and backward; the
    # update is unchanged. Not applied with kl_coef > 0, to vision-language models or to
    # mixture-of-experts models, where those rows would change the update.
    skip_zero_advantage: bool = True


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
    teacher: Literal["live", "snapshot"] = "live"  # snapshot = frozen at each phase start
    native_rl: bool = True  # phase II keeps the branch's own GRPO batch (paper: yes)
    one_way: bool = False  # ablation: only the first branch (hub) teaches, nobody teaches it
    cross_weight: float = 1.0  # weight of the cross-branch loss term in the combined update


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


@dataclass(frozen=True)
class BranchSpec:
    """One branch: a name, the task it learns (a built-in domain or `module:factory`),
    and its device (`cpu`, `cuda`, `cuda:1`, or `auto`)."""

    name: str
    task: str
    device: str = "auto"


@dataclass(frozen=True)
class TopologyConfig:
    """Who teaches whom in phase II: `pair` (2 branches), `hub` (hub-and-spoke: the hub
    teaches and learns from every spoke; spokes do not distil from each other), `full`."""

    kind: Literal["pair", "hub", "full"] = "pair"
    hub: str | None = None  # branch name; default: the first branch


@dataclass(frozen=True)
class MergeConfig:
    """Final parameter merge of the branches. Paper: element-wise averaging."""

    enabled: bool = True
    method: Literal["average", "weighted", "task_arithmetic", "ties"] = "average"
    weights: tuple[float, ...] = ()  # for `weighted` (normalised); empty = uniform
    scale: float = 1.0  # task arithmetic / TIES scaling of the summed delta
    density: float = 0.2  # TIES: fraction of each delta kept (largest magnitudes)


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation of each branch and the merged model on every domain."""

    n_prompts: int = 128
    greedy: bool = True
    pass_k: int = 0  # 0 = off; otherwise pass@k with k samples at the sampling temperature
    at_start: bool = True


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Behavioural overlap diagnostics on the student's own rollouts.

    Top-k overlap O_k (paper: k=10), symmetric KL KL(p||q)+KL(q||p) over the full
    vocabulary, overlap mass and entropy, for every ordered branch pair and each branch
    against the base model.
    """

    top_k: int = 10
    extra_k: tuple[int, ...] = (1, 5)
    n_prompts: int = 16  # per domain
    samples_per_prompt: int = 2
    vs_base: bool = True


@dataclass(frozen=True)
class BackendConfig:
    """Where the CoPD branches run (docs/DISTRIBUTED.md).

    `local`: every branch in this process (with several GPUs, `auto` branch devices go to
    cuda:0, cuda:1, ... round-robin). `ray`: every branch is a Ray actor with its own model
    copy, optimizer and RNGs; the driver keeps only the base model (vs-base diagnostics and
    the merge). Same seed, same metrics on either back end. Ray runs the `copd` method only.
    """

    kind: Literal["local", "ray"] = "local"
    # None: start a private Ray instance on this machine, bound to 127.0.0.1;
    # "auto" or "ray://host:10001": join an existing cluster (`ray start --head` first).
    ray_address: str | None = None
    num_gpus_per_branch: float = 0.0  # GPUs each branch actor reserves (1 on a GPU cluster)
    num_cpus_per_branch: float = 1.0
    ray_temp_dir: str | None = None  # private instance only; default: $COPD_HOME/ray


@dataclass(frozen=True)
class RunConfig:
    """A whole run. `method` picks the algorithm: CoPD or one of the baselines."""

    name: str = "copd-demo"
    method: Literal["copd", "expert", "mixed", "static_opd", "mopd", "weight_average"] = "copd"
    seed: int = 0
    group: str | None = None  # ablation set this run belongs to
    threads: int = 0  # torch threads; 0 = all cores (CPU) / leave default
    model: ModelConfig = field(default_factory=ModelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    opd: OPDConfig = field(default_factory=OPDConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    branches: tuple[BranchSpec, ...] = (
        BranchSpec("add", "add"),
        BranchSpec("rev", "rev"),
    )
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per task kwargs
    # Baseline knobs (see copd/algorithms): static OPD direction "A->B" (teacher->student),
    # and which branch a single-domain expert run trains.
    static_direction: str | None = None
    checkpoint_every: int = 0  # steps; 0 = only at phase ends and on SIGTERM

    # ------------------------------------------------------------------ validation
    def validate(self) -> RunConfig:
        """Check every field before any work starts; raise ConfigError naming the fix."""
        _check(self.method in METHODS, "method", f"must be one of {METHODS}")
        _check(self.seed >= 0, "seed", "must be >= 0")
        _check(self.threads >= 0, "threads", "use 0 for the default or a positive count")
        m = self.model
        _check(bool(m.path), "model.path", "set a local model directory, a hub name or 'demo'")
        _check(m.branch_kind in ("full", "lora"), "model.branch_kind", "use 'full' or 'lora'")
        _check(
            bool(m.attn_implementation.strip()),
            "model.attn_implementation",
            "use 'auto', 'eager', 'sdpa' or another transformers attention name",
        )
        _check(m.lora.r > 0, "model.lora.r", "LoRA rank must be a positive integer")
        _check(
            m.demo_hidden % 4 == 0 and m.demo_hidden >= 16,
            "model.demo_hidden",
            "use a multiple of 4, at least 16",
        )
        _check(m.demo_layers >= 1, "model.demo_layers", "use at least 1 layer")
        s = self.sampling
        _check(s.temperature > 0, "sampling.temperature", "must be > 0 (paper: 1.0)")
        _check(s.max_new_tokens >= 1, "sampling.max_new_tokens", "must be >= 1")
        _check(0 < s.top_p <= 1, "sampling.top_p", "must be in (0, 1]")
        _check(s.engine in SAMPLING_ENGINES, "sampling.engine", f"use one of {SAMPLING_ENGINES}")
        _check(
            0 < s.vllm_gpu_memory_utilization < 1,
            "sampling.vllm_gpu_memory_utilization",
            "must be in (0, 1): the share of the branch's GPU vLLM may take",
        )
        g = self.grpo
        _check(
            g.group_size >= 2,
            "grpo.group_size",
            "GRPO needs at least 2 samples per prompt (paper: 8)",
        )
        _check(g.prompts_per_step >= 1, "grpo.prompts_per_step", "must be >= 1")
        _check(g.lr > 0, "grpo.lr", "must be > 0")
        _check(0 <= g.clip_low < 1, "grpo.clip_low", "must be in [0, 1) (paper: 0.2)")
        _check(g.clip_high >= 0, "grpo.clip_high", "must be >= 0 (paper: 0.28)")
        _check(g.loss_agg in LOSS_AGGS, "grpo.loss_agg", f"use one of {LOSS_AGGS}")
        _check(g.kl_coef >= 0, "grpo.kl_coef", "must be >= 0 (paper: 0)")
        _check(g.updates_per_batch >= 1, "grpo.updates_per_batch", "must be >= 1")
        o = self.opd
        _check(o.beta >= 0, "opd.beta", "must be >= 0")
        _check(o.cross_prompts_per_step >= 1, "opd.cross_prompts_per_step", "must be >= 1")
        _check(o.cross_group_size >= 1, "opd.cross_group_size", "must be >= 1")
        _check(o.teacher in ("live", "snapshot"), "opd.teacher", "use 'live' or 'snapshot'")
        sc = self.schedule
        _check(sc.cycles >= 1, "schedule.cycles", "must be >= 1")
        _check(
            sc.rl_steps >= 0 and sc.opd_steps >= 0, "schedule.rl_steps", "step counts must be >= 0"
        )
        _check(
            sc.rl_steps + sc.opd_steps >= 1,
            "schedule.rl_steps",
            "a cycle needs at least one step (rl_steps + opd_steps >= 1)",
        )
        _check(sc.diag_every >= 0, "schedule.diag_every", "use 0 to measure only at phase ends")
        names = [b.name for b in self.branches]
        _check(len(names) >= 1, "branches", "add at least one branch")
        _check(len(set(names)) == len(names), "branches", f"branch names must be unique: {names}")
        for b in self.branches:
            _check(
                re.fullmatch(r"[A-Za-z0-9_.-]+", b.name) is not None,
                "branches.name",
                f"{b.name!r}: use letters, digits, '_', '.', '-' only",
            )
            _check(
                bool(b.task), f"branches[{b.name}].task", "name a built-in task or module:factory"
            )
            _check(
                re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", b.device) is not None,
                f"branches[{b.name}].device",
                "use auto, cpu, cuda or cuda:N",
            )
        if self.method in ("copd", "static_opd", "weight_average"):
            _check(len(names) >= 2, "branches", f"method {self.method!r} needs >= 2 branches")
        if self.method == "mopd":
            _check(len(names) >= 2, "branches", "MOPD needs >= 2 domain experts as teachers")
        t = self.topology
        _check(t.kind in TOPOLOGIES, "topology.kind", f"use one of {TOPOLOGIES}")
        if t.kind == "pair" and self.method == "copd":
            _check(
                len(names) == 2,
                "topology.kind",
                f"'pair' needs exactly 2 branches (got {len(names)}); use 'hub' or 'full'",
            )
        if t.hub is not None:
            _check(
                t.hub in names, "topology.hub", f"{t.hub!r} is not a branch; pick one of {names}"
            )
        mg = self.merge
        _check(mg.method in MERGE_METHODS, "merge.method", f"use one of {MERGE_METHODS}")
        if mg.method == "weighted":
            _check(
                len(mg.weights) == len(names),
                "merge.weights",
                f"give one weight per branch ({len(names)})",
            )
            _check(
                all(w >= 0 for w in mg.weights) and sum(mg.weights) > 0,
                "merge.weights",
                "weights must be >= 0 and not all zero",
            )
        _check(0 < mg.density <= 1, "merge.density", "must be in (0, 1]")
        _check(self.eval.n_prompts >= 1, "eval.n_prompts", "must be >= 1")
        _check(self.eval.pass_k >= 0, "eval.pass_k", "use 0 (off) or k >= 1")
        d = self.diagnostics
        _check(d.top_k >= 1, "diagnostics.top_k", "must be >= 1 (paper: 10)")
        _check(all(k >= 1 for k in d.extra_k), "diagnostics.extra_k", "every k must be >= 1")
        _check(
            d.n_prompts >= 1 and d.samples_per_prompt >= 1, "diagnostics.n_prompts", "must be >= 1"
        )
        if self.method == "static_opd" and self.static_direction is not None:
            parts = self.static_direction.split("->")
            _check(
                len(parts) == 2 and all(p in names for p in parts) and parts[0] != parts[1],
                "static_direction",
                f"write TEACHER->STUDENT with two branch names from {names}",
            )
        _check(self.checkpoint_every >= 0, "checkpoint_every", "use 0 or a step count")
        bk = self.backend
        _check(bk.kind in ("local", "ray"), "backend.kind", "use 'local' or 'ray'")
        if bk.kind == "ray":
            _check(
                self.method == "copd",
                "backend.kind",
                f"'ray' runs the copd method only; use 'local' for {self.method!r}",
            )
        _check(
            bk.ray_address is None
            or bk.ray_address == "auto"
            or bk.ray_address.startswith("ray://"),
            "backend.ray_address",
            "use null (private local instance), 'auto' or 'ray://HOST:PORT'",
        )
        _check(bk.num_gpus_per_branch >= 0, "backend.num_gpus_per_branch", "must be >= 0")
        _check(bk.num_cpus_per_branch >= 0, "backend.num_cpus_per_branch", "must be >= 0")
        return self

    # ------------------------------------------------------------------ derived
    @property
    def branch_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.branches)

    @property
    def hub(self) -> str:
        return self.topology.hub or self.branches[0].name

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(self)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        return _from_dict(cls, data, prefix="")

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist; pass a preset name or a path")
        text = p.read_text()
        if p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
        return cls.from_dict(data)


def _check(ok: bool, name: str, fix: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {fix}")


def _to_jsonable(obj: Any) -> Any:
    if is_dataclass(obj):
        return {f.name: _to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_to_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    return obj


def _from_dict(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected an object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"{prefix + '.' if prefix else ''}{sorted(unknown)[0]}: unknown field; "
            f"known fields are {sorted(known)}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}.{name}" if prefix else name)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
    if is_dataclass(tp):
        return _from_dict(tp, value, name)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        return tuple(_coerce(inner, v, f"{name}[{i}]") for i, v in enumerate(value))
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name}: {value!r} is not allowed; use one of {list(args)}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected an object, got {value!r}")
        return dict(value)
    if args and type(None) in args:  # Optional[X]
        if value is None:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(non_none[0], value, name)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str, float)):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


def apply_overrides(cfg: RunConfig, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """Apply `dotted.path=value` overrides (values parsed as JSON when they parse, else
    taken as strings): `grpo.group_size=8`, `branches=[{"name":"a","task":"add"}]`."""
    data = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. grpo.group_size=8")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node, dict) or p not in node:
                raise ConfigError(f"--set {key}: unknown field {p!r}")
            node = node[p]
        if not isinstance(node, dict) or (
            parts[-1] not in node and node is not data.get("task_options")
        ):
            raise ConfigError(f"--set {key}: unknown field {parts[-1]!r}")
        node[parts[-1]] = value
    return RunConfig.from_dict(data)


def config_diff(
    a: dict[str, Any], b: dict[str, Any], prefix: str = ""
) -> dict[str, tuple[Any, Any]]:
    """Flattened `dotted.key -> (a_value, b_value)` for every leaf that differs."""
    out: dict[str, tuple[Any, Any]] = {}
    for k in sorted(set(a) | set(b)):
        key = f"{prefix}{k}"
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.update(config_diff(va, vb, key + "."))
        elif va != vb:
            out[key] = (va, vb)
    return out


def field_docs(cls: type = RunConfig) -> dict[str, str]:
    """Help text per field of a config section (from the class docstring; for forms)."""
    return {f.name: (cls.__doc__ or "").strip().splitlines()[0] for f in fields(cls)}


def replace_in(cfg: RunConfig, **sections: Any) -> RunConfig:
    """`dataclasses.replace` that accepts `section__field=value` for nested sections."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in sections.items():
        if "__" in key:
            sec, fld = key.split("__", 1)
            nested.setdefault(sec, {})[fld] = value
        else:
            top[key] = value
    for sec, vals in nested.items():
        top[sec] = replace(getattr(cfg, sec), **vals)
    return dataclasses.replace(cfg, **top)


def parse_seeds(text: str) -> list[int]:
    """Seeds from "0, 1, 2" or an inclusive range "0-2" -> [0, 1, 2] (CLI and forms)."""
    text = text.strip()
    m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", text)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if hi < lo:
            raise ConfigError(f"seeds: range {text!r} is empty; write low-high, e.g. 0-2")
        return list(range(lo, hi + 1))
    try:
        seeds = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(f"seeds: {text!r} is not a list; write 0,1,2 or 0-2") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError("seeds: give non-negative integers, e.g. 0, 1, 2")
    return seeds
