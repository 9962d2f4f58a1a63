"""The loss and the evaluation settings of a run as frozen values, built once from the config.

    loss = LossSettings.from_config(cfg, skip_zero_advantage=True)   # World.build does this
    term = grpo_term(branch, batch, loss, timer)                     # copd/train/terms.py
    world.evaluation = EvalSettings.from_config(cfg)                 # copd/train/evaluate.py

The loss terms (copd/train/terms.py) and the update step (copd/train/update.py) read
these fields and nothing else of the config: the `grpo`, `opd` and `sampling` sections
that shape a loss or an optimizer step, with the zero-advantage skip already decided for
the model at hand (`zero_advantage_skippable`). Evaluation and the overlap diagnostics
read `EvalSettings` (the `eval`, `diagnostics` and decoding fields) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from copd.policy.decoding import Decoding

if TYPE_CHECKING:
    from copd.spec import RunConfig

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
    `clip_per_term`, `micro_batch_rows`, `updates_per_batch`, `minibatches`.
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
    too). Decoding: `scoring`, the held-out scores' (greedy with `eval.greedy`, else one
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
            scoring=Decoding(max_new_tokens=s.max_new_tokens, greedy=ev.greedy),  # T = 1
            sampled=Decoding(temperature=s.temperature, max_new_tokens=s.max_new_tokens),
            top_k=d.top_k,
            extra_k=tuple(d.extra_k),
            probe_prompts=d.n_prompts,
            probe_samples=d.samples_per_prompt,
            vs_base=d.vs_base,
        )
