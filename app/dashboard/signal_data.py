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
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from copd.common import names as N

GRPO = "grpo"
# (kind, panel title, y axis): the signal-balance panels in reading order.
SIGNAL_PANELS = [
    ("grad_norm", "Gradient norm per term", "‖∇ term‖"),
    ("cos", "Cosine of ∇OPD(t) with ∇GRPO", "cos"),
    # does distillation point where the peer's own RL would (GRPO on t's prompts and rewards)
    ("cos_peer_rl", "Cosine of ∇OPD(t) with ∇GRPO on t's prompts and rewards", "cos"),
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
    n = N.parse(key)
    if n.kind != "branch" or not n.key:
        return None
    b, rest = n.owner, n.key
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


# ---------------------------------------------------------------------- overlap at several k
_OVERLAP_RE = re.compile(r"/overlap_top(\d+)$")


def overlap_k_keys(keys: list[str], kind: str = "pair") -> dict[str, list[str]]:
    """Panel name -> keys: `top-1`, `top-5`, `top-10`, ... (by k) then `mass`, for the names
    of scope `kind` ("pair": branch vs branch, "base": branch vs base)."""
    by_k: dict[int, list[str]] = {}
    mass: list[str] = []
    for k in keys:
        if N.parse(k).kind != kind:
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


# The built-in demo model's folder as the package ships it (copd/builders/demo_base.py):
# every demo base, whatever its size settings, has this character tokenizer.
# (found without importing the builder, which loads torch)
DEMO_MODEL_DIR = Path(find_spec("copd").origin).parent / "builders" / "assets" / "demo-base"  # type: ignore[arg-type,union-attr]


def vocab_size_of(config: dict[str, Any] | None) -> int | None:
    """The vocabulary size of the run's model: `vocab_size` in `<model.path>/config.json`
    (or its `text_config`, for a vision-language model) when model.path is a local
    directory readable here, or the shipped demo base's for `model.path="demo"`; None
    otherwise (a hub id, or another machine's path)."""
    path = ((config or {}).get("model") or {}).get("path")
    if not path:
        return None
    folder = DEMO_MODEL_DIR if path == "demo" else Path(str(path)).expanduser()
    file = folder / "config.json"
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
