"""Completions as HTML, token by token, shaded by how much a peer disagrees (no Streamlit).

    html = tokens_html(sample, peer="rev")      # one completion, one <span> per token
    legend_html()                               # the colour scale

Each token's background is the log-ratio `log p_peer - log p_self` on a diverging scale
clipped at +/-SCALE nats: blue where the peer finds the token likelier than the sampler did,
red where it finds it less likely (where OPD pushes the sampler away), white at 0. A token
outside the peer's top-k has a dashed red box. Hovering shows the token, both log-probs, the
ratio and the top-k membership.

Completions are untrusted text: every token, prompt and name is HTML-escaped here, and the
result is drawn with `st.html` (sanitised, never interpreted as markdown), so a completion
that reads `<script>` or `![x](http://...)` shows as those characters and loads nothing.
"""

from __future__ import annotations

import html
import math

from storage import Sample

SCALE = 3.0  # nats at which the colour saturates
_BLUE = (33, 102, 172)
_RED = (178, 24, 43)


def ratio_color(ratio: float | None, scale: float = SCALE) -> str:
    """The background of a token with log-ratio `ratio` (None: unknown, no shading)."""
    if ratio is None or not math.isfinite(ratio):
        return "transparent"
    x = max(-1.0, min(1.0, ratio / scale))
    r, g, b = _BLUE if x > 0 else _RED
    return f"rgba({r},{g},{b},{abs(x) * 0.85:.3f})"


def _visible(token: str) -> str:
    """Whitespace made visible, so a completion of spaces and newlines still reads."""
    if not token:
        return "∅"
    if not token.strip():
        token = token.replace(" ", "␣").replace("\t", "⇥")
    return token.replace("\n", "⏎\n")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"


def log_ratios(sample: Sample, peer: str | None) -> list[float | None]:
    """Per token `log p_peer - log p_self` (None where either is unknown or there is no peer)."""
    if peer is None or peer not in sample.peers:
        return [None] * len(sample.tokens)
    theirs = sample.peers[peer].get("logp") or []
    out = []
    for i in range(len(sample.tokens)):
        a = sample.logp[i] if i < len(sample.logp) else None
        b = theirs[i] if i < len(theirs) else None
        out.append(None if a is None or b is None else b - a)
    return out


def tokens_html(sample: Sample, peer: str | None, k: int = 10) -> str:
    """One completion as escaped spans, shaded by `peer`'s log-ratio (own log-probs only,
    unshaded, when `peer` is None)."""
    ratios = log_ratios(sample, peer)
    topk = (sample.peers.get(peer, {}).get("in_topk") if peer else None) or []
    theirs = (sample.peers.get(peer, {}).get("logp") if peer else None) or []
    spans = []
    for i, tok in enumerate(sample.tokens):
        own = sample.logp[i] if i < len(sample.logp) else None
        other = theirs[i] if i < len(theirs) else None
        inside = topk[i] if i < len(topk) else None
        tip = f"token {tok!r} · log p self {_fmt(own)}"
        if peer is not None:
            tip += f" · log p {peer} {_fmt(other)} · ratio {_fmt(ratios[i])}"
            if inside is not None:
                tip += f" · in {peer}'s top-{k}: {'yes' if inside else 'no'}"
        style = f"background:{ratio_color(ratios[i])}"
        cls = "copd-tok out" if inside is False else "copd-tok"
        spans.append(
            f'<span class="{cls}" style="{style}" title="{html.escape(tip, quote=True)}">'
            f"{html.escape(_visible(tok))}</span>"
        )
    return (
        "<style>.copd-tokens{font-family:ui-monospace,monospace;white-space:pre-wrap;"
        "line-height:1.9;word-break:break-all}.copd-tok{padding:1px 1px;border-radius:3px;"
        "border:1px solid transparent}.copd-tok.out{border:1px dashed #b2182b}</style>"
        f'<div class="copd-tokens">{"".join(spans)}</div>'
    )


def legend_html(peer: str | None = None, k: int = 10, scale: float = SCALE) -> str:
    """The colour scale, in words and swatches."""
    who = html.escape(peer) if peer else "the peer"
    stops = [-scale, -scale / 2, 0.0, scale / 2, scale]
    sw = "".join(
        f'<span style="background:{ratio_color(v, scale)};padding:2px 8px;margin:0 1px;'
        f'border-radius:3px">{v:+.1f}</span>'
        for v in stops
    )
    return (
        f'<div style="font-size:0.85em">log p<sub>{who}</sub> − log p<sub>self</sub> (nats): {sw}'
        f" &nbsp;red: {who} finds the token less likely · blue: likelier · "
        f'<span style="border:1px dashed #b2182b;padding:0 4px">dashed</span>: outside '
        f"{who}'s top-{k}</div>"
    )


def samples_html(samples: list[Sample], k: int = 10) -> str:
    """Recorded completions for the HTML report: a header per sample (run, step, branch,
    prompt, reward, disagreement) and its tokens shaded by the first branch peer."""
    if not samples:
        return "<p>No run of this selection recorded samples.</p>"
    parts = []
    for s in samples:
        peer = s.peer_names[0] if s.peers else None
        gap = f"{s.disagreement:.3f}" if math.isfinite(s.disagreement) else "n/a"
        parts.append(
            f"<h4>run {s.run_id} · step {s.step} · {html.escape(s.branch)} on "
            f"{html.escape(s.domain)} #{s.prompt_index} · reward {s.reward:g} · disagreement "
            f"{gap}{' · shaded by ' + html.escape(peer) if peer else ''}</h4>"
            f"<pre>{html.escape(s.prompt)}</pre>{tokens_html(s, peer, k)}"
        )
    return "\n".join(parts) + legend_html(None, k)
