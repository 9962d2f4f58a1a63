"""What a run's training code reads of its config, as frozen values built once with the world.

    loss = LossSettings.from_config(cfg, skip_zero_advantage=True)   # World.build does this
    term = grpo_term(branch, batch, loss, timer)                     # copd/train/terms.py
    world.evaluation = EvalSettings.from_config(cfg)                 # copd/train/evaluate.py

The loss terms (copd/train/terms.py) and the update step (copd/train/update.py) read
these fields and nothing else of the config: the `grpo`, `opd` and `sampling` sections
that shape a loss or an optimizer step, with the zero-advantage skip already decided for
the model at hand (`zero_advantage_skippable`). Evaluation and the overlap diagnostics
read `EvalSettings` (the `eval`, `diagnostics` and decoding fields) the same way. The
loops read `BatchSettings` (what each update draws, and from whom) and `Cadence` (when
they measure, evaluate and checkpoint); the recorded samples `SampleSettings`; the final
merge `MergeSettings`. `World.build` builds each once (`World.reconfigure` again), so a
function's configuration is the typed field it reads, never the whole config.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from copd.math.schedule import Position, position
from copd.policy.decoding import Decoding
from copd.policy.models import lora_scaling

if TYPE_CHECKING:
    from copd.spec import RunConfig, ScheduleConfig

# Config fields that mark a mixture-of-experts model across Hugging Face families
# (Qwen-MoE, Mixtral, DeepSeek, OLMoE, ...).
_MOE_CONFIG_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")


@dataclass(frozen=True)
class LossSettings:
    """What a loss term and an optimizer step need to know.

    GRPO surrogate: `clip_low`, `clip_high`, `loss_agg`, `std_normalize`, `kl_coef` (KL to
    the base). OPD: `opd_advantage` ("sampled", "full_kl", "topk"), `opd_samples` ("student",
    or "teacher": cross-entropy on the teacher's answers), `beta`, `topk`, and
    the term weights `cross_weight`, `teacher_weighting`. Sampling: `temperature` (of the
    log-probs), `max_new_tokens` (the Dr. GRPO normaliser). The step: `grad_clip`,
    `clip_per_term`, `micro_batch_rows`, `updates_per_batch`, `minibatches`; `lr`, the
    learning rate each branch's AdamW was built with (copd/policy/models.py), which the
    divergence error names (copd/train/guard.py).
    `skip_zero_advantage`: whether flat prompt groups skip their forward (the decision,
    not the config flag alone; see `zero_advantage_skippable`)."""

    clip_low: float = 0.2
    clip_high: float = 0.28
    loss_agg: str = "token_mean"
    std_normalize: bool = True
    kl_coef: float = 0.0
    opd_advantage: str = "sampled"
    opd_samples: str = "student"
    beta: float = 1.0
    topk: int = 16
    cross_weight: float = 1.0
    teacher_weighting: str = "mean"
    temperature: float = 1.0
    max_new_tokens: int = 8
    grad_clip: float = 1.0
    clip_per_term: bool = False
    micro_batch_rows: int = 0
    updates_per_batch: int = 1
    minibatches: int = 1
    lr: float = 5e-4
    skip_zero_advantage: bool = False

    @property
    def direct_opd(self) -> bool:
        """Whether OPD differentiates the reverse KL itself (no ratio, no clip)."""
        return self.opd_advantage != "sampled"

    @classmethod
    def from_config(cls, cfg: RunConfig, skip_zero_advantage: bool = False) -> LossSettings:
        g, o, s = cfg.grpo, cfg.opd, cfg.sampling
        return cls(
            clip_low=g.clip_low,
            clip_high=g.clip_high,
            loss_agg=g.loss_agg,
            std_normalize=g.std_normalize,
            kl_coef=g.kl_coef,
            opd_advantage=o.advantage,
            opd_samples=o.samples,
            beta=o.beta,
            topk=o.topk,
            cross_weight=o.cross_weight,
            teacher_weighting=o.teacher_weighting,
            temperature=s.temperature,
            max_new_tokens=s.max_new_tokens,
            grad_clip=g.grad_clip,
            clip_per_term=g.clip_per_term,
            micro_batch_rows=g.micro_batch_rows,
            updates_per_batch=g.updates_per_batch,
            minibatches=g.minibatches,
            lr=g.lr,
            skip_zero_advantage=skip_zero_advantage,
        )


def zero_advantage_skippable(cfg: RunConfig, tokenizer: object, base_module: object) -> bool:
    """Whether GRPO terms leave out prompt groups whose rewards are all equal. Exact when
    nothing but the clipped surrogate sees those rows (no KL to the base) and every
    trainable weight takes part in every forward, so that a skipped row would only have
    added zeros to gradients that exist anyway. Not so for vision-language models (a text
    batch leaves the vision weights without a gradient) or mixture-of-experts models (the
    experts a row is routed to depend on the row), where skipping is off."""
    from copd.policy.hf_cache import hf_model
    from copd.policy.vlm import is_processor

    g = cfg.grpo
    if not g.skip_zero_advantage or g.kl_coef != 0 or is_processor(tokenizer):
        return False
    config = hf_model(base_module).config
    return not any(getattr(config, k, None) for k in _MOE_CONFIG_KEYS)


@dataclass(frozen=True)
class EvalSettings:
    """What held-out evaluation and the overlap diagnostics read (copd/train/evaluate.py),
    built once from the config as `LossSettings` is (`World.evaluation`).

    Evaluation: `n_prompts` per split, `pass_k`, `validation` (the final evaluation also
    scores the validation split) and `during` ("validation": the evaluations before it
    too), `at_start` (also before the first step). Decoding: `scoring`, the held-out scores' (greedy with `eval.greedy`, else one
    sample at T = 1), and `sampled`, pass@k's and the probes' (the sampling temperature,
    at which the overlaps compare the logits); neither applies the training rollouts'
    `sampling.top_p`, and both cap completions at `sampling.max_new_tokens`. Diagnostics: `top_k` and `extra_k` (the overlaps),
    `probe_prompts` per domain x `probe_samples` each, `vs_base`. `seed`: every
    evaluation and probe stream is seeded from it (and the step)."""

    seed: int = 0
    n_prompts: int = 128
    pass_k: int = 0
    validation: bool = True
    during: str = "test"
    test_draw: str = "standard"
    at_start: bool = False
    scoring: Decoding = field(default_factory=lambda: Decoding(greedy=True))
    sampled: Decoding = field(default_factory=Decoding)
    top_k: int = 10
    extra_k: tuple[int, ...] = (1, 5)
    probe_prompts: int = 16
    probe_samples: int = 2
    vs_base: bool = True

    @classmethod
    def from_config(cls, cfg: RunConfig) -> EvalSettings:
        ev, d, s = cfg.eval, cfg.diagnostics, cfg.sampling
        return cls(
            seed=cfg.seed,
            n_prompts=ev.n_prompts,
            pass_k=ev.pass_k,
            validation=ev.validation,
            during=ev.during,
            test_draw=ev.test_draw,
            at_start=ev.at_start,
            scoring=Decoding(max_new_tokens=s.max_new_tokens, greedy=ev.greedy),  # T = 1
            sampled=Decoding(temperature=s.temperature, max_new_tokens=s.max_new_tokens),
            top_k=d.top_k,
            extra_k=tuple(d.extra_k),
            probe_prompts=d.n_prompts,
            probe_samples=d.samples_per_prompt,
            vs_base=d.vs_base,
        )


@dataclass(frozen=True)
class BatchSettings:
    """What each update draws, and from whom (the loops of copd/train/algorithms/).

    GRPO: `prompts_per_step` prompts x `group_size` samples; `per_branch_mixed`: mixed
    GRPO's control that makes T updates of K x `prompts_per_step` prompts. Phase II and
    the OPD baselines: `cross_prompts_per_step` x `cross_group_size` samples of each
    teacher's prompts, with the student's native GRPO batch too when `native_rl`; the
    teachers by `topology` ("pair", "hub" with its `hub`, "full"), `one_way` (only the hub
    teaches), `teacher` ("live" weights, or a "snapshot" per phase). `static_pair`: static
    OPD's (teacher, student) branch names; None for the other methods."""

    prompts_per_step: int = 16
    group_size: int = 8
    per_branch_mixed: bool = False
    cross_prompts_per_step: int = 8
    cross_group_size: int = 4
    native_rl: bool = True
    topology: str = "pair"
    hub: str = ""
    one_way: bool = False
    teacher: str = "live"
    static_pair: tuple[str, str] | None = None

    @classmethod
    def from_config(cls, cfg: RunConfig, static: bool = False) -> BatchSettings:
        """`static`: the run is static OPD (its method's reported model is the student)."""
        g, o = cfg.grpo, cfg.opd
        return cls(
            prompts_per_step=g.prompts_per_step,
            group_size=g.group_size,
            per_branch_mixed=cfg.mixed_steps == "per_branch",
            cross_prompts_per_step=o.cross_prompts_per_step,
            cross_group_size=o.cross_group_size,
            native_rl=o.native_rl,
            topology=cfg.topology.kind,
            hub=cfg.hub,
            one_way=o.one_way,
            teacher=o.teacher,
            static_pair=cfg.static_pair() if static else None,
        )


