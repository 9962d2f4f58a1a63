"""The Live view's Samples tab (Streamlit): what each branch generated, side by side, with
every token shaded by how much a peer disagrees (app/dashboard/tokens.py).

    draw_samples(run, url)        # link: live?run=ID&tab=samples

Pick a step (the latest by default), the probe set or the OPD (cross) batches, a domain and
a prompt; the prompts are ranked by disagreement (the largest mean |log p_peer - log p_self|
over the branches), so the most divergent is first. Below: the same prompt across the
recorded steps, and across the other runs of the run's group (CoPD against independent
experts on the same probe prompts, matched by text).
"""

from __future__ import annotations

import html
import math

import pandas as pd
import streamlit as st

from app.dashboard.text import md_escape
from app.dashboard.tokens import legend_html, tokens_html
from app.dashboard.widgets import QUERY_TTL_S, cached_runs, get_store
from storage import Run, Sample

KINDS = {"probe": "probe set (diagnostics)", "cross": "OPD batches (peer prompts)"}


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def cached_sample_steps(url: str, run_id: int) -> list[tuple[int, str]]:
    return get_store().sample_steps(run_id)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def cached_samples(url: str, run_id: int, step: int, kind: str) -> list[Sample]:
    return get_store().samples(run_id, step=step, kind=kind)


@st.cache_data(ttl=QUERY_TTL_S, show_spinner=False)
def cached_history(url: str, run_ids: tuple[int, ...], domain: str, index: int, kind: str):
    return get_store().sample_history(run_ids, domain, index, kind)


def rank_prompts(samples: list[Sample]) -> pd.DataFrame:
    """One row per (domain, prompt): its text, the largest disagreement and the lowest
    overlap over the branches, and each branch's reward; the most divergent first."""
    rows: dict[tuple[str, int], dict] = {}
    for s in samples:
        r = rows.setdefault(
            (s.domain, s.prompt_index),
            {"domain": s.domain, "prompt": s.prompt_index, "text": s.prompt,
             "disagreement": float("nan"), "overlap": float("nan")},
        )  # fmt: skip
        if math.isfinite(s.disagreement) and not s.disagreement <= r["disagreement"]:
            r["disagreement"] = s.disagreement
        if s.overlap is not None and not s.overlap >= r["overlap"]:
            r["overlap"] = s.overlap
        r[f"reward · {s.branch}"] = s.reward
    df = pd.DataFrame(list(rows.values()))
    if df.empty:
        return df
    return df.sort_values("disagreement", ascending=False, na_position="last").reset_index(
        drop=True
    )


def most_divergent(run_ids: list[int], n: int = 4) -> list[Sample]:
    """The `n` most divergent probe samples over `run_ids`, each run at its latest recorded
    step (for the Compare page's report)."""
    store, out = get_store(), []
    for rid in run_ids:
        steps = [s for s, k in store.sample_steps(rid) if k == "probe"]
        if steps:
            out += store.samples(rid, step=steps[-1], kind="probe", limit=n)
    finite = [s for s in out if math.isfinite(s.disagreement)]
    return sorted(finite, key=lambda s: -s.disagreement)[:n]


def draw_samples(run: Run, url: str) -> None:
    """The Samples tab of one run."""
    recorded = cached_sample_steps(url, run.id)
    if not recorded:
        every = (run.config.get("diagnostics") or {}).get("samples_every", 10)
        st.info(
            "No samples recorded yet. A run records its branches' completions at the "
            f"diagnostics points every diagnostics.samples_every = {every} steps "
            "(0 turns them off); they appear here as they are written."
        )
        return
    kinds = [k for k in KINDS if any(kd == k for _, kd in recorded)]
    c1, c2, c3 = st.columns([1, 2, 1])
    kind = c1.radio("Samples of", kinds, format_func=KINDS.get, key=f"samples:{run.id}:kind")
    steps = [s for s, kd in recorded if kd == kind]
    step = c2.select_slider(
        "Step", options=steps, value=steps[-1], key=f"samples:{run.id}:{kind}:step"
    )
    samples = cached_samples(url, run.id, step, kind)
    ranked = rank_prompts(samples)
    domains = sorted(ranked["domain"].unique())
    domain = c3.selectbox("Domain", domains, key=f"samples:{run.id}:domain")
    ranked = ranked[ranked["domain"] == domain].reset_index(drop=True)
    st.caption(
        f"{len(ranked)} prompts of {domain} at step {step}, the most divergent first "
        "(disagreement: mean |log p_peer − log p_self| over the completion's tokens, the "
        "largest over the branches; overlap: top-k overlap with that peer)."
    )
    st.dataframe(ranked.drop(columns=["domain"]), hide_index=True, width="stretch", height=180)
    index = st.selectbox(
        "Prompt",
        list(ranked["prompt"]),
        format_func=lambda i: _prompt_label(ranked, i),
        key=f"samples:{run.id}:{kind}:{domain}:prompt",
    )
    these = [s for s in samples if s.domain == domain and s.prompt_index == index]
    side_by_side(these, run)
    # toggles, not expanders: an expander's body is built even while it is closed
    if st.toggle("This prompt across the recorded steps", key=f"samples:{run.id}:steps"):
        across_steps(url, run, domain, index, kind)
    if run.group and st.toggle(
        f"This prompt in the other runs of group {run.group}", key=f"samples:{run.id}:runs"
    ):
        across_runs(url, run, these[0] if these else None, kind, step)


