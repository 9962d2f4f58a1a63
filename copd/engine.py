"""The training world and its primitives: rollouts with rewards, GRPO and OPD loss terms,
one optimizer update per branch, teacher scoring. Algorithms (copd/algorithms/) are
readable loops over these.

    world = World.build(cfg, logger)          # base model, tokenizer, tasks, branches, RNGs
    batch = world.rollout(branch.view, examples, group_size)   # samples + verifier rewards
    term = grpo_term(world, branch, batch)                      # differentiable loss + stats
    grad_norm = update(world, branch, [(1.0, term), ...])       # one AdamW step
    res = optimize(world, branch, [TermSpec(1.0, batch), TermSpec(w, cross, "rev", scores)])
                                         # updates_per_batch x minibatches steps, stats, signal

Every random draw comes from RNGs held by the world (a `random.Random` per branch for
prompts, one `torch.Generator` for sampling) so a checkpoint can restore them exactly.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from copd import names as N
from copd.config import ConfigError, RunConfig
from copd.logger import Logger, NullLogger
from copd.losses import aggregate, group_advantages, kl_penalty, opd_advantage, policy_loss
from copd.models import (
    Branch,
    PolicyView,
    load_policy,
    make_branches,
    resolve_model_path,
    set_attention,
)
from copd.rollout import (
    RolloutBatch,
    completion_logits,
    logprobs_from_logits,
    sample_rollout_sets,
)
from copd.tasks import Example, Task, get_task


class TrainingCancelled(Exception):
    """Raised by a loop after it checkpointed because a stop was requested (SIGTERM)."""


class Timer:
    """Accumulates wall seconds per part (`time/rollout_s`, ...) between `pop()` calls."""

    def __init__(self) -> None:
        self.acc: dict[str, float] = defaultdict(float)
        self.total: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, key: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.acc[key] += dt
            self.total[key] += dt

    def pop(self) -> dict[str, float]:
        out = dict(self.acc)
        self.acc.clear()
        return out


@dataclass
class LossTerm:
    """A differentiable loss for one batch plus detached statistics to log."""

    loss: torch.Tensor
    stats: dict[str, float] = field(default_factory=dict)


def set_threads(n: int) -> None:
    """torch threads: explicit `threads`, else $COPD_THREADS (set by the launcher), else
    all cores. Decode is dispatch-bound; only forward/backward gain from threads."""
    n = n or int(os.environ.get("COPD_THREADS", "0") or 0) or (os.cpu_count() or 1)
    torch.set_num_threads(n)


@dataclass
class World:
    cfg: RunConfig
    tokenizer: object
    tasks: dict[str, Task]  # by task spec string
    branches: list[Branch]
    base: PolicyView
    logger: Logger
    rngs: dict[str, random.Random]  # prompt sampling, per branch (and "mixed", "diag")
    gen: torch.Generator  # token sampling
    step: int = 0
    timer: Timer = field(default_factory=Timer)
    stop_requested: bool = False
    teachers: dict[str, PolicyView] = field(default_factory=dict)  # snapshots when frozen
    base_path: str = ""
    resume_extra: dict = field(default_factory=dict)  # a restored checkpoint's `extra`
    # Token sampling per branch for loops that run through copd/workers (CoPD): a stream
    # per branch, seeded from (seed, name), so an in-process run and one with a Ray actor
    # per branch draw the same tokens.
    gens: dict[str, torch.Generator] = field(default_factory=dict)
    restored_from: str = ""  # the checkpoint folder `checkpoint.restore` loaded, if any

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, cfg: RunConfig, logger: Logger | None = None, names=None) -> World:
        cfg.validate()
        logger = logger or NullLogger()
        set_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        if names is None:  # the policies the method trains (e.g. one "mixed" policy)
            from copd.algorithms import policy_names

            names = policy_names(cfg)
        tasks = {b.task: get_task(b.task, **cfg.task_options.get(b.task, {})) for b in cfg.branches}
        check_task_media(tasks)
        path = resolve_model_path(cfg.model, log=lambda m: logger.log_event(m))
        base, tok = load_policy(path, cfg.model.dtype, cfg.model.gguf_file)
        if cfg.backend.kind == "ray":  # branches live in Ray actors (copd/workers/ray_backend.py)
            set_attention(base, cfg.model.attn_implementation, "cpu")  # the driver's copy
            branches, base_view = [], PolicyView(base.requires_grad_(False).eval())
        else:
            branches, base_view = make_branches(base, cfg, tasks, names)
        rngs = {n: random.Random(f"{cfg.seed}:{n}") for n in names}  # the driver's, on Ray too
        rngs["mixed"] = random.Random(f"{cfg.seed}:mixed")
        gen = torch.Generator().manual_seed(cfg.seed)
        gens = {b.name: branch_generator(cfg.seed, b.name) for b in branches}
        return cls(
            cfg, tok, tasks, branches, base_view, logger, rngs, gen, base_path=path, gens=gens
        )

    def branch(self, name: str) -> Branch:
        return next(b for b in self.branches if b.name == name)

    def task_of(self, example: Example) -> Task:
        return next(t for t in self.tasks.values() if t.name == example.domain)

    # ------------------------------------------------------------------ primitives
    def prompts(self, task: Task, n: int, rng_key: str) -> list[Example]:
        return task.sample(self.rngs[rng_key], n)

    def rollout(
        self,
        view: PolicyView,
        examples: list[Example],
        group_size: int,
        generator: torch.Generator | None = None,
    ) -> RolloutBatch:
        """Sample `group_size` completions per example and score them with the verifiers.
        `generator`: the token-sampling stream (default: the world's shared `gen`)."""
        return self.rollouts(view, [(examples, group_size)], generator)[0]

    def rollouts(
        self,
        view: PolicyView,
        requests: list[tuple[list[Example], int]],
        generator: torch.Generator | None = None,
    ) -> list[RolloutBatch]:
        """`rollout` for several (examples, group size) requests of one policy, decoded
        together in one loop (`sample_rollout_sets`), each batch scored by the verifiers."""
        s = self.cfg.sampling
        with self.timer("rollout"), view.use() as model:
            batches = sample_rollout_sets(
                model,
                self.tokenizer,
                requests,
                temperature=s.temperature,
                max_new_tokens=s.max_new_tokens,
                generator=self.gen if generator is None else generator,
                top_p=s.top_p,
                device=view.device,
            )
        return [self.score_rewards(b) for b in batches]

    def score_rewards(self, batch: RolloutBatch) -> RolloutBatch:
        """Fill `batch.rewards_B` with each completion's verifier reward; returns the batch."""
        batch.rewards_B = torch.tensor(
            [
                self.task_of(ex).reward(ex, text)
                for ex, text in zip(batch.examples, batch.texts, strict=True)
            ],
            dtype=torch.float32,
        )
        return batch

    @torch.no_grad()
    def score(self, view: PolicyView, batch: RolloutBatch) -> torch.Tensor:
        """Log-probs [B, T] of `batch`'s sampled tokens under `view` (a teacher), on the
        teacher's device; returned on the batch's device."""
        with self.timer("teacher"), view.use() as model:
            b = batch.to(view.device)
            logits = completion_logits(model, b)
            lp = logprobs_from_logits(logits, b.completion_ids_B_T, self.cfg.sampling.temperature)
        return lp.to(batch.completion_ids_B_T.device)

    @torch.no_grad()
    def score_opd(
        self, view: PolicyView, batch: RolloutBatch
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """What an OPD term needs from a teacher (`opd.advantage`): the log-probs [B, T] of
        the sampled tokens ("sampled"); for "full_kl" also its full log-distribution
        ("full", [B, T, V]); for "topk" its top-k log-probs and token ids ("topk_vals",
        "topk_idx", [B, T, k]). Returned on the batch's device."""
        kind = self.cfg.opd.advantage
        if kind == "sampled":
            return self.score(view, batch)
        dev = batch.completion_ids_B_T.device
        with self.timer("teacher"), view.use() as model:
            b = batch.to(view.device)
            logits = completion_logits(model, b).float() / self.cfg.sampling.temperature
            lsm = torch.log_softmax(logits, -1)
            out = {"logp": lsm.gather(-1, b.completion_ids_B_T.long().unsqueeze(-1)).squeeze(-1)}
            if kind == "full_kl":
                out["full"] = lsm
            else:
                k = min(self.cfg.opd.topk, lsm.shape[-1])
                out["topk_vals"], out["topk_idx"] = lsm.topk(k, dim=-1)
        return {key: v.to(dev) for key, v in out.items()}

    def teacher_view(self, name: str) -> PolicyView:
        """The peer's live policy, or its frozen snapshot when `opd.teacher == "snapshot"`."""
        return self.teachers.get(name) or self.branch(name).view

    def snapshot_teachers(self) -> None:
        self.teachers = {b.name: b.snapshot() for b in self.branches}


def check_task_media(tasks: dict[str, Task], n: int = 4) -> None:
    """Fail before any model loads when a task's prompts carry videos this machine cannot
    read (a video file without a decoder, a missing frame): a few prompts per task are
    drawn from a throwaway RNG and checked, no pixels read. Datasets check every row at
    load; this catches custom `module:factory` tasks."""
    from copd.tasks.media import check_video

    for name, task in tasks.items():
        for ex in task.sample(random.Random(0), n):
            for v in ex.videos:
                problem = check_video(v)
                if problem:
                    raise ConfigError(f"task {name}: {problem}")


def branch_generator(seed: int, name: str) -> torch.Generator:
    """A token-sampling generator seeded from (seed, branch name), stable across processes."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "big") >> 1)


def _logp_and_entropy(world: World, branch: Branch, batch: RolloutBatch, keep_logits=False):
    """Log-probs [B, T] of the batch's tokens under the branch (with the graph) and the mean
    entropy; with `keep_logits` also the logits [B, T, V] (the direct OPD losses need them)."""
    with world.timer("forward"), branch.view.use() as model:
        logits = completion_logits(model, batch)
    logp = logprobs_from_logits(logits, batch.completion_ids_B_T, world.cfg.sampling.temperature)
    with torch.no_grad():
        lp = torch.log_softmax(logits.detach().float(), -1)
        ent_B_T = -(lp.exp() * lp).sum(-1)
        m = batch.completion_mask_B_T
        entropy = float((ent_B_T * m).sum() / m.sum().clamp(min=1))
    if keep_logits:
        return logp, entropy, logits
    return logp, entropy


def _old_logp(world: World, batch: RolloutBatch, logp_B_T: torch.Tensor) -> torch.Tensor:
    """The sampling policy's log-probs for the ratio. A batch used once was sampled by the
    current weights, so they are `logp` itself (no extra pass). With several updates per
    batch (`grpo.updates_per_batch`), the first pass's values are kept in the batch for
    the later ones."""
    old = batch.extras.get("old_logp_B_T")
    if old is None:
        old = logp_B_T.detach()
        if world.cfg.grpo.updates_per_batch > 1:
            batch.extras["old_logp_B_T"] = old
    return old


# Config fields that mark a mixture-of-experts model across Hugging Face families
# (Qwen-MoE, Mixtral, DeepSeek, OLMoE, ...).
_MOE_CONFIG_KEYS = ("num_experts", "num_local_experts", "n_routed_experts")


def skips_zero_advantage(world: World) -> bool:
    """Whether GRPO terms leave out prompt groups whose rewards are all equal. Exact when
    nothing but the clipped surrogate sees those rows (no KL to the base) and every
    trainable weight takes part in every forward, so that a skipped row would only have
    added zeros to gradients that exist anyway. Not so for vision-language models (a text
    batch leaves the vision weights without a gradient) or mixture-of-experts models (the
    experts a row is routed to depend on the row), where skipping is off."""
    from copd.hf_cache import hf_model
    from copd.vlm import is_processor

    g = world.cfg.grpo
    if not g.skip_zero_advantage or g.kl_coef != 0 or is_processor(world.tokenizer):
        return False
    config = hf_model(world.base.module).config
    return not any(getattr(config, k, None) for k in _MOE_CONFIG_KEYS)


def _trained_logp(world: World, branch: Branch, batch: RolloutBatch, live_P: torch.Tensor):
    """Log-probs [B, T] of the batch's tokens and the entropy of the rows that are trained.

    With zero-advantage skipping only the groups in `live_P` run through the model (whole
    groups, so the prompt is still shared); the other rows get log-prob 0, which the
    surrogate multiplies by their zero advantage, so they contribute a zero loss and a zero
    gradient as in a full pass, and they still count in the loss's normaliser. The
    returned entropy covers the rows that ran (None when none did)."""
    if bool(live_P.all()) or not skips_zero_advantage(world):
        return _logp_and_entropy(world, branch, batch)
    G = batch.group_size
    rows = [p * G + j for p in live_P.nonzero().flatten().tolist() for j in range(G)]
    full = torch.zeros_like(batch.completion_mask_B_T, dtype=torch.float32)
    if not rows:
        return full, None
    logp, entropy = _logp_and_entropy(world, branch, batch.subset(rows))
    idx = torch.tensor(rows, dtype=torch.long, device=full.device)
    return full.index_copy(0, idx, logp), entropy


def grpo_term(world: World, branch: Branch, batch: RolloutBatch) -> LossTerm:
    """Clipped-surrogate GRPO loss on a native batch (one pass: ratio 1 unless the batch
    carries `old_logp_B_T` from an earlier pass). Groups whose rewards are all equal have
    zero advantage and, by default, skip the forward and backward (`skips_zero_advantage`)."""
    g = world.cfg.grpo
    P = batch.size // batch.group_size
    adv_P_G = group_advantages(batch.rewards_B.view(P, batch.group_size), g.std_normalize)
    live_P = (adv_P_G != 0).any(-1)
    logp, entropy = _trained_logp(world, branch, batch, live_P)
    old = _old_logp(world, batch, logp)
    adv_B_T = adv_P_G.reshape(-1, 1).expand_as(logp).to(logp.device)
    mask = batch.completion_mask_B_T
    loss_B_T, clipped_B_T = policy_loss(logp, old, adv_B_T, mask, g.clip_low, g.clip_high)
    if g.kl_coef > 0:
        ref = world.score(world.base, batch)
        loss_B_T = loss_B_T + g.kl_coef * kl_penalty(logp, ref) * mask
    loss = aggregate(loss_B_T, mask, g.loss_agg, world.cfg.sampling.max_new_tokens)
    n_tok = mask.sum().clamp(min=1)
    stats = {
        N.PG_LOSS: float(loss.detach()),
        N.REWARD_MEAN: float(batch.rewards_B.mean()),
        N.CLIP_FRAC: float((clipped_B_T.float() * mask).sum() / n_tok),
        N.RESPONSE_LEN: float(mask.sum(1).mean()),
        N.SIGNAL_FRAC: float(live_P.float().mean()),
        N.SIGNAL_ADV_GRPO: float((adv_B_T.abs() * mask).sum() / n_tok),
    }
    if entropy is not None:
        stats[N.ENTROPY] = entropy
    return LossTerm(loss, stats)


def opd_term(
    world: World,
    branch: Branch,
    batch: RolloutBatch,
    teacher_scores: torch.Tensor | dict[str, torch.Tensor],
) -> LossTerm:
    """On-policy distillation on the student's own samples of a peer's prompts.

    `opd.advantage="sampled"` (the paper): token advantage beta * (log p_teacher - log
    p_student) of the sampled token, stop-gradient, fed to the same clipped surrogate (the
    sampled-token estimator of the reverse KL to the teacher). The direct variants
    differentiate beta * KL(student || teacher) per token instead, over the full
    vocabulary ("full_kl", exact; cheap at small vocabularies) or over the teacher's top-k
    tokens ("topk"). `teacher_scores`: the teacher's log-probs [B, T] of the sampled tokens,
    or `World.score_opd`'s dict (with "full" [B, T, V] or "topk_vals"/"topk_idx" [B, T, k]).

    Statistics (suffixed with the teacher's name by the callers): the loss, the mean
    advantage, the reverse-KL estimate, and the signal balance: mean |advantage|, the share
    of tokens the teacher rates above the student, the mean log-ratio log p_T - log p_S
    (an estimate of -KL(student || teacher)) and the clip fraction."""
    g, o = world.cfg.grpo, world.cfg.opd
    scores = teacher_scores if isinstance(teacher_scores, dict) else {"logp": teacher_scores}
    teacher_logp_B_T = scores["logp"]
    mask = batch.completion_mask_B_T
    n_tok = mask.sum().clamp(min=1)
    direct = o.advantage != "sampled"
    out = _logp_and_entropy(world, branch, batch, keep_logits=direct)
    logp = out[0]
    adv_B_T = opd_advantage(teacher_logp_B_T, logp, o.beta, mask)
    if direct:
        kl_B_T = _reverse_kl(out[2], scores, world.cfg.sampling.temperature, o.advantage)
        loss_B_T = o.beta * kl_B_T * mask
        clipped_B_T = torch.zeros_like(mask, dtype=torch.bool)
        adv_abs = float((o.beta * kl_B_T.detach() * mask).sum() / n_tok)
    else:
        old = _old_logp(world, batch, logp)
        loss_B_T, clipped_B_T = policy_loss(logp, old, adv_B_T, mask, g.clip_low, g.clip_high)
        adv_abs = float((adv_B_T.abs() * mask).sum() / n_tok)
    loss = aggregate(loss_B_T, mask, g.loss_agg, world.cfg.sampling.max_new_tokens)
    log_ratio_B_T = (teacher_logp_B_T - logp.detach()) * mask
    stats = {
        N.OPD_LOSS: float(loss.detach()),
        N.OPD_ADV_MEAN: float((adv_B_T * mask).sum() / n_tok),
        N.OPD_REVERSE_KL: float(-log_ratio_B_T.sum() / n_tok),
        N.CLIP_FRAC: float((clipped_B_T.float() * mask).sum() / n_tok),
        N.SIGNAL_PREFIX + "adv_abs": adv_abs,
        N.SIGNAL_PREFIX + "pos_frac": float(((log_ratio_B_T > 0) & (mask != 0)).sum() / n_tok),
        N.SIGNAL_PREFIX + "log_ratio": float(log_ratio_B_T.sum() / n_tok),
    }
    return LossTerm(loss, stats)


def _reverse_kl(
    logits_B_T_V: torch.Tensor, scores: dict[str, torch.Tensor], temperature: float, kind: str
) -> torch.Tensor:
    """Per-token KL(student || teacher) [B, T] (differentiable in the student): over the
    full vocabulary, or over the teacher's top-k tokens (the student's probabilities of
    those tokens, the rest of the mass ignored)."""
    s_lsm = torch.log_softmax(logits_B_T_V.float() / temperature, -1)
    if kind == "full_kl":
        t_lsm = scores["full"].to(s_lsm.device, s_lsm.dtype)
        return (s_lsm.exp() * (s_lsm - t_lsm)).sum(-1)
    s_at = s_lsm.gather(-1, scores["topk_idx"].to(s_lsm.device).long())
    t_at = scores["topk_vals"].to(s_lsm.device, s_lsm.dtype)
    return (s_at.exp() * (s_at - t_at)).sum(-1)


@dataclass
class TermSpec:
    """One loss term of an update: GRPO on a native batch (`teacher` None), or OPD on a
    cross batch with the teacher's scores (`World.score_opd`)."""

    weight: float
    batch: RolloutBatch
    teacher: str | None = None
    scores: torch.Tensor | dict[str, torch.Tensor] | None = None

    @property
    def label(self) -> str:
        return self.teacher or "grpo"


@dataclass
class Updated:
    """What `optimize` reports: each term's statistics (averaged over its optimizer steps),
    the grad norm of the last step, and the signal balance of the first step (if asked)."""

    stats: list[dict[str, float]]
    grad_norm: float
    signal: dict[str, float] = field(default_factory=dict)
    steps: int = 1


def update(
    world: World,
    branch: Branch,
    terms: list[tuple[float, LossTerm]],
    labels: list[str] | None = None,
    signal: dict[str, float] | None = None,
) -> float:
    """One optimizer step on the weighted sum of loss terms; returns the grad norm.

    With `signal` (a dict to fill) and `labels` (one per term, "grpo" or a teacher name),
    each term is backpropagated on its own (the terms come from separate forwards, so the
    sum of their gradients is the combined gradient) and the signal balance is recorded:
    the norm of each weighted term's gradient and, per OPD term, its cosine with the GRPO
    term's gradient (`names.signal_key`).

    A loss with no graph (every group of every term had zero advantage and was skipped)
    still makes the step, on zero gradients, as a full pass would: Adam's moments decay,
    weight decay applies and the step count advances."""
    with world.timer("update"):
        branch.optimizer.zero_grad(set_to_none=True)
        if signal is not None and labels is not None:
            _backward_per_term(branch, terms, labels, signal)
        else:
            loss = sum(w * t.loss for w, t in terms)
            if isinstance(loss, torch.Tensor) and loss.requires_grad:
                loss.backward()
        if all(p.grad is None for p in branch.params):  # no term had a graph
            for p in branch.params:
                p.grad = torch.zeros_like(p)
        gn = torch.nn.utils.clip_grad_norm_(branch.params, world.cfg.grpo.grad_clip)
        branch.optimizer.step()
    return float(gn)


def _flat_grad(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [
            (p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().flatten()
            for p in params
        ]
    )


def _backward_per_term(
    branch: Branch, terms: list[tuple[float, LossTerm]], labels: list[str], out: dict
) -> None:
    grads: dict[str, torch.Tensor] = {}
    before = None
    for (w, term), label in zip(terms, labels, strict=True):
        if isinstance(term.loss, torch.Tensor) and term.loss.requires_grad:
            (w * term.loss).backward()
        now = _flat_grad(branch.params)
        grads[label] = now if before is None else now - before
        before = now
    for label, g in grads.items():
        out[N.signal_key("grad_norm", None if label == "grpo" else label)] = float(g.norm())
    native = grads.get("grpo")
    for label, g in grads.items():
        if label != "grpo" and native is not None:
            denom = float(native.norm() * g.norm())
            out[N.signal_key("cos", label)] = float(native @ g) / denom if denom > 0 else 0.0


def optimize(
    world: World, branch: Branch, specs: list[TermSpec], measure_signal: bool = False
) -> Updated:
    """The optimizer steps of one set of rollout batches: `grpo.updates_per_batch` epochs of
    `grpo.minibatches` mini-batches (whole prompt groups of every batch), one step each.

    The PPO ratio is taken against the sampling policy's log-probs: with one mini-batch
    the first pass records them at no extra cost; with several, one no-grad forward
    records them for every row first (verl's old_log_prob), so the clipped ratio acts from
    the second mini-batch on. `measure_signal` records the signal balance of the first step."""
    g = world.cfg.grpo
    M = g.minibatches
    if M > 1:
        for spec in specs:
            _record_old_logp(world, branch, spec)
    parts = [_split(spec, M) for spec in specs]
    sums: list[dict[str, float]] = [{} for _ in specs]
    counts = [0 for _ in specs]
    signal: dict[str, float] = {}
    grad_norm, steps = 0.0, 0
    for epoch in range(g.updates_per_batch):
        for m in range(M):
            live = [(i, p[m]) for i, p in enumerate(parts) if p[m] is not None]
            terms = [(s.weight, _term(world, branch, s)) for _, s in live]
            first = measure_signal and epoch == 0 and m == 0
            grad_norm = update(
                world,
                branch,
                terms,
                labels=[s.label for _, s in live] if first else None,
                signal=signal if first else None,
            )
            steps += 1
            for (i, _), (_, term) in zip(live, terms, strict=True):
                counts[i] += 1
                for k, v in term.stats.items():
                    sums[i][k] = sums[i].get(k, 0.0) + v
    stats = [{k: v / max(1, n) for k, v in d.items()} for d, n in zip(sums, counts, strict=True)]
    return Updated(stats, grad_norm, signal, steps)


def _term(world: World, branch: Branch, spec: TermSpec) -> LossTerm:
    if spec.teacher is None:
        return grpo_term(world, branch, spec.batch)
    return opd_term(world, branch, spec.batch, spec.scores)


def _record_old_logp(world: World, branch: Branch, spec: TermSpec) -> None:
    """The sampling policy's log-probs of every row, before any mini-batch step."""
    if spec.teacher is not None and world.cfg.opd.advantage != "sampled":
        return  # the direct KL losses take no ratio
    if "old_logp_B_T" not in spec.batch.extras:
        with torch.no_grad():
            spec.batch.extras["old_logp_B_T"] = _logp_and_entropy(world, branch, spec.batch)[0]


def _split(spec: TermSpec, M: int) -> list[TermSpec | None]:
    """`M` mini-batch terms of whole prompt groups (near-equal; None where a part is empty)."""
    if M == 1:
        return [spec]
    G = spec.batch.group_size
    P = spec.batch.size // G
    bounds = [round(i * P / M) for i in range(M + 1)]
    out: list[TermSpec | None] = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        if hi <= lo:
            out.append(None)
            continue
        rows = list(range(lo * G, hi * G))
        scores = spec.scores
        if scores is not None:
            idx = torch.tensor(rows, dtype=torch.long)
            if isinstance(scores, dict):
                scores = {k: v[idx.to(v.device)] for k, v in scores.items()}
            else:
                scores = scores[idx.to(scores.device)]
        out.append(TermSpec(spec.weight, spec.batch.subset(rows), spec.teacher, scores))
    return out


def grpo_update(world: World, branch: Branch, batch: RolloutBatch) -> tuple[LossTerm, float]:
    """GRPO alone on one batch (`optimize` with a single term): the term (its statistics
    averaged over the optimizer steps) and the last grad norm."""
    res = optimize(world, branch, [TermSpec(1.0, batch)], measure_signal=signal_due(world))
    stats = {**res.stats[0], **res.signal}
    return LossTerm(torch.tensor(stats.get(N.PG_LOSS, 0.0)), stats), res.grad_norm


def signal_due(world: World) -> bool:
    """Whether the update that makes step `world.step + 1` records the signal balance: at
    the diagnostics cadence (`schedule.diag_every`), when `diagnostics.signal_balance`."""
    every = world.cfg.schedule.diag_every
    return bool(world.cfg.diagnostics.signal_balance and every and (world.step + 1) % every == 0)


def opd_weights(world: World, n_teachers: int) -> float:
    """The weight of each OPD term in a combined update: `opd.cross_weight` per teacher, or
    divided by the number of teachers (`opd.teacher_weighting="mean"`)."""
    o = world.cfg.opd
    return (
        o.cross_weight
        if o.teacher_weighting == "per_teacher"
        else o.cross_weight / max(1, n_teachers)
    )


def log_step(
    world: World, metrics: dict[str, float], cycle: int, phase: str, total: int | None = None
) -> None:
    """Timing breakdown and progress with the step's metrics, in one logger call.
    Called after `world.step += 1`, so `world.step` counts the steps done.
    `total`: the loop's step count when it is not `schedule.total_steps()` (baselines)."""
    total = total or world.cfg.schedule.total_steps() or 1
    t = world.timer.pop()
    metrics = dict(metrics)
    for part, secs in t.items():
        metrics[N.time_key(part)] = secs
    metrics[N.PROGRESS] = world.step / total
    t0 = time.perf_counter()
    world.logger.log_metrics(metrics, step=world.step, cycle=cycle, phase=phase)
    world.timer.acc["logging"] += time.perf_counter() - t0
