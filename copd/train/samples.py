"""Samples: what each branch generates, and token by token where its peers agree.

At the diagnostics points whose step is a multiple of `diagnostics.samples_every`, every
branch's completions of the first `samples_prompts` probe prompts of each domain (the first
sample of each; the probe set is fixed per seed, so the same prompts come back at every
recorded step) are logged with, per token, the branch's own log-prob and each peer's (and
the base's) log-prob of that token and whether it lies in that peer's top-k (k of the overlap
metric). In phase II the first prompts of each cross (OPD) batch are logged too, with the
teacher's log-prob of every token, i.e. what the OPD advantage saw.

    if world.recording.due(step):
        rec = samples.ProbeRecorder(world, student, batch)   # inside overlap_diagnostics
        rec.peer(teacher, s_logits_N_V, t_logits_N_V)       # per peer
        rows += rec.rows(s_logits_N_V)
    world.logger.log_samples(rows, step=step, cycle=cycle, phase=phase)

One sample is a plain dict (the rows of `Logger.log_samples`; `storage.entities.Sample`
has the same fields):

    kind          "probe" (the diagnostics probe set) | "cross" (a phase-II OPD batch)
    branch        the policy that sampled it
    domain, prompt_index, prompt    the task, the prompt's index among the set's prompts of
                                    that domain, its text
    completion, reward, correct     the text (cut at eos), the verifier's reward, reward >= 1
    tokens        [T] each completion token as text
    logp          [T] the sampling policy's log-prob of each token (at the sampling temperature)
    peers         {name: {"logp": [T], "in_topk": [T] | None}}; "base" is the frozen base model
    disagreement  mean |log p_peer - log p_self| over the tokens, the largest over the branch
                  peers (over the base when a run has one branch)
    overlap       the mean top-k overlap with that peer (None for cross samples)

Log-probs are rounded to 4 decimals and non-finite ones stored as None, so a row is valid
JSON on every store back end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from copd.math.diagnostics import token_agreement
from copd.policy.batch import RolloutBatch, TeacherScores

BASE_PEER = "base"  # the frozen base model, as a peer name in a sample


def first_rows(batch: RolloutBatch, per_domain: int) -> list[int]:
    """The first sample of each of the first `per_domain` prompts of every domain in
    `batch`, as row indices in order."""
    G, seen, rows = batch.group_size, {}, []
    for i in range(0, batch.size, G):
        d = batch.examples[i].domain
        if seen.get(d, 0) < per_domain:
            seen[d] = seen.get(d, 0) + 1
            rows.append(i)
    return rows


def _floats(t: torch.Tensor) -> list[float | None]:
    return [round(v, 4) if math.isfinite(v) else None for v in t.tolist()]


def _prompt_text(example) -> str:
    media = [*example.images, *example.videos]
    if not media:
        return example.prompt
    names = ", ".join(str(getattr(m, "name", None) or type(m).__name__) for m in media)
    return f"{example.prompt}\n[media: {names}]"


def _mean_abs_gap(self_logp: list, peer_logp: list) -> float:
    gaps = [abs(p - s) for s, p in zip(self_logp, peer_logp, strict=True) if None not in (s, p)]
    return sum(gaps) / len(gaps) if gaps else float("nan")


class _Rows:
    """The rows of one batch to record: their token ids, text and flat positions."""

    def __init__(self, world, batch: RolloutBatch, rows: list[int]):
        mask = batch.completion_mask_B_T.bool()
        lengths = mask.sum(dim=1).tolist()
        starts = [0]
        for n in lengths[:-1]:
            starts.append(starts[-1] + n)
        self.world, self.batch, self.rows = world, batch, rows
        self.spans = [(starts[r], lengths[r]) for r in rows]
        ids_B_T = batch.completion_ids_B_T
        self.ids = [ids_B_T[r, : lengths[r]].tolist() for r in rows]
        flat = [torch.arange(s, s + n) for s, n in self.spans]
        self.flat_idx = torch.cat(flat) if flat else torch.zeros(0, dtype=torch.long)
        self.index_in_domain, counts = {}, {}  # row -> its prompt's index within its domain
        for i in range(0, batch.size, batch.group_size):
            d = batch.examples[i].domain
            for j in range(i, i + batch.group_size):
                self.index_in_domain[j] = counts.get(d, 0)
            counts[d] = counts.get(d, 0) + 1

    def split(self, values_N: torch.Tensor) -> list[list]:
        """Values at the recorded rows' flat positions, cut back per row."""
        out, at = [], 0
        for _, n in self.spans:
            out.append(values_N[at : at + n])
            at += n
        return out

    def base_row(self, kind: str, branch: str, r: int, j: int) -> dict:
        ex = self.batch.examples[r]
        text = self.batch.texts[r]
        reward = float(self.world.task_of(ex).reward(ex, text))
        tok = self.world.tokenizer
        return {
            "kind": kind,
            "branch": branch,
            "domain": ex.domain,
            "prompt_index": self.index_in_domain[r],
            "prompt": _prompt_text(ex),
            "completion": text,
            "reward": reward,
            "correct": reward >= 1.0,
            "tokens": [tok.decode([i]) for i in self.ids[j]],
        }