def _prompt_label(ranked: pd.DataFrame, i: int) -> str:
    row = ranked[ranked["prompt"] == i].iloc[0]
    gap = row["disagreement"]
    text = str(row["text"]).replace("\n", " ")
    text = text if len(text) <= 48 else text[:47] + "…"
    return f"#{i} · disagreement {gap:.2f} · {text}" if math.isfinite(gap) else f"#{i} · {text}"


def side_by_side(samples: list[Sample], run: Run) -> None:
    """Each branch's completion of the prompt in its own column, shaded by its peer."""
    if not samples:
        st.info("No sample of this prompt at this step.")
        return
    st.markdown("**Prompt**")
    st.code(samples[0].prompt, language=None, wrap_lines=True)
    k = int((run.config.get("diagnostics") or {}).get("top_k", 10))
    cols = st.columns(len(samples))
    for col, s in zip(cols, sorted(samples, key=lambda s: s.branch), strict=True):
        with col:
            peers = s.peer_names
            verdict = "correct" if s.correct else "wrong"
            st.markdown(f"**{md_escape(s.branch)}** · reward {s.reward:g} ({verdict})")
            peer = (
                st.selectbox("shaded by", peers, key=f"samples:{run.id}:{s.branch}:{s.kind}:peer")
                if peers
                else None
            )
            st.html(tokens_html(s, peer, k))
            st.caption(_summary(s, peer))
    st.html(legend_html(None, k))


def _summary(s: Sample, peer: str | None) -> str:
    n = len(s.tokens)
    if peer is None:
        return f"{n} tokens; no peer scored them (one policy, no base comparison)"
    topk = s.peers[peer].get("in_topk")
    outside = "" if topk is None else f", {sum(1 for t in topk if t is False)} outside its top-k"
    gap = s.disagreement
    g = f"{gap:.3f}" if math.isfinite(gap) else "n/a"
    return f"{n} tokens{outside}; disagreement {g}"


def across_steps(url: str, run: Run, domain: str, index: int, kind: str, most: int = 12) -> None:
    """The prompt's completions at up to `most` recorded steps (evenly spread, the first and
    the newest included): one row per step, one column per branch, in one HTML table."""
    hist = cached_history(url, (run.id,), domain, index, kind)
    steps = sorted({s.step for s in hist})
    if len(steps) > most:
        steps = sorted({steps[round(i * (len(steps) - 1) / (most - 1))] for i in range(most)})
    branches = sorted({s.branch for s in hist})
    by = {(s.step, s.branch): s for s in hist}
    head = "".join(f"<th>{html.escape(b)}</th>" for b in branches)
    body = []
    for step in steps:
        cells = []
        for b in branches:
            s = by.get((step, b))
            if s is None:
                cells.append("<td></td>")
                continue
            peers = s.peer_names
            cells.append(
                f"<td><small>reward {s.reward:g}</small>"
                f"{tokens_html(s, peers[0] if peers else None)}</td>"
            )
        body.append(f"<tr><td>step {step}</td>{''.join(cells)}</tr>")
    st.caption(
        f"{len(steps)} of {len({s.step for s in hist})} recorded steps, shaded by the first peer"
    )
    st.html(f"<table><tr><th>step</th>{head}</tr>{''.join(body)}</table>")


def across_runs(url: str, run: Run, sample: Sample | None, kind: str, step: int) -> None:
    """The same prompt (by text) in the group's other runs, at their step nearest `step`."""
    if sample is None:
        return
    others = [r for r in cached_runs(url) if r.group == run.group and r.id != run.id]
    shown = 0
    for other in others:
        hist = [
            s
            for s in cached_history(url, (other.id,), sample.domain, sample.prompt_index, kind)
            if s.prompt == sample.prompt
        ]
        if not hist:
            continue
        near = min({s.step for s in hist}, key=lambda x: abs(x - step))
        for s in (h for h in hist if h.step == near):
            peers = s.peer_names
            st.markdown(
                f"run {other.id} · {md_escape(other.method)} · **{md_escape(s.branch)}** · "
                f"step {s.step} · reward {s.reward:g}"
            )
            st.html(tokens_html(s, peers[0] if peers else None))
            shown += 1
    if not shown:
        st.caption("No other run of the group recorded this prompt.")