@dataclass(frozen=True)
class Cadence:
    """When a loop measures, evaluates and checkpoints (copd/train/algorithms/loop.py):
    CoPD's `schedule` (every loop follows its points: diagnostics every `diag_every`
    steps and at phase ends, evaluation every `eval_every_cycles`-th cycle end), a
    checkpoint every `checkpoint_every` steps too (0: at cycle ends only), and the signal
    balance of the updates at the diagnostics steps when `signal_balance`."""

    schedule: ScheduleConfig
    checkpoint_every: int = 0
    signal_balance: bool = True

    @classmethod
    def from_config(cls, cfg: RunConfig) -> Cadence:
        return cls(cfg.schedule, cfg.checkpoint_every, cfg.diagnostics.signal_balance)

    def position(self, step: int) -> Position:
        """CoPD's schedule position of `step`, continued past the schedule for longer loops,
        so baselines measure and evaluate at the same points and count cycles the same way
        (one cycle per rl_steps + opd_steps block)."""
        sc = self.schedule
        p = position(step % sc.total_steps(), sc)
        return replace(p, step=step, cycle=step // (sc.rl_steps + sc.opd_steps))


@dataclass(frozen=True)
class SampleSettings:
    """Which completions are recorded (copd/train/samples.py): at steps that are multiples
    of `every` (0: none), the first `prompts` prompts per domain; each token's top-`top_k`
    membership under every peer, and log-probs at the sampling `temperature`."""

    every: int = 10
    prompts: int = 2
    top_k: int = 10
    temperature: float = 1.0

    @classmethod
    def from_config(cls, cfg: RunConfig) -> SampleSettings:
        d = cfg.diagnostics
        return cls(d.samples_every, d.samples_prompts, d.top_k, cfg.sampling.temperature)

    def due(self, step: int) -> bool:
        """Whether samples are recorded at `step` (a diagnostics point or a phase-II update)."""
        return bool(self.every) and step % self.every == 0


@dataclass(frozen=True)
class MergeSettings:
    """The final merge of the branches (copd/train/results.py): whether it runs (`enabled`),
    its `method`, per-branch `weights` (empty: uniform), `scale` and `density`; for LoRA
    branches (`lora_scaling`, None for full-weight ones) exact, in weight-delta space."""

    enabled: bool = True
    method: str = "average"
    weights: tuple[float, ...] = ()
    scale: float = 1.0
    density: float = 0.2
    lora_scaling: float | None = None

    @classmethod
    def from_config(cls, cfg: RunConfig) -> MergeSettings:
        m = cfg.merge
        lora = lora_scaling(cfg.model) if cfg.model.branch_kind == "lora" else None
        return cls(m.enabled, m.method, tuple(m.weights), m.scale, m.density, lora)
