"""The config's sections about how a run is measured, watched and placed: held-out
evaluation, the overlap diagnostics, the alert rules, and the backend its branches run on.
One frozen dataclass each, checking its own fields, as the training sections of
`sections.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from copd.errors import check
from copd.spec.choices import BACKEND_KINDS, BackendKind

TEST_DRAWS = ("standard", "fresh", "fresh_or_whole")


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation of each branch and the merged model on every domain."""

    n_prompts: int = 128
    greedy: bool = True
    pass_k: int = 0  # 0 = off; otherwise pass@k with k samples at the sampling temperature
    at_start: bool = True
    # The final evaluation also scores every domain's validation split ("<task>@val",
    # "overall@val"): sweeps choose settings on it; tables report the test split.
    validation: bool = True
    # The evaluations during training: the test split ("test"), or also the validation
    # split ("validation": learning curves a setting is chosen on; needs `validation`).
    during: str = "test"
    # "fresh": the test split's prompts are a fresh draw from the held-out split, none of
    # them among the standard test prompts any earlier table scored (built-in generated
    # domains; copd/tasks/base.py `fresh_examples`). "fresh_or_whole": the same, but a
    # domain whose test split was already scored whole (add at the demo's difficulty)
    # scores that whole split, each input once (`fresh_or_whole_examples`; the run's log
    # names those domains). "standard": the standard test prompts.
    test_draw: str = "standard"

    def check(self) -> None:
        check(self.n_prompts >= 1, "eval.n_prompts", "must be >= 1")
        check(self.during in ("test", "validation"), "eval.during", "use 'test' or 'validation'")
        check(
            self.test_draw in TEST_DRAWS,
            "eval.test_draw",
            "use 'standard', 'fresh' or 'fresh_or_whole'",
        )
        check(
            self.during == "test" or self.validation,
            "eval.during",
            "'validation' needs eval.validation=true",
        )
        check(self.pass_k >= 0, "eval.pass_k", "use 0 (off) or k >= 1")


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
    # Signal balance at every diagnostics step (phase II): each loss term's own gradient
    # norm and its cosine with the GRPO term's (names.signal_key). Costs one flat copy of
    # the gradient per term at those steps only.
    signal_balance: bool = True
    # Samples (copd/train/samples.py): the completions of the first `samples_prompts` probe
    # prompts per domain (first sample of each), per branch, with per-token log-probs under
    # every peer and the base, at the diagnostics points whose step is a multiple of
    # `samples_every` (0: never); in phase II also the cross (OPD) batch's first prompts with
    # the teacher's log-prob of each token. At most `samples_cap` rows per run are kept: past
    # it every second recorded step is thinned out (the first and the newest stay).
    samples_every: int = 10
    samples_prompts: int = 2
    samples_cap: int = 5000
    # System metrics sampled by a background thread every this many seconds while the run
    # trains (host CPU and RAM; each visible GPU's utilisation, memory, power and temperature
    # through nvidia-ml-py): copd/train/system_metrics.py. 0 turns the thread off.
    system_every_s: float = 10.0

    def check(self) -> None:
        check(self.top_k >= 1, "diagnostics.top_k", "must be >= 1 (paper: 10)")
        check(
            self.system_every_s == 0 or self.system_every_s >= 0.01,
            "diagnostics.system_every_s",
            "use 0 (off) or a period in seconds, e.g. 10",
        )
        check(self.samples_every >= 0, "diagnostics.samples_every", "use 0 to record no samples")
        check(self.samples_prompts >= 1, "diagnostics.samples_prompts", "must be >= 1")
        check(
            self.samples_cap >= 100,
            "diagnostics.samples_cap",
            "must be >= 100 rows (each row is one completion, about 1 KB per 64 tokens)",
        )
        check(all(k >= 1 for k in self.extra_k), "diagnostics.extra_k", "every k must be >= 1")
        check(
            self.n_prompts >= 1 and self.samples_per_prompt >= 1,
            "diagnostics.n_prompts",
            "must be >= 1",
        )


