"""Read models and figures of the live view's instruments (pure: no Streamlit, no store),
drawn by app/dashboard/signal_view.py:

- **Signal balance** per branch: how much each term of the combined phase-II update
  (`L_GRPO + w * L_OPD(t)` per teacher t) moves the weights, from the metrics logged under
  `branch/<b>/signal/...` at diagnostics steps (copd/common/names.py) and the clip fractions
  `branch/<b>/clip_frac` (GRPO) and `branch/<b>/clip_frac/<t>` (OPD).
- **Overlap at several k**: top-1 / top-5 / top-10 overlap and overlap mass side by side,
  and which k the model's vocabulary makes meaningful (k / vocabulary size).

    fig = signal_figure(df, "add", schedule=schedule_of(run.config, run.method))
    fig = overlap_k_figure(df, schedule=...)
    note = k_caption([1, 5, 10], vocab_size_of(run.config))
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.dashboard.charts import X_TITLES, color, shade
from app.dashboard.series import Schedule
from copd.common import names as N

GRPO = "grpo"
# (kind, panel title, y axis): the signal-balance panels in reading order.
SIGNAL_PANELS = [
    ("grad_norm", "Gradient norm per term", "‖∇ term‖"),
    ("cos", "Cosine of ∇OPD(t) with ∇GRPO", "cos"),
    ("adv_abs", "Mean |advantage| per term", "mean |A|"),
    ("pos_frac", "Cross tokens the teacher prefers (log p_T > log p_S)", "share"),
    ("log_ratio", "Mean log p_T − log p_S  (≈ −KL(student‖teacher))", "nats"),
    ("clip_frac", "Clip fraction", "share"),
]
CLIP = "clip_frac"


def term_label(term: str) -> str:
    """`grpo` -> `GRPO (native)`, `rev` -> `OPD ← rev`."""
    return "GRPO (native)" if term == GRPO else f"OPD ← {term}"


def parse_signal_key(key: str) -> tuple[str, str, str] | None:
    """`branch/add/signal/grad_norm/rev` -> ("add", "grad_norm", "rev");
    `branch/add/clip_frac` -> ("add", "clip_frac", "grpo"); `branch/add/clip_frac/rev` ->
    ("add", "clip_frac", "rev"); None for any other key."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "branch":
        return None
    b, rest = parts[1], "/".join(parts[2:])
    if rest.startswith(N.SIGNAL_PREFIX):
        kind, _, term = rest[len(N.SIGNAL_PREFIX) :].partition("/")
        return (b, kind, term) if kind and term else None
    if rest == N.CLIP_FRAC:
        return b, CLIP, GRPO
    if rest.startswith(N.CLIP_FRAC + "/"):
        return b, CLIP, rest[len(N.CLIP_FRAC) + 1 :]
    return None


def signal_keys(keys: list[str]) -> dict[str, tuple[str, str, str]]:
    """The run's signal-balance keys: key -> (branch, kind, term)."""
    out = {}
    for k in keys:
        parsed = parse_signal_key(k)
        if parsed is not None:
            out[k] = parsed
    return out


def signal_branches(keys: list[str]) -> list[str]:
    """Branches with at least one `signal/*` metric (the clip fraction alone, logged by
    every GRPO step, does not make a signal-balance chart)."""
    found = {b for b, kind, _ in signal_keys(keys).values() if kind != CLIP}
    return sorted(found)


