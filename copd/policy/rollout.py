"""Rollouts and scoring: sample G completions per prompt, and log-probs under any policy.

    decoding = Decoding(temperature=1.0, max_new_tokens=8)   # copd/policy/decoding.py
    batch = sample_rollouts(policy, tokenizer, examples, decoding, group_size=8, generator=gen)
    logp_B_T = completion_logprobs(policy, batch, temperature=1.0)   # differentiable
    with torch.inference_mode():
        teacher_logp_B_T = completion_logprobs(teacher, batch, temperature=1.0)

Sampling goes to the sampler (copd/policy/sampler.py: a batched KV-cache decode loop) for text
prompts and to copd/policy/vlm.py for image/video prompts. Scoring runs one forward over prompt +
completion; a group's shared prompt runs once and its KV cache is repeated, and rows that
ended leave the completion pass at a length split.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from copd.math.losses import sequence_logprobs
from copd.policy import sampler
from copd.policy.batch import RolloutBatch
from copd.policy.decoding import Decoding
from copd.policy.hf_cache import cache_kw, out_cache
from copd.policy.sampler import prompt_groups, sample_text_rollouts, shared_prefill
from copd.policy.vlm import has_media, is_processor, sample_vlm_rollouts, vlm_completion_logits
from copd.tasks import Example, Task

# In log-prob passes, feed the tokens after a split point only for rows that have not
# ended (see length_split); False runs every row to the batch's longest completion.
# (The prompt-sharing switch, SHARE_PROMPT_PREFIX, lives in copd/policy/sampler.py.)
SPLIT_BY_LENGTH = True


def sample_rollouts(
    model, tokenizer, examples: list[Example], decoding: Decoding, *, group_size: int, **kw
) -> RolloutBatch:
    """G samples for each example (rows grouped per prompt): `sample_rollout_sets` with one
    request, and the same keywords (generator, device, keep_logits). `keep_logits`: text
    prompts also keep the sampler's own logits [B, T, V] in `extras["logits_B_T_V"]` (what
    a fresh `completion_logits` pass would give, to float rounding; the diagnostics reuse
    them instead of running the student again)."""
    [batch] = sample_rollout_sets(model, tokenizer, [(examples, group_size)], decoding, **kw)
    return batch


def accuracy(
    model, tokenizer, task: Task, examples: list[Example], decoding: Decoding, **kw
) -> float:
    """Mean reward of one sample per example under `decoding` (greedy for greedy
    accuracy), decoded as training decodes: `sample_rollouts` with the same keywords. The
    one scoring path of the run's evaluation, `copd eval` and the demo base's recorded
    scores."""
    batch = sample_rollouts(model, tokenizer, examples, decoding, group_size=1, **kw)
    rewards = [task.reward(ex, t) for ex, t in zip(batch.examples, batch.texts, strict=True)]
    return sum(rewards) / len(rewards)


def sample_rollout_sets(
    model,
    tokenizer,
    requests: Sequence[tuple[list[Example], int]],
    decoding: Decoding,
    *,
    generator: torch.Generator | None = None,
    device=None,
    keep_logits: bool = False,
) -> list[RolloutBatch]:
    """One RolloutBatch per (examples, group size) request, all decoded in one loop: a
    phase-II branch samples its native batch and its cross batches together, so the
    fixed cost of a decode step is paid once, not once per batch. Each batch is what
    `sample_rollouts` alone would return (its own prompt padding, its completions up to
    its own longest answer); only the random draws differ, as they come from one stream
    for all rows (copd/policy/sampler.py). Image/video requests are sampled one by one (copd/policy/vlm.py)."""
    if is_processor(tokenizer):  # a vision-language model: images go through copd/policy/vlm.py
        if any(has_media(exs) for exs, _ in requests):
            kw = dict(generator=generator, device=device)
            text = dict(keep_logits=keep_logits, **kw)
            return [
                sample_vlm_rollouts(model, tokenizer, exs, decoding, group_size=g, **kw)
                if has_media(exs)
                else sample_rollouts(
                    model, tokenizer.tokenizer, exs, decoding, group_size=g, **text
                )
                for exs, g in requests
            ]
        tokenizer = tokenizer.tokenizer  # text-only prompts: the text path, unchanged
    return sample_text_rollouts(
        model, tokenizer, requests, decoding, generator=generator, device=device,
        keep_logits=keep_logits,
    )  # fmt: skip


def completion_logits(model, batch: RolloutBatch) -> Tensor:
    """Logits [B, T, V] that predict each completion token (one forward over prompt +
    completion; only the last T+1 positions go through the LM head).

    When the batch's groups share their prompt (GRPO batches), the prompt runs once per
    group and its KV cache is repeated for the completions: the same logits to float
    rounding, differentiable, with (G-1)/G of the prompt tokens' work saved."""
    if batch.vision is not None:  # image prompts: vision inputs on the prompt prefill
        return vlm_completion_logits(model, batch)
    T = batch.completion_ids_B_T.shape[1]
    mask = torch.cat(
        [batch.prompt_mask_B_P, batch.completion_mask_B_T.to(batch.prompt_mask_B_P.dtype)], 1
    )
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    rows_B = prompt_groups(batch.prompt_ids_B_P, batch.prompt_mask_B_P, batch.group_size)
    if sampler.SHARE_PROMPT_PREFIX and T > 0 and rows_B is not None:
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
    shared = shared_prefill(model, ids, mask, pos_B_L[:, :P], rows_B)
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
    kw = cache_kw(model)
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
        cache = out_cache(out)
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
    return sequence_logprobs(logits_B_T_V.float(), tokens_B_T, temperature)


def completion_logprobs(model, batch: RolloutBatch, temperature: float) -> Tensor:
    """Log-probs [B, T] of the sampled completion tokens under `model` (differentiable
    unless called under inference_mode)."""
    return logprobs_from_logits(
        completion_logits(model, batch), batch.completion_ids_B_T, temperature
    )
