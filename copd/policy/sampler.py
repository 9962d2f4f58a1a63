"""The sampler: batched decoding with a KV cache, and the token draws.

    decoding = Decoding(temperature=1.0, max_new_tokens=8)     # copd/policy/decoding.py
    batches = sample_text_rollouts(policy, tokenizer, [(examples, 8)], decoding, generator=gen)
    comp_B_T = sample_tokens(policy, ids_B_P, mask_B_P, decoding, eos_id=eos, pad_id=pad,
                             group_size=8)

A plain batched decode loop (one forward per new token, reusing the cache), not
`generate`: for short verifiable answers `generate`'s fixed per-call overhead dominates
(see docs/PERFORMANCE.md). Tokens are drawn by inverse CDF (one uniform per row). A
group's shared prompt runs once and its KV cache is repeated (`prompt_groups`,
`shared_prefill`; the log-prob passes of copd/policy/rollout.py use them too; every
prompt pass, the image prompts' included, is one `prefill` call); rows that
finished leave the decode batch. Completion masks stop at the first end-of-sequence
token, inclusive; anything sampled after it is padding, not completion.

The speed-ups are module switches (each on by default; bench/ablate_engine.py turns them
off one at a time). copd/policy/rollout.py routes image/video prompts to copd/policy/vlm.py, which
reuses `decode`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from copd.errors import NonFiniteWeights
from copd.math.losses import completion_mask
from copd.policy.batch import RolloutBatch
from copd.policy.chat import render_prompts
from copd.policy.decoding import Decoding
from copd.policy.hf_cache import cache_kw, dense_mask_dtype, out_cache, step_mask
from copd.tasks import Example

# Run a group's shared prompt once and repeat its KV cache (sampling, and the log-prob
# passes of copd/policy/rollout.py).
# Logits match the one-pass computation to float rounding; False restores one pass over
# every row (bench/ablate_engine.py measures the difference).
SHARE_PROMPT_PREFIX = True
# Drop rows that reached eos from the decode batch (and the KV cache) once a quarter of the
# batch has finished; the token draws stay the same. False decodes every row to the end.
PRUNE_FINISHED_ROWS = True
# Sampling runs under torch.inference_mode (its outputs are copied out) instead of no_grad.
INFERENCE_MODE_DECODE = True
# Decode steps pass a ready [B, 1, 1, L] additive mask (eager/SDPA attention only).
DENSE_DECODE_MASK = True
# Draw tokens by inverse CDF (one uniform per row) instead of torch.multinomial (one
# exponential per vocabulary entry); same distribution, different draws for a seed.
SAMPLE_BY_CDF = True


def encode_prompts(
    tokenizer, prompts: list[str], device, add_special_tokens: bool = True
) -> tuple[Tensor, Tensor]:
    """Left-padded prompt ids and mask ([B, P]). The tokenizer adds its own bos if it has a
    post-processor for it (the built-in char tokenizer does), unless `add_special_tokens`
    is False: text rendered through a chat template already holds them (copd/policy/chat.py)."""
    enc = tokenizer(
        prompts,
        return_tensors="pt",
        padding=True,
        padding_side="left",
        add_special_tokens=add_special_tokens,
    )
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def decode_completions(tokenizer, comp_B_T: Tensor, mask_B_T: Tensor) -> list[str]:
    """Decode each completion up to (not including) its eos."""
    eos = tokenizer.eos_token_id
    keep = [
        [i for i, mm in zip(ids, m, strict=True) if mm > 0 and i != eos]
        for ids, m in zip(comp_B_T.tolist(), mask_B_T.tolist(), strict=True)
    ]
    return tokenizer.batch_decode(keep, skip_special_tokens=True)  # one call, not B


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


def shared_prefill(model, ids_B_P: Tensor, mask_B_P: Tensor, pos_B_P: Tensor, rows_B: Tensor):
    """Run each group's prompt once (D rows) and expand the KV cache to the B rows
    (`rows_B`: each row's group, from `prompt_groups`). Returns (last-position logits
    [D, V], cache with B rows), or None when this model's cache cannot be indexed (the
    caller then runs every row).

    Differentiable: under autograd the expanded cache carries the gradient back to the
    one prompt pass, summed over the group, exactly as separate prompt passes would."""
    first_D = group_starts(rows_B)
    logits_D_V, cache = prefill(model, ids_B_P[first_D], mask_B_P[first_D], pos_B_P[first_D])
    if not hasattr(cache, "batch_select_indices"):
        return None
    cache.batch_select_indices(rows_B)
    return logits_D_V, cache


def prefill(model, ids_B_P: Tensor, mask_B_P: Tensor, pos_B_P: Tensor, **inputs):
    """The one prompt pass of every sampler and log-prob pass: run the prompts once,
    keeping the KV cache and the LM head's output at the last position only. Returns
    (last-position logits [B, V], cache). `inputs`: further forward arguments (an image
    prompt's vision tensors, copd/policy/vlm.py). Differentiable."""
    out = model(
        input_ids=ids_B_P,
        attention_mask=mask_B_P,
        position_ids=pos_B_P,
        use_cache=True,
        logits_to_keep=1,
        **inputs,
    )
    return out.logits[:, -1], out_cache(out)


def sample_tokens(
    model,
    prompt_ids_B_P: Tensor,
    prompt_mask_B_P: Tensor,
    decoding: Decoding,
    *,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator | None = None,
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
            shared = shared_prefill(model, prompt_ids_B_P, prompt_mask_B_P, pos, rows_B)
        if shared is not None:
            last_logits, cache = shared
            logits = last_logits.float()[rows_B]
        else:
            last_logits, cache = prefill(model, prompt_ids_B_P, prompt_mask_B_P, pos)
            logits = last_logits.float()
        comp = decode(
            model, logits, cache, prompt_mask_B_P, pos[:, -1] + 1, decoding, eos_id=eos_id,
            pad_id=pad_id, generator=generator, logits_out=steps,
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
    decoding: Decoding,
    *,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator | None,
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
    kw = cache_kw(model)
    max_new_tokens = decoding.max_new_tokens
    B, L = mask_B_L.shape
    positions = positions or (lambda p: p[:, None])
    dense = dense_mask_dtype(model) if DENSE_DECODE_MASK else None
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
        nxt = _pick(logits, decoding, generator)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        tokens.append(nxt)
        done = done | (nxt == eos_id)
        # On CPU this check costs nothing (no device sync) and ends the loop early. NaN/inf
        # probabilities (diverged weights) draw index V, which would fail in the embedding.
        all_done, diverged = torch.stack([done.all(), (nxt >= logits.shape[-1]).any()]).tolist()
        if diverged:
            raise NonFiniteWeights("the policy's next-token probabilities are NaN/inf")
        if t == max_new_tokens - 1 or all_done:
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
        cache = out_cache(out)
        if rows is None:
            logits = out.logits[:, -1].float()
        else:
            logits = logits.clone()
            logits[rows] = out.logits[:, -1].float()
    return torch.stack(tokens, dim=1)


def device_generator(generator: torch.Generator | None, device) -> torch.Generator | None:
    """The RNG streams live on the CPU (they are checkpointed there). Sampling on another
    device (CUDA) needs a generator on that device: derive one per rollout, seeded from the
    CPU stream, so runs stay deterministic and resumable. On the CPU: the stream itself."""
    device = torch.device(device)
    if generator is None or generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def _pick(logits_B_V: Tensor, decoding: Decoding, generator) -> Tensor:
    if decoding.greedy:
        return logits_B_V.argmax(-1)
    probs = torch.softmax(logits_B_V / decoding.temperature, dim=-1)
    if decoding.top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < decoding.top_p
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


def sample_text_rollouts(
    model,
    tokenizer,
    requests: Sequence[tuple[list[Example], int]],
    decoding: Decoding,
    *,
    generator: torch.Generator | None = None,
    device=None,
    keep_logits: bool = False,
) -> list[RolloutBatch]:
    """One RolloutBatch per (examples, group size) request of text prompts, all decoded in
    one loop: a phase-II branch samples its native batch and its cross batches together,
    so the fixed cost of a decode step is paid once, not once per batch. Each batch is what
    sampling its request alone would return (its own prompt padding, its completions up to
    its own longest answer); only the random draws differ, as they come from one stream
    for all rows. `keep_logits`: each batch also keeps the sampler's own logits [B, T, V]
    in `extras["logits_B_T_V"]`."""
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
        decoding,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        generator=generator,
        group_size=sizes,
        logits_out=steps,
    )
    cmask = completion_mask(comp, tokenizer.eos_token_id).float()
    logits = torch.stack(steps, dim=1) if steps else None
    return _request_batches(tokenizer, requests, ids_D_P, mask_D_P, comp, cmask, logits)


def _request_batches(
    tokenizer, requests, ids_D_P: Tensor, mask_D_P: Tensor, comp: Tensor, cmask: Tensor, logits
) -> list[RolloutBatch]:
    """Cut the rows decoded together back into one RolloutBatch per request (D distinct
    prompts in request order, their groups' rows in order)."""
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