class ProbeRecorder:
    """Collects one student's probe samples while the overlap diagnostics score its tokens."""

    def __init__(self, world, student: str, batch: RolloutBatch):
        self.student = student
        rec = world.recording
        self.k = rec.top_k
        self.temperature = rec.temperature
        self.sel = _Rows(world, batch, first_rows(batch, rec.prompts))
        self.token_ids = batch.completion_ids_B_T[batch.completion_mask_B_T.bool()]
        self.peers: dict[str, dict[str, list]] = {}
        self.own: list[list[float | None]] | None = None

    def peer(self, name: str, s_logits_N_V: torch.Tensor, t_logits_N_V: torch.Tensor) -> None:
        """Record how peer `name` (its logits at the batch's completion tokens) judges them."""
        idx = self.sel.flat_idx.to(s_logits_N_V.device)
        agree = token_agreement(
            s_logits_N_V[idx],
            t_logits_N_V[idx],
            self.token_ids.to(s_logits_N_V.device)[idx],
            self.k,
            self.temperature,
        )
        if self.own is None:
            self.own = [_floats(v) for v in self.sel.split(agree["logp_student"])]
        self.peers[name] = {
            "logp": [_floats(v) for v in self.sel.split(agree["logp_teacher"])],
            "in_topk": [v.tolist() for v in self.sel.split(agree["in_topk"])],
            "overlap": [v.float().mean().item() for v in self.sel.split(agree["overlap"])],
        }

    def rows(self, s_logits_N_V: torch.Tensor) -> list[dict]:
        """The recorded samples (own log-probs from `s_logits_N_V` when no peer scored them)."""
        if self.own is None:
            idx = self.sel.flat_idx.to(s_logits_N_V.device)
            ids = self.token_ids.to(s_logits_N_V.device)[idx].long().unsqueeze(-1)
            lp = torch.log_softmax(s_logits_N_V[idx].float() / self.temperature, -1)
            self.own = [_floats(v) for v in self.sel.split(lp.gather(-1, ids).squeeze(-1))]
        out = []
        for j, r in enumerate(self.sel.rows):
            row = self.sel.base_row("probe", self.student, r, j)
            row["logp"] = self.own[j]
            row["peers"] = {
                n: {"logp": p["logp"][j], "in_topk": p["in_topk"][j]} for n, p in self.peers.items()
            }
            gap, ov = _headline(self.own[j], {n: (p["logp"][j], p["overlap"][j])
                                              for n, p in self.peers.items()})  # fmt: skip
            row["disagreement"], row["overlap"] = gap, ov
            out.append(row)
        return out


def _headline(own: list, peers: dict[str, tuple[list, float]]) -> tuple[float, float | None]:
    """(disagreement, overlap) of a sample: against the branch peer it disagrees with most,
    or against the base when the run has no other branch."""
    branch_peers = {n: v for n, v in peers.items() if n != BASE_PEER} or peers
    best: tuple[float, float | None] = (float("nan"), None)
    for logp, overlap in branch_peers.values():
        gap = _mean_abs_gap(own, logp)
        if math.isnan(best[0]) or gap > best[0]:
            best = (gap, overlap)
    return best


def cross_samples(
    world,
    student: str,
    teacher: str | Mapping[str, str],
    batch: RolloutBatch,
    student_logits_N_V: torch.Tensor,
    teacher_logp_B_T: torch.Tensor,
) -> list[dict]:
    """The recorded rows of one cross (OPD) batch: `student`'s completions of `teacher`'s
    prompts, with the student's log-prob of each token (`student_logits_N_V`: its logits at
    the batch's completion tokens) and the teacher's (`teacher_logp_B_T`: what the OPD term
    used). `teacher` may map each domain to its teacher (MOPD's routing)."""
    sel = _Rows(world, batch, first_rows(batch, world.recording.prompts))
    ids = batch.completion_ids_B_T[batch.completion_mask_B_T.bool()]
    t = world.loss.temperature  # the temperature the OPD term scored the teacher at
    lp = torch.log_softmax(student_logits_N_V.float() / t, -1)
    own_N = lp.gather(-1, ids.to(lp.device).long().unsqueeze(-1)).squeeze(-1)
    own = sel.split(own_N.cpu()[sel.flat_idx])
    out = []
    for j, r in enumerate(sel.rows):
        row = sel.base_row("cross", student, r, j)
        n = sel.spans[j][1]
        row["logp"] = _floats(own[j])
        peer = _floats(teacher_logp_B_T[r, :n].float().cpu())
        name = teacher if isinstance(teacher, str) else teacher[row["domain"]]
        row["peers"] = {name: {"logp": peer, "in_topk": None}}
        row["disagreement"] = _mean_abs_gap(row["logp"], peer)
        row["overlap"] = None
        out.append(row)
    return out


def log_opd_batch(
    world,
    student: str,
    logits_of: Callable[[RolloutBatch], torch.Tensor],
    teacher: str | Mapping[str, str],
    batch: RolloutBatch,
    scores: TeacherScores,
) -> None:
    """In-process distillation (static OPD, MOPD): record the first prompts of the batch the
    student distils on, as `cross` samples at the step this update makes, when due.
    `logits_of(batch)`: the student's logits [N, V] at a batch's completion tokens."""
    step = world.state.step + 1
    if not world.recording.due(step):
        return
    G = batch.group_size
    n = world.recording.prompts * len({e.domain for e in batch.examples})
    sub = batch.subset(list(range(min(n * G, batch.size))))
    logp = scores.logp
    rows = cross_samples(world, student, teacher, sub, logits_of(sub), logp[: sub.size])
    world.logger.log_samples(rows, step=step, phase="opd")