def signal_figure(
    df: pd.DataFrame,
    branch: str,
    *,
    schedule: Schedule | None = None,
    x: str = "step",
    revision: str | None = None,
) -> go.Figure:
    """One branch's signal balance: a panel per SIGNAL_PANELS kind (those with data), one
    line per term (GRPO and each teacher's OPD term, same colour in every panel), the
    run's phases shaded from `schedule`. `df`: the store's long series frame (with `x`)."""
    parsed = {k: p for k, p in signal_keys(list(dict.fromkeys(df["key"]))).items()}
    mine = {k: (kind, term) for k, (b, kind, term) in parsed.items() if b == branch}
    kinds = [p for p in SIGNAL_PANELS if any(kind == p[0] for kind, _ in mine.values())]
    terms = sorted({t for _, t in mine.values()}, key=lambda t: (t != GRPO, t))
    colours = {t: color(i) for i, t in enumerate(terms)}
    if "x" not in df:
        df = df.assign(x=df["step"].astype(float))
    rows = max(1, (len(kinds) + 1) // 2)
    fig = make_subplots(
        rows=rows,
        cols=2,
        subplot_titles=[title for _, title, _ in kinds] or ["no signal-balance metrics"],
        vertical_spacing=0.22 / rows * 2 if rows > 1 else 0.1,
        horizontal_spacing=0.09,
    )
    shown: set[str] = set()
    for i, (kind, _, y_title) in enumerate(kinds):
        r, c = i // 2 + 1, i % 2 + 1
        for key, (k2, term) in sorted(mine.items(), key=lambda kv: terms.index(kv[1][1])):
            if k2 != kind:
                continue
            g = df[df["key"] == key].sort_values("x")
            fig.add_trace(
                go.Scatter(
                    x=g["x"], y=g["value"], mode="lines+markers", marker=dict(size=5),
                    line=dict(color=colours[term], width=2), name=term_label(term),
                    legendgroup=term, showlegend=term not in shown,
                ),
                row=r, col=c,
            )  # fmt: skip
            shown.add(term)
        fig.update_yaxes(title_text=y_title, row=r, col=c)
        if kind == "cos":
            fig.add_hline(y=0.0, line_width=1, line_color="rgba(90,90,90,0.6)", row=r, col=c)
        fig.update_xaxes(title_text=X_TITLES.get(x, x), row=r, col=c)
    if schedule is not None and x == "step" and len(df):
        shade(fig, schedule, x_max=float(df["x"].max()))
    fig.update_layout(
        title=f"Signal balance · branch {branch}",
        uirevision=revision or f"signal:{branch}",
        height=260 * rows + 120,
        margin=dict(l=50, r=20, t=70, b=40),
        legend=dict(orientation="h", yanchor="top", y=-0.08),
        hovermode="x unified",
    )
    return fig


# ---------------------------------------------------------------------- overlap at several k
_OVERLAP_RE = re.compile(r"/overlap_top(\d+)$")


def overlap_k_keys(keys: list[str], prefix: str = "pair/") -> dict[str, list[str]]:
    """Panel name -> keys: `top-1`, `top-5`, `top-10`, ... (by k) then `mass`, for keys
    under `prefix` (`pair/` branch vs branch, `base/` branch vs base)."""
    by_k: dict[int, list[str]] = {}
    mass: list[str] = []
    for k in keys:
        if not k.startswith(prefix):
            continue
        m = _OVERLAP_RE.search(k)
        if m:
            by_k.setdefault(int(m.group(1)), []).append(k)
        elif k.endswith("/" + N.OVERLAP_MASS):
            mass.append(k)
    out = {f"top-{k}": sorted(v) for k, v in sorted(by_k.items())}
    if mass:
        out["mass"] = sorted(mass)
    return out


def overlap_k_figure(
    df: pd.DataFrame,
    panels: dict[str, list[str]],
    *,
    schedule: Schedule | None = None,
    x: str = "step",
    vocab: int | None = None,
    revision: str = "overlap-k",
) -> go.Figure:
    """A panel per k (and overlap mass), side by side on a shared 0..1 axis, one line per
    pair (same colour in every panel). With `vocab`, each top-k title says k / vocabulary."""
    if "x" not in df:
        df = df.assign(x=df["step"].astype(float))
    names = list(panels)
    titles = []
    for name in names:
        k = int(name.split("-")[1]) if name.startswith("top-") else None
        share = f" · k/V = {k / vocab:.0%}" if k and vocab else ""
        titles.append(("overlap mass" if name == "mass" else f"{name} overlap") + share)
    fig = make_subplots(
        rows=1, cols=max(1, len(names)), shared_yaxes=True, subplot_titles=titles or ["—"]
    )
    scopes = sorted({N.scope_of(k) for ks in panels.values() for k in ks})
    colours = {s: color(i) for i, s in enumerate(scopes)}
    for j, name in enumerate(names):
        for key in panels[name]:
            scope = N.scope_of(key)
            g = df[df["key"] == key].sort_values("x")
            fig.add_trace(
                go.Scatter(
                    x=g["x"], y=g["value"], mode="lines+markers", marker=dict(size=4),
                    line=dict(color=colours[scope], width=2), name=scope, legendgroup=scope,
                    showlegend=j == 0,
                ),
                row=1, col=j + 1,
            )  # fmt: skip
        fig.update_xaxes(title_text=X_TITLES.get(x, x), row=1, col=j + 1)
    fig.update_yaxes(range=[0, 1.02], title_text="overlap", row=1, col=1)
    if schedule is not None and x == "step" and len(df):
        shade(fig, schedule, x_max=float(df["x"].max()))
    fig.update_layout(
        title="Overlap at several k (student~teacher)",
        uirevision=revision,
        height=360,
        margin=dict(l=50, r=20, t=70, b=40),
        legend=dict(orientation="h", yanchor="top", y=-0.2),
        hovermode="x unified",
    )
    return fig


def vocab_size_of(config: dict[str, Any] | None) -> int | None:
    """The vocabulary size of the run's model: `vocab_size` in `<model.path>/config.json`
    (or its `text_config`, for a vision-language model) when model.path is a local
    directory readable here; None otherwise (a hub id, or another machine's path)."""
    path = ((config or {}).get("model") or {}).get("path")
    if not path:
        return None
    file = Path(str(path)).expanduser() / "config.json"
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    for section in (data, data.get("text_config") or {}):
        v = section.get("vocab_size") if isinstance(section, dict) else None
        if isinstance(v, int) and v > 0:
            return v
    return None


MEANINGFUL_SHARE = 0.05  # top-k overlap says little once k covers more than 5% of the tokens


def k_caption(ks: list[int], vocab: int | None) -> str:
    """Which k discriminate at this vocabulary: k / V for each k, and the verdict."""
    if not ks:
        return ""
    if vocab is None:
        return (
            "Vocabulary size unknown (model.path is not a local directory readable here): "
            "top-k overlap is only informative when k is a small share of the vocabulary."
        )
    shares = ", ".join(f"top-{k}: {k}/{vocab} = {k / vocab:.1%}" for k in ks)
    good = [k for k in ks if k / vocab <= MEANINGFUL_SHARE]
    bad = [k for k in ks if k not in good]
    limit = f"{MEANINGFUL_SHARE:.0%}"
    if not bad:
        verdict = f"every k is at most {limit} of the vocabulary, so each overlap discriminates."
    elif good:
        names = " and ".join(f"top-{k}" for k in good)
        verdict = (
            f"{names} (≤ {limit} of the vocabulary) "
            + ("discriminates; " if len(good) == 1 else "discriminate; ")
            + ", ".join(f"top-{k}" for k in bad)
            + (" covers" if len(bad) == 1 else " cover")
            + " so much of it that their overlap is high by construction. Read "
            f"{names} and the overlap mass."
        )
    else:
        verdict = (
            f"every k covers more than {limit} of the vocabulary, so top-k overlap is high "
            "by construction; read the overlap mass and the symmetric KL."
        )
    return f"Vocabulary {vocab} tokens. {shares}. At this vocabulary {verdict}"
