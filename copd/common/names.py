"""Metric names, defined once. Every algorithm logs through these so the dashboard can
overlay CoPD and its baselines.

Scopes: `branch/<b>/...` (one branch), `pair/<student>~<teacher>/...` (ordered pair: the
student's rollouts, the teacher's distribution), `base/<b>/...` (branch vs the base model),
`merged/...`, `time/...` (seconds per phase part), `system/...` (CPU/RAM/GPU), `run/...`.
"""

from __future__ import annotations

from dataclasses import dataclass

PAIR_SEP = "~"


def branch(b: str, key: str) -> str:
    """e.g. branch("add", "reward/mean") -> "branch/add/reward/mean"."""
    return f"branch/{b}/{key}"


def pair(student: str, teacher: str, key: str) -> str:
    """e.g. pair("add", "rev", "overlap_top10") -> "pair/add~rev/overlap_top10"."""
    return f"pair/{student}{PAIR_SEP}{teacher}/{key}"


def vs_base(b: str, key: str) -> str:
    return f"base/{b}/{key}"


def merged(key: str) -> str:
    return f"merged/{key}"


def overlap_key(k: int) -> str:
    return f"overlap_top{k}"


def reward_on(task: str) -> str:
    """Mean reward on a given domain's prompts (native or cross), under branch/<b>/:
    reward_on("rev") -> "reward_on/rev"."""
    return f"reward_on/{task}"


VAL_SUFFIX = "@val"  # a benchmark scored on the validation split: "add@val", "overall@val"


def val_bench(bench: str) -> str:
    """The validation-split name of a benchmark: val_bench("add") -> "add@val"."""
    return f"{bench}{VAL_SUFFIX}"


BENCH_SUFFIX = "@bench"  # a benchmark apart from the training domains: "sort-cap@bench"


def bench_key(name: str) -> str:
    """The evaluation name of a configured benchmark (`benchmarks` of a run config), kept
    apart from the training domains' scores and their Overall: bench_key("gsm8k") ->
    "gsm8k@bench"."""
    return f"{name}{BENCH_SUFFIX}"


def is_bench_key(key: str) -> bool:
    """Whether an evaluation name is a configured benchmark's score (`bench_key`)."""
    return key.endswith(BENCH_SUFFIX)


def is_test_bench(bench: str) -> bool:
    """A per-domain held-out test score (not overall, not pass@k, not validation)."""
    return bench.lower() != "overall" and "@" not in bench


def time_key(part: str) -> str:
    """Seconds spent in one part of a step (the engine's Timer keys: rollout, teacher,
    forward, update, eval, diagnostics, weight_sync, logging): time_key("rollout") ->
    "time/rollout_s"."""
    return f"{TIME_PREFIX}{part}_s"


# Signal balance (under branch/<b>/, at diagnostics steps of phase II): how much each term
# of the combined update `L_GRPO + cross_weight * sum/mean_t L_OPD(t)` moves the weights.
SIGNAL_PREFIX = "signal/"
SIGNAL_GRAD_GRPO = "signal/grad_norm/grpo"  # ||grad of the native GRPO term||
SIGNAL_ADV_GRPO = "signal/adv_abs/grpo"  # mean |GRPO advantage| over native tokens


def signal_key(kind: str, teacher: str | None = None) -> str:
    """A signal-balance metric, per cross (OPD) term when `teacher` is given:
    kind "grad_norm" | "adv_abs" | "cos" (cosine of the term's gradient with the GRPO
    term's) | "pos_frac" (share of cross tokens with log p_T > log p_S) | "log_ratio"
    (mean log p_T - log p_S, an estimate of -KL(student||teacher)) | "move" (how far the
    step moved the weights along the term's descent direction, -delta . g / |g|) |
    "move_solo" (the same for a step on the GRPO term alone from the same state) |
    "grad_norm_matched" (the GRPO gradient norm over as many rows as the cross term has) |
    "cos_halves" (cosine of the GRPO gradients of the native batch's two halves) |
    "cos_peer" (cosine of the GRPO gradient on the own domain and on the peer's prompts) |
    "cos_peer_rl" (per teacher: cosine of the OPD term's gradient with a GRPO gradient on
    that teacher's cross batch, its prompts and its rewards: does distillation point where
    the peer's RL would).
    signal_key("cos", "rev") -> "signal/cos/rev"."""
    return f"{SIGNAL_PREFIX}{kind}/{teacher}" if teacher else f"{SIGNAL_PREFIX}{kind}/grpo"


OWNED = ("branch", "pair", "base")  # scopes whose second part names a branch or a pair


