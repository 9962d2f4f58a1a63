"""Rollouts: sample G completions per prompt with a KV cache, and log-probs under any policy.

    batch = sample_rollouts(policy, tokenizer, examples, group_size=8, temperature=1.0,
                            max_new_tokens=8, generator=gen)
    logp_B_T = completion_logprobs(policy, batch, temperature=1.0)   # differentiable
    with torch.inference_mode():
        teacher_logp_B_T = completion_logprobs(teacher, batch, temperature=1.0)

The sampler is a plain batched decode loop (one forward per new token, reusing the cache),
not `generate`: for short verifiable answers `generate`'s fixed per-call overhead dominates
(see docs/PERFORMANCE.md). Completion masks stop at the first end-of-sequence token,
inclusive; anything sampled after it is padding, not completion.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from copd.chat import render_prompts
from copd.losses import completion_mask
from copd.models import hf_model
from copd.tasks import Example


@dataclass
class RolloutBatch:
    """B = prompts x samples rollouts of one policy, left-padded prompts, right-padded answers.

    Rows are grouped: rows [i*G, (i+1)*G) are the G samples of prompt i.
    """

    examples: list[Example]  # length B (each prompt repeated G times)
    prompt_ids_B_P: Tensor
    prompt_mask_B_P: Tensor
    completion_ids_B_T: Tensor
    completion_mask_B_T: Tensor  # float, 1 up to and including the first eos
    texts: list[str]  # decoded completions, cut at eos
    group_size: int
    rewards_B: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)  # e.g. "old_logp_B_T"
    # Image prompts only: the processor's vision tensors of the distinct prompts
    # (copd.vlm.VisionInputs); None for text batches.
    vision: Any = None

    @property
    def size(self) -> int:
        return self.completion_ids_B_T.shape[0]

    def subset(self, rows: list[int]) -> RolloutBatch:
        """The rows `rows` of this batch (whole prompt groups: routing by domain, groups
        with a learning signal).

        Image/video batches carry vision inputs per distinct prompt, so there `rows` must be
        whole groups (all G rows of each prompt, in order); the vision tensors of those
        prompts are selected with them (`copd.vlm.VisionInputs.select`), and a subset whose
        prompts hold no media becomes a text batch."""
        idx = torch.tensor(rows, dtype=torch.long, device=self.completion_ids_B_T.device)
        vision = None
        if self.vision is not None:
            G = self.group_size
            prompts = [r // G for r in rows[::G]]
            if rows != [p * G + j for p in prompts for j in range(G)]:
                raise ValueError(
                    f"subset of an image batch needs whole prompt groups of {G} rows in order; "
                    f"got rows {rows[: 2 * G]}..."
                )
            vision = self.vision.select(prompts)
        return RolloutBatch(
            [self.examples[i] for i in rows],
            self.prompt_ids_B_P[idx],
            self.prompt_mask_B_P[idx],
            self.completion_ids_B_T[idx],
            self.completion_mask_B_T[idx],
            [self.texts[i] for i in rows],
            self.group_size,
            None if self.rewards_B is None else self.rewards_B[idx],
            {k: v[idx] for k, v in self.extras.items()},
            vision,
        )

    def to(self, device: torch.device | str) -> RolloutBatch:
        return RolloutBatch(
            self.examples,
            self.prompt_ids_B_P.to(device),
            self.prompt_mask_B_P.to(device),
            self.completion_ids_B_T.to(device),
            self.completion_mask_B_T.to(device),
            self.texts,
            self.group_size,
            None if self.rewards_B is None else self.rewards_B.to(device),
            {k: v.to(device) for k, v in self.extras.items()},
            None if self.vision is None else self.vision.to(device),
        )


def encode_prompts(
    tokenizer, prompts: list[str], device, add_special_tokens: bool = True
) -> tuple[Tensor, Tensor]:
    """Left-padded prompt ids and mask ([B, P]). The tokenizer adds its own bos if it has a
    post-processor for it (the built-in char tokenizer does), unless `add_special_tokens`
    is False: text rendered through a chat template already holds them (copd/chat.py)."""
    enc = tokenizer(
        prompts,
        return_tensors="pt",
        padding=True,
        padding_side="left",
        add_special_tokens=add_special_tokens,
    )
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def _cache_kw(model) -> str:
    """transformers 5.2x renamed the forward keyword `past_key_values` to `cache`; pick the
    one this model's forward accepts (looking through a peft wrapper)."""
    target = hf_model(model)
    cached = getattr(target, "_copd_cache_kw", None)
    if cached:
        return cached
    params = inspect.signature(target.forward).parameters
    kw = "cache" if "cache" in params else "past_key_values"
    target._copd_cache_kw = kw
    return kw


