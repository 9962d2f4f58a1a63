"""RolloutBatch: one policy's rollouts of a batch of prompts, grouped G samples per prompt.

    batch = sample_rollouts(policy, tokenizer, examples, group_size=8, ...)   # copd.policy.rollout
    part = batch.subset(rows)        # whole prompt groups (routing, groups with a signal)
    batch = batch.to("cuda:1")       # to another branch's device

Produced by the sampler (copd/policy/sampler.py), the vision-language path (copd/policy/vlm.py) and
vLLM (copd/policy/rollout_vllm.py); scored by copd/policy/rollout.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

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
    extras: dict[str, Tensor] = field(default_factory=dict)  # e.g. "logits_B_T_V"
    # Image prompts only: the processor's vision tensors of the distinct prompts
    # (copd.policy.vlm.VisionInputs); None for text batches.
    vision: Any = None
    # The sampling policy's log-probs [B, T] for the PPO ratio, when an earlier pass
    # recorded them (several updates per batch, or several mini-batches); None otherwise.
    old_logp_B_T: Tensor | None = None

    @property
    def size(self) -> int:
        return self.completion_ids_B_T.shape[0]

    def subset(self, rows: list[int]) -> RolloutBatch:
        """The rows `rows` of this batch (whole prompt groups: routing by domain, groups
        with a learning signal).

        Image/video batches carry vision inputs per distinct prompt, so there `rows` must be
        whole groups (all G rows of each prompt, in order); the vision tensors of those
        prompts are selected with them (`copd.policy.vlm.VisionInputs.select`), and a subset whose
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
            None if self.old_logp_B_T is None else self.old_logp_B_T[idx],
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
            None if self.old_logp_B_T is None else self.old_logp_B_T.to(device),
        )


@dataclass
class TeacherScores:
    """What an OPD term needs from its teacher for a batch's rows (`World.score_opd`): the
    log-probs [B, T] of the sampled tokens; for the direct losses also the teacher's full
    log-distribution [B, T, V] (`opd.advantage="full_kl"`) or its top-k log-probs and
    token ids [B, T, k] (`"topk"`). One type wherever scores travel (terms, mini-batch
    slices, workers, routing); `of` takes a bare log-prob tensor as the sampled case."""

    logp: Tensor
    full: Tensor | None = None
    topk_vals: Tensor | None = None
    topk_idx: Tensor | None = None

    @classmethod
    def of(cls, scores: TeacherScores | Tensor) -> TeacherScores:
        return scores if isinstance(scores, TeacherScores) else cls(scores)

    def parts(self) -> dict[str, Tensor]:
        """The tensors present, by field name."""
        names = ("logp", "full", "topk_vals", "topk_idx")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}

    def rows(self, idx: Tensor) -> TeacherScores:
        """The scores of rows `idx` (a mini-batch, one teacher's routed rows)."""
        return TeacherScores(**{k: v[idx.to(v.device)] for k, v in self.parts().items()})

    def to(self, device: torch.device | str) -> TeacherScores:
        return TeacherScores(**{k: v.to(device) for k, v in self.parts().items()})