@dataclass(frozen=True)
class BackendConfig:
    """Where the CoPD branches run (docs/DISTRIBUTED.md).

    `local`: every branch in this process (with several GPUs, `auto` branch devices go to
    cuda:0, cuda:1, ... round-robin). `ray`: every branch is a Ray actor with its own model
    copy, optimizer and RNGs; the driver keeps only the base model (vs-base diagnostics and
    the merge). Same seed, same metrics on either back end. Ray runs the `copd` method only.
    """

    kind: BackendKind = "local"
    # None: start a private Ray instance on this machine, bound to 127.0.0.1;
    # "auto" or "ray://host:10001": join an existing cluster (`ray start --head` first).
    ray_address: str | None = None
    num_gpus_per_branch: float = 0.0  # GPUs each branch actor reserves (1 on a GPU cluster)
    num_cpus_per_branch: float = 1.0
    ray_temp_dir: str | None = None  # private instance only; default: $COPD_HOME/ray

    def check(self) -> None:
        check(self.kind in BACKEND_KINDS, "backend.kind", "use 'local' or 'ray'")
        check(
            self.ray_address is None
            or self.ray_address == "auto"
            or self.ray_address.startswith("ray://"),
            "backend.ray_address",
            "use null (private local instance), 'auto' or 'ray://HOST:PORT'",
        )
        check(self.num_gpus_per_branch >= 0, "backend.num_gpus_per_branch", "must be >= 0")
        check(self.num_cpus_per_branch >= 0, "backend.num_cpus_per_branch", "must be >= 0")


@dataclass(frozen=True)
class AlertsConfig:
    """Alert thresholds, checked by the dashboard's supervisor on the run's stored metrics
    and status (app/control/alerts.py); each rule fires at most once per run. 0 turns a threshold
    rule off. Nothing leaves the machine: alerts are events in the run store."""

    enabled: bool = True
    nonfinite: bool = True  # NaN/inf in a loss or a reward
    reward_drop: float = 0.5  # a branch's reward falls below (1 - this) x its best so far
    reward_min_best: float = 0.2  # ... once that best is at least this
    overlap_min: float = 0.1  # the latest mean top-k overlap between branches below this
    stall_s: float = 300.0  # a running run's heartbeat older than this many seconds
    crashed: bool = True  # the run ended crashed or failed

    def check(self) -> None:
        check(0 <= self.reward_drop < 1, "alerts.reward_drop", "use 0 (off) to < 1")
        check(self.reward_min_best >= 0, "alerts.reward_min_best", "must be >= 0")
        check(0 <= self.overlap_min <= 1, "alerts.overlap_min", "use 0 (off) to 1")
        check(self.stall_s >= 0, "alerts.stall_s", "use 0 (off) or seconds")


@dataclass(frozen=True)
class BenchmarkSpec:
    """A benchmark scored apart from the training domains (the paper's tables: MathVista,
    MATH-500, ... grouped by the capability they measure).

    `task` is a task string as a branch takes: a built-in domain (`sort`), a data file
    (`dataset#label`, its path, field mapping, verifier, prompt template and system prompt
    in `task_options`; the whole file is the benchmark unless its options name an
    `eval_path`) or a reasoning-gym dataset (`rg:<name>`). `capability` is the table's
    column group; `n_prompts` caps its size (0: `eval.n_prompts`); `pass_k` scores pass@k
    with k samples at the sampling temperature (0: greedy, as `eval.greedy`);
    `system_prompt` replaces every example's system prompt (empty: the task's own)."""

    name: str
    task: str
    capability: str = ""
    n_prompts: int = 0
    pass_k: int = 0
    system_prompt: str = ""

    def check(self) -> None:
        where = f"benchmarks[{self.name}]"
        check(
            bool(self.name) and "@" not in self.name and "/" not in self.name,
            f"{where}.name",
            "name it with letters, digits, '-', '_' or '.' (no '@' or '/')",
        )
        check(bool(self.task), f"{where}.task", "name a built-in task, dataset#LABEL or rg:NAME")
        check(self.n_prompts >= 0, f"{where}.n_prompts", "use 0 (eval.n_prompts) or a count")
        check(self.pass_k >= 0, f"{where}.pass_k", "use 0 (greedy) or k >= 1")