@dataclass(frozen=True)
class Name:
    """A metric name taken apart: `branch/add/reward_on/rev` -> kind "branch", owner "add",
    key "reward_on/rev". Kinds: "branch", "pair", "base" (each with an owner), "merged",
    "time", "system", "run", "signal"... (the first part), "" for a bare name."""

    kind: str
    owner: str  # the branch, or "student~teacher" for a pair; "" elsewhere
    key: str  # the rest of the name

    @property
    def student(self) -> str:
        """A pair's student (whose samples it is measured on); a branch's own name."""
        return self.owner.split(PAIR_SEP)[0]

    @property
    def teacher(self) -> str:
        """A pair's teacher ("" for anything else)."""
        return self.owner.split(PAIR_SEP)[1] if PAIR_SEP in self.owner else ""

    def is_(self, kind: str, key: str | None = None) -> bool:
        """Of scope `kind` (and exactly `key` after the owner, when given)."""
        return self.kind == kind and (key is None or self.key == key)

    def under(self, kind: str, prefix: str) -> bool:
        """Of scope `kind` with a key starting `prefix` (e.g. "reward_on/")."""
        return self.kind == kind and self.key.startswith(prefix)


def parse(name: str) -> Name:
    """The inverse of the builders above: parse(pair("add", "rev", SYM_KL)) ==
    Name("pair", "add~rev", "sym_kl"); parse(time_key("rollout")) == Name("time", "",
    "rollout_s"). A name the grammar does not know parses as kind "" (key: the name)."""
    parts = name.split("/")
    if parts[0] in OWNED and len(parts) >= 3:
        return Name(parts[0], parts[1], "/".join(parts[2:]))
    if len(parts) >= 2:
        return Name(parts[0], "", "/".join(parts[1:]))
    return Name("", "", name)


def scope_of(name: str) -> str:
    """The scope a metric belongs to: the branch name, "a~b" for a pair, "merged", or ""."""
    n = parse(name)
    if n.kind in OWNED:
        return n.owner
    return "merged" if n.kind == "merged" else ""


# Per-branch training metrics (under branch/<b>/)
REWARD_MEAN = "reward/mean"  # mean verifier reward of the native GRPO batch
PG_LOSS = "loss/pg"
OPD_LOSS = "loss/opd"
OPD_ADV_MEAN = "opd/adv_mean"  # mean beta*(log p_T - log p_S) over cross tokens
OPD_REVERSE_KL = "opd/reverse_kl"  # mean (log p_S - log p_T) on sampled tokens
CLIP_FRAC = "clip_frac"
GRAD_NORM = "grad_norm"
ENTROPY = "entropy"
RESPONSE_LEN = "response_len"
SIGNAL_FRAC = "signal_frac"  # share of prompt groups whose rewards differ (nonzero advantage)

# Pair/base diagnostics keys (under pair/<s>~<t>/ or base/<b>/), besides overlap_key(k)
SYM_KL = "sym_kl"  # KL(p||q) + KL(q||p) over the vocabulary
OVERLAP_MASS = "overlap_mass"
ENTROPY_GAP = "entropy_gap"  # mean |H(teacher) - H(student)|
ENTROPY_STUDENT = "entropy_student"
ENTROPY_TEACHER = "entropy_teacher"

# Timing breakdown: time_key(part)
TIME_PREFIX = "time/"

# Process resources, logged with the diagnostics
SYSTEM_RSS_MB = "system/rss_mb"
SYSTEM_CPU_PERCENT = "system/cpu_percent"
SYSTEM_GPU_MEM_MB = "system/gpu_mem_mb"  # peak CUDA memory allocated by this process

# The machine, sampled every diagnostics.system_every_s seconds by a background thread
# (copd/train/system_metrics.py): the host under system/host/, each GPU this process sees
# under system/gpu/<i>/ (i: its CUDA index in this process).
SYSTEM_HOST_CPU_PERCENT = "system/host/cpu_percent"  # all cores, 100 = every core busy
SYSTEM_HOST_RAM_MB = "system/host/ram_used_mb"
SYSTEM_HOST_RAM_PERCENT = "system/host/ram_percent"
GPU_UTIL_PERCENT = "util_percent"
GPU_MEM_USED_MB = "mem_used_mb"
GPU_MEM_PERCENT = "mem_percent"
GPU_POWER_W = "power_w"
GPU_TEMP_C = "temp_c"


def system_gpu(index: int, key: str) -> str:
    """A GPU's sampled metric: system_gpu(0, GPU_POWER_W) -> "system/gpu/0/power_w"."""
    return f"system/gpu/{index}/{key}"


# Run progress
PROGRESS = "run/progress"  # fraction of the schedule done, in [0, 1]