# Run a group's shared prompt once and repeat its KV cache (sampling and log-prob passes).
# Logits match the one-pass computation to float rounding; False restores one pass over
# every row (bench/ablate_engine.py measures the difference).
SHARE_PROMPT_PREFIX = True
# Drop rows that reached eos from the decode batch (and the KV cache) once a quarter of the
# batch has finished; the token draws stay the same. False decodes every row to the end.
PRUNE_FINISHED_ROWS = True
# In log-prob passes, feed the tokens after a split point only for rows that have not
# ended (see length_split); False runs every row to the batch's longest completion.
SPLIT_BY_LENGTH = True
# Sampling runs under torch.inference_mode (its outputs are copied out) instead of no_grad.
INFERENCE_MODE_DECODE = True
# Decode steps pass a ready [B, 1, 1, L] additive mask (eager/SDPA attention only).
DENSE_DECODE_MASK = True
# Draw tokens by inverse CDF (one uniform per row) instead of torch.multinomial (one
# exponential per vocabulary entry); same distribution, different draws for a seed.
SAMPLE_BY_CDF = True


def _out_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def prompt_groups(
    prompt_ids_B_P: Tensor, prompt_mask_B_P: Tensor, group_size: int | Sequence[int]
) -> Tensor | None:
    """Each row's group [B] (0..D-1) when the rows form consecutive groups that each hold
    one (identically padded) prompt, so that prompt can run once and its KV cache serve the
    whole group; None when they do not (or when no group has two rows). `group_size` is G
    for groups of G (every GRPO batch) or the size of each group in order (several
    batches decoded together)."""
    B = prompt_ids_B_P.shape[0]
    if isinstance(group_size, int):
        if group_size <= 1 or B == 0 or B % group_size:
            return None
        sizes = [group_size] * (B // group_size)
    else:
        sizes = list(group_size)
        if sum(sizes) != B or max(sizes, default=1) <= 1:
            return None
    device = prompt_ids_B_P.device
    rows_B = torch.repeat_interleave(
        torch.arange(len(sizes), device=device), torch.tensor(sizes, device=device)
    )
    first_D = group_starts(rows_B)
    same = (prompt_ids_B_P == prompt_ids_B_P[first_D][rows_B]).all()
    same = same & (prompt_mask_B_P == prompt_mask_B_P[first_D][rows_B]).all()
    return rows_B if bool(same) else None


def groups_share_prompts(prompt_ids_B_P: Tensor, prompt_mask_B_P: Tensor, group_size: int) -> bool:
    """True when rows [i*G, (i+1)*G) hold the same (padded) prompt."""
    return prompt_groups(prompt_ids_B_P, prompt_mask_B_P, group_size) is not None


def group_starts(rows_B: Tensor) -> Tensor:
    """The first row of each group, for consecutive groups labelled 0..D-1."""
    counts_D = torch.bincount(rows_B)
    return counts_D.cumsum(0) - counts_D


def _shared_prefill(model, ids_B_P: Tensor, mask_B_P: Tensor, pos_B_P: Tensor, rows_B: Tensor):
    """Run each group's prompt once (D rows) and expand the KV cache to the B rows
    (`rows_B`: each row's group, from `prompt_groups`). Returns (last-position logits
    [D, V], cache with B rows), or None when this model's cache cannot be indexed (the
    caller then runs every row).

    Differentiable: under autograd the expanded cache carries the gradient back to the
    one prompt pass, summed over the group, exactly as separate prompt passes would."""
    first_D = group_starts(rows_B)
    out = model(
        input_ids=ids_B_P[first_D],
        attention_mask=mask_B_P[first_D],
        position_ids=pos_B_P[first_D],
        use_cache=True,
        logits_to_keep=1,
    )
    cache = _out_cache(out)
    if not hasattr(cache, "batch_select_indices"):
        return None
    cache.batch_select_indices(rows_B)
    return out.logits[:, -1], cache


def sample_tokens(
    model,
    prompt_ids_B_P: Tensor,
    prompt_mask_B_P: Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    top_p: float = 1.0,
    group_size: int | Sequence[int] = 1,
    logits_out: list[Tensor] | None = None,
) -> Tensor:
    """Batched decoding with a KV cache. Returns completion ids [B, T<=max_new_tokens];
    rows that ended keep `pad_id` after their eos. Stops early when every row has ended.

    `group_size` G: rows [i*G, (i+1)*G) share one prompt (or a list: the size of each
    consecutive group); the prompt is then encoded once per group and its cache repeated,
    which removes (G-1)/G of the prefill. Rows that have finished leave the decode batch
    (PRUNE_FINISHED_ROWS).

    Runs under `inference_mode` (less bookkeeping per op than `no_grad`); what it returns
    is copied out of it, so the tokens and kept logits can feed a training pass."""
    steps: list[Tensor] | None = [] if logits_out is not None else None
    with torch.inference_mode() if INFERENCE_MODE_DECODE else torch.no_grad():
        generator = device_generator(generator, prompt_ids_B_P.device)
        pos = (prompt_mask_B_P.long().cumsum(-1) - 1).clamp(min=0)
        shared = None
        rows_B = prompt_groups(prompt_ids_B_P, prompt_mask_B_P, group_size)
        if SHARE_PROMPT_PREFIX and rows_B is not None:
            shared = _shared_prefill(model, prompt_ids_B_P, prompt_mask_B_P, pos, rows_B)
        if shared is not None:
            last_logits, cache = shared
            logits = last_logits.float()[rows_B]
        else:
            out = model(
                input_ids=prompt_ids_B_P,
                attention_mask=prompt_mask_B_P,
                position_ids=pos,
                use_cache=True,
                logits_to_keep=1,
            )
            cache = _out_cache(out)
            logits = out.logits[:, -1].float()
        comp = decode(
            model, logits, cache, prompt_mask_B_P, pos[:, -1] + 1, max_new_tokens=max_new_tokens,
            temperature=temperature, eos_id=eos_id, pad_id=pad_id, generator=generator,
            greedy=greedy, top_p=top_p, logits_out=steps,
        )  # fmt: skip
    if logits_out is not None:
        logits_out.extend(x.clone() for x in steps)
    return comp.clone() if INFERENCE_MODE_DECODE else comp


@torch.no_grad()
def decode(
    model,
    logits_B_V: Tensor,
    cache,
    mask_B_L: Tensor,
    next_pos_B: Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator | None,
    greedy: bool,
    top_p: float,
    positions=None,
    logits_out: list[Tensor] | None = None,
) -> Tensor:
    """The decode loop after a prefill: draw a token per row, feed it back through the
    cache, until every row has ended. `logits_B_V` are the prefill's last logits,
    `next_pos_B` each row's next position; `positions(p_B)` turns positions into the
    model's `position_ids` (default [B, 1]; multimodal RoPE passes its own). Rows that
    finished leave the batch and the cache, but tokens are drawn for all B rows so the
    generator advances as without pruning. Returns completion ids [B, T]. `logits_out`:
    each step's logits [B, V] (float32, before temperature) are appended to it; a row's
    entries after its eos are stale."""
    kw = _cache_kw(model)
    B, L = mask_B_L.shape
    positions = positions or (lambda p: p[:, None])
    dense = _dense_mask_dtype(model) if DENSE_DECODE_MASK else None
    # The whole mask up front: each decode step takes a prefix view instead of a new cat.
    mask = torch.cat([mask_B_L, mask_B_L.new_ones(B, max(0, max_new_tokens - 1))], dim=1)
    prune = PRUNE_FINISHED_ROWS and hasattr(cache, "batch_select_indices")
    rows: Tensor | None = None  # the rows still decoding (in the cache); None = all B
    done = torch.zeros(B, dtype=torch.bool, device=mask_B_L.device)
    next_pos = next_pos_B
    logits = logits_B_V
    tokens: list[Tensor] = []
    for t in range(max_new_tokens):
        # Finished rows keep stale logits; their draw is replaced by pad.
        if logits_out is not None:
            logits_out.append(logits)
        nxt = _pick(logits, temperature, greedy, top_p, generator)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        tokens.append(nxt)
        done = done | (nxt == eos_id)
        # On CPU this check costs nothing (no device sync) and ends the loop early.
        if t == max_new_tokens - 1 or bool(done.all()):
            break
        if prune:
            live = ~done if rows is None else ~done[rows]
            if int(live.sum()) <= 0.75 * live.numel():  # a quarter of the cache is finished
                keep = live.nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows = keep if rows is None else rows[keep]
                mask, next_pos = mask[keep], next_pos[keep]
        out = model(
            input_ids=(nxt if rows is None else nxt[rows])[:, None],
            attention_mask=step_mask(mask[:, : L + t + 1], dense),
            position_ids=positions(next_pos + t),
            use_cache=True,
            **{kw: cache},
        )
        cache = _out_cache(out)
        if rows is None:
            logits = out.logits[:, -1].float()
        else:
            logits = logits.clone()
            logits[rows] = out.logits[:, -1].float()
    return torch.stack(tokens, dim=1)


def _dense_mask_dtype(model) -> torch.dtype | None:
    """The dtype of a ready-made additive mask this model's attention takes as is (eager
    and SDPA do; flash kernels want the 2-D mask): the model's dtype, or None."""
    target = hf_model(model)
    impl = getattr(getattr(target, "config", None), "_attn_implementation", None)
    dtype = getattr(target, "dtype", None)
    return dtype if impl in ("eager", "sdpa") and dtype is not None else None


def step_mask(mask_B_L: Tensor, dtype: torch.dtype | None) -> Tensor:
    """The attention mask of a one-token decode step. With a `dtype`: the additive
    [B, 1, 1, L] mask that eager and SDPA attention take as is (0 where a key is visible,
    the dtype's minimum at padding), which skips the model's generic mask builder, a
    fixed cost per call that is a sizeable part of a small model's decode step."""
    if dtype is None:
        return mask_B_L
    hidden = mask_B_L[:, None, None, :] == 0
    return torch.zeros(hidden.shape, dtype=dtype, device=hidden.device).masked_fill_(
        hidden, torch.finfo(dtype).min
    )


def device_generator(generator: torch.Generator | None, device) -> torch.Generator | None:
    """The RNG streams live on the CPU (they are checkpointed there). Sampling on another
    device (CUDA) needs a generator on that device: derive one per rollout, seeded from the
    CPU stream, so runs stay deterministic and resumable. On the CPU: the stream itself."""
    device = torch.device(device)
    if generator is None or generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def _pick(logits_B_V: Tensor, temperature: float, greedy: bool, top_p: float, generator) -> Tensor:
    if greedy:
        return logits_B_V.argmax(-1)
    probs = torch.softmax(logits_B_V / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p
        choice = draw(sorted_p * keep, generator)
        return idx.gather(-1, choice[:, None]).squeeze(-1)
    return draw(probs, generator)


def draw(weights_B_V: Tensor, generator: torch.Generator | None) -> Tensor:
    """One index per row, drawn with probability proportional to `weights_B_V` (>= 0, each
    row with a positive sum): by inverse CDF, from one uniform per row. `torch.multinomial`
    draws an exponential per vocabulary entry instead (B x V random numbers per step, most
    of the draw's cost at a real vocabulary). The pick is the first index whose running
    sum exceeds u x total (a binary search per row), with u x total kept strictly below
    the total, so an index of weight 0 is never drawn."""
    if not SAMPLE_BY_CDF:
        return torch.multinomial(weights_B_V, 1, generator=generator).squeeze(-1)
    cdf_B_V = weights_B_V.float().cumsum(-1)
    total_B1 = cdf_B_V[:, -1:]
    u_B1 = torch.rand(total_B1.shape, generator=generator, device=total_B1.device) * total_B1
    u_B1 = torch.minimum(u_B1, torch.nextafter(total_B1, torch.zeros_like(total_B1)))
    return torch.searchsorted(cdf_B_V, u_B1, right=True).squeeze(-1)


def sample_rollouts(
    model, tokenizer, examples: list[Example], *, group_size: int, **kw
) -> RolloutBatch:
    """G samples for each example (rows grouped per prompt): `sample_rollout_sets` with one
    request, and the same keywords (temperature, max_new_tokens, generator, greedy, top_p,
    device, keep_logits). `keep_logits`: text prompts also keep the sampler's own logits
    [B, T, V] in `extras["logits_B_T_V"]` (what a fresh `completion_logits` pass would give,
    to float rounding; the diagnostics reuse them instead of running the student again)."""
    [batch] = sample_rollout_sets(model, tokenizer, [(examples, group_size)], **kw)
    return batch


def sample_rollout_sets(
    model,
    tokenizer,
    requests: Sequence[tuple[list[Example], int]],
    *,
    temperature: float,
    max_new_tokens: int,
    generator: torch.Generator | None = None,
    greedy: bool = False,
    top_p: float = 1.0,
    device=None,
    keep_logits: bool = False,
) -> list[RolloutBatch]:
    """One RolloutBatch per (examples, group size) request, all decoded in one loop: a
    phase-II branch samples its native batch and its cross batches together, so the
    fixed cost of a decode step is paid once, not once per batch. Each batch is what
    `sample_rollouts` alone would return (its own prompt padding, its completions up to
    its own longest answer); only the random draws differ, as they come from one stream
    for all rows. Image/video requests are sampled one by one (copd/vlm.py)."""
    from copd.vlm import has_media, is_processor, sample_vlm_rollouts

    if is_processor(tokenizer):  # a vision-language model: images go through copd/vlm.py
        if any(has_media(exs) for exs, _ in requests):
            kw = dict(temperature=temperature, max_new_tokens=max_new_tokens,
                      generator=generator, greedy=greedy, top_p=top_p, device=device)  # fmt: skip
            return [
                sample_vlm_rollouts(model, tokenizer, exs, group_size=g, **kw)
                if has_media(exs)
                else sample_rollouts(
                    model, tokenizer.tokenizer, exs, group_size=g, keep_logits=keep_logits, **kw
                )
                for exs, g in requests
            ]
        tokenizer = tokenizer.tokenizer  # text-only prompts: the text path, unchanged
    device = device or next(model.parameters()).device
    examples = [ex for exs, _ in requests for ex in exs]
    sizes = [g for exs, g in requests for _ in exs]  # rows per distinct prompt
    # Render once per prompt (chat template or plain text), then repeat for the group.
    texts, templated = render_prompts(tokenizer, examples)
    # Encode the distinct prompts once; a group's rows are identical (padding included).
    ids_D_P, mask_D_P = encode_prompts(tokenizer, texts, device, not templated)
    rows_B = torch.repeat_interleave(
        torch.arange(len(sizes), device=device), torch.tensor(sizes, device=device)
    )
    steps: list[Tensor] | None = [] if keep_logits else None
    comp = sample_tokens(
        model,
        ids_D_P[rows_B],
        mask_D_P[rows_B],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        generator=generator,
        greedy=greedy,
        top_p=top_p,
        group_size=sizes,
        logits_out=steps,
    )
    cmask = completion_mask(comp, tokenizer.eos_token_id).float()
    logits = torch.stack(steps, dim=1) if steps else None
    batches, row, prompt = [], 0, 0
    for exs, g in requests:
        r = slice(row, row + len(exs) * g)
        d = slice(prompt, prompt + len(exs))
        row, prompt = r.stop, d.stop
        # This batch's own padding: drop the prompt columns none of its prompts uses and
        # the completion steps after its own rows all ended.
        p0 = int(mask_D_P[d].any(0).long().argmax()) if len(exs) else 0
        t1 = int(cmask[r].any(0).nonzero().max()) + 1 if cmask[r].any() else comp.shape[1]
        ids, mask = (
            ids_D_P[d, p0:].repeat_interleave(g, 0),
            mask_D_P[d, p0:].repeat_interleave(g, 0),
        )
        c, m = comp[r, :t1], cmask[r, :t1]
        batch = RolloutBatch(
            [ex for ex in exs for _ in range(g)], ids, mask, c, m,
            decode_completions(tokenizer, c, m), g,
        )  # fmt: skip
        if logits is not None:
            batch.extras["logits_B_T_V"] = logits[r, :t1]
        batches.append(batch)
    return batches


def decode_completions(tokenizer, comp_B_T: Tensor, mask_B_T: Tensor) -> list[str]:
    """Decode each completion up to (not including) its eos."""
    eos = tokenizer.eos_token_id
    keep = [
        [i for i, mm in zip(ids, m, strict=True) if mm > 0 and i != eos]
        for ids, m in zip(comp_B_T.tolist(), mask_B_T.tolist(), strict=True)
    ]
    return tokenizer.batch_decode(keep, skip_special_tokens=True)  # one call, not B


def completion_logits(model, batch: RolloutBatch) -> Tensor:
    """Logits [B, T, V] that predict each completion token (one forward over prompt +
    completion; only the last T+1 positions go through the LM head).

    When the batch's groups share their prompt (GRPO batches), the prompt runs once per
    group and its KV cache is repeated for the completions: the same logits to float
    rounding, differentiable, with (G-1)/G of the prompt tokens' work saved."""
    if batch.vision is not None:  # image prompts: vision inputs on the prompt prefill
        from copd.vlm import vlm_completion_logits

        return vlm_completion_logits(model, batch)
    T = batch.completion_ids_B_T.shape[1]
    mask = torch.cat(
        [batch.prompt_mask_B_P, batch.completion_mask_B_T.to(batch.prompt_mask_B_P.dtype)], 1
    )
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    rows_B = prompt_groups(batch.prompt_ids_B_P, batch.prompt_mask_B_P, batch.group_size)
    if SHARE_PROMPT_PREFIX and T > 0 and rows_B is not None:
        logits = _shared_prefix_logits(model, batch, mask, pos, rows_B)
        if logits is not None:
            return logits
    ids = torch.cat([batch.prompt_ids_B_P, batch.completion_ids_B_T], dim=1)
    out = model(
        input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, logits_to_keep=T + 1
    )
    return out.logits[:, :-1]


def _shared_prefix_logits(
    model, batch: RolloutBatch, mask_B_L: Tensor, pos_B_L: Tensor, rows_B: Tensor
):
    """completion_logits in two passes: the distinct prompts (B/G rows, cache kept), then
    the completions of all B rows on the repeated cache. None if the cache cannot repeat.

    Rows that ended early leave the completion pass at a split point chosen from the
    lengths (SPLIT_BY_LENGTH): tokens before it run for every row, the rest only for rows
    still going. Their logits past the end are then zeros (nothing reads them: every
    consumer applies the completion mask)."""
    P = batch.prompt_ids_B_P.shape[1]
    ids, mask = batch.prompt_ids_B_P, batch.prompt_mask_B_P
    shared = _shared_prefill(model, ids, mask, pos_B_L[:, :P], rows_B)
    if shared is None:
        return None
    last_logits, cache = shared
    first = last_logits[rows_B][:, None]  # predicts completion token 0
    T = batch.completion_ids_B_T.shape[1]
    if T == 1:
        return first
    # Completion tokens 0..T-2 predict tokens 1..T-1; the last token predicts nothing.
    # A row of length n needs tokens 0..n-2 fed.
    need_B = (batch.completion_mask_B_T.sum(1).long() - 1).clamp(min=0)
    split = length_split(need_B, T - 1) if SPLIT_BY_LENGTH else None
    kw = _cache_kw(model)
    ids, mask, pos = batch.completion_ids_B_T, mask_B_L[:, :-1], pos_B_L[:, P:-1]
    if split is None:
        out = model(
            input_ids=ids[:, :-1], attention_mask=mask, position_ids=pos, use_cache=True,
            **{kw: cache},
        )  # fmt: skip
        return torch.cat([first, out.logits], dim=1)
    parts = [first]
    if split > 0:  # every row: completion tokens 0..split-1
        out = model(
            input_ids=ids[:, :split], attention_mask=mask[:, : P + split],
            position_ids=pos[:, :split], use_cache=True, **{kw: cache},
        )  # fmt: skip
        cache = _out_cache(out)
        parts.append(out.logits)
    # Rows still going: tokens split..T-2, on their rows of the cache.
    rows = (need_B > split).nonzero().squeeze(1)
    if rows.numel() == 0:  # no row needs a token past the split: its logits are all zeros
        tail = first.new_zeros(batch.size, T - 1 - split, first.shape[-1])
    else:
        cache.batch_select_indices(rows)
        out = model(
            input_ids=ids[rows, split:-1], attention_mask=mask[rows],
            position_ids=pos[rows, split:], use_cache=True, **{kw: cache},
        )  # fmt: skip
        tail = out.logits.new_zeros(batch.size, *out.logits.shape[1:])
        tail = tail.index_copy(0, rows, out.logits)
    parts.append(tail)
    return torch.cat(parts, dim=1)


def length_split(need_B: Tensor, T: int, min_saving: float = 0.2) -> int | None:
    """Where to split a completion pass of T fed tokens so that rows needing fewer
    (`need_B`) stop early: the s minimising B*s + (#rows needing more than s)*(T-s), if
    that saves at least `min_saving` of the B*T tokens of one pass (a second pass has
    a fixed cost of its own). None: one pass."""
    B = need_B.numel()
    if B == 0 or T <= 1:
        return None
    s_ = torch.arange(T, device=need_B.device)
    live_S = (need_B[None, :] > s_[:, None]).sum(1)  # rows still needing tokens after s
    cost_S = B * s_ + live_S * (T - s_)
    s = int(cost_S.argmin())
    if int(live_S[s]) == B or float(cost_S[s]) > (1 - min_saving) * B * T:
        return None
    return s


def logprobs_from_logits(logits_B_T_V: Tensor, tokens_B_T: Tensor, temperature: float) -> Tensor:
    """log softmax(logits / temperature) at the given tokens, in float32."""
    from copd.losses import sequence_logprobs

    return sequence_logprobs(logits_B_T_V.float(), tokens_B_T, temperature)


def completion_logprobs(model, batch: RolloutBatch, temperature: float) -> Tensor:
    """Log-probs [B, T] of the sampled completion tokens under `model` (differentiable
    unless called under inference_mode)."""
    return logprobs_from_logits(
        completion_logits(model, batch), batch.completion_ids_B_T, temperature
    )
