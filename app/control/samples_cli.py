"""`copd samples RUN`: a run's recorded completions in a terminal, token by token.

    copd samples 12                       # the latest step's probe samples, most divergent first
    copd samples 12 --step 40 --branch add --peer rev
    copd samples 12 --kind cross          # the OPD batches: the teacher's log-prob per token
    copd samples 12 --top 3 --tokens      # the 3 most divergent, each with its token table
    copd samples runs/copd-demo           # a run folder without a store: its metrics.jsonl

Every sample prints a header (step, branch, domain and prompt, reward, disagreement), the
prompt and the completion (control characters shown as escapes, nothing interpreted), and
with `--tokens` one line per token: the token, log p under the sampler, under the peer,
their log-ratio and whether the token is in the peer's top-k.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage import Sample


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("samples", help="print a run's recorded completions, token by token")
    p.add_argument(
        "run", metavar="RUN", help="a run id in the store, or a run folder (metrics.jsonl)"
    )
    p.add_argument("--step", type=int, default=None, help="a recorded step (default: the latest)")
    p.add_argument("--branch", default=None, help="only this branch's samples")
    p.add_argument("--kind", choices=("probe", "cross"), default="probe",
                   help="the probe set (default) or the OPD batches")  # fmt: skip
    p.add_argument(
        "--peer", default=None, help="the peer whose log-ratios to show (default: first)"
    )
    p.add_argument("--top", type=int, default=8, help="at most this many samples (default 8)")
    p.add_argument("--tokens", action="store_true", help="a table of every token")
    p.add_argument("--db", default=None, help="run store URL (default: $COPD_DB_URL or ~/.copd)")
    p.set_defaults(func=cmd_samples)


def _shown(text: str) -> str:
    """Text with control characters escaped: a completion cannot move the cursor or recolour
    the terminal."""
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def _num(x: float | None) -> str:
    return "   n/a" if x is None or not math.isfinite(x) else f"{x:+6.2f}"


def default_peer(s: Sample) -> str | None:
    """The first branch peer, else the base, else None."""
    return s.peer_names[0] if s.peers else None


def format_sample(s: Sample, peer: str | None = None, tokens: bool = False) -> str:
    peer = peer if peer in s.peers else default_peer(s)
    gap = "n/a" if not math.isfinite(s.disagreement) else f"{s.disagreement:.3f}"
    head = (
        f"step {s.step} · {s.kind} · {_shown(s.branch)} on {_shown(s.domain)} #{s.prompt_index}"
        f" · reward {s.reward:g} ({'correct' if s.correct else 'wrong'}) · disagreement {gap}"
    )
    lines = [head, f"  prompt:     {_shown(s.prompt)!s}", f"  completion: {_shown(s.completion)}"]
    if tokens:
        theirs = (s.peers.get(peer) or {}).get("logp") or [] if peer else []
        topk = (s.peers.get(peer) or {}).get("in_topk") or [] if peer else []
        who = _shown(peer) if peer else "-"
        lines.append(f"  {'token':<14} {'log p self':>10} {'log p ' + who:>14} {'ratio':>7} top-k")
        for i, tok in enumerate(s.tokens):
            own = s.logp[i] if i < len(s.logp) else None
            other = theirs[i] if i < len(theirs) else None
            ratio = None if own is None or other is None else other - own
            inside = topk[i] if i < len(topk) else None
            mark = "" if inside is None else ("yes" if inside else "NO")
            lines.append(
                f"  {repr(tok)[1:-1]:<14} {_num(own):>10} {_num(other):>14} {_num(ratio):>7} {mark}"
            )
    return "\n".join(lines)


def folder_samples(folder: Path) -> list[Sample]:
    """The samples a run folder's metrics.jsonl holds ("sample" lines), in file order."""
    from copd.spec import ConfigError
    from storage import Sample

    path = folder / "metrics.jsonl"
    if not path.exists():
        raise ConfigError(f"{folder} holds no metrics.jsonl: pass a run folder or a run id")
    fields = set(Sample.__dataclass_fields__)
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by a kill
            continue
        if rec.get("type") != "sample":
            continue
        rec["wall_time"] = rec.pop("time", 0.0)
        gap = rec.get("disagreement")
        rec["disagreement"] = float(gap) if isinstance(gap, (int, float, str)) else math.nan
        out.append(Sample(**{k: v for k, v in rec.items() if k in fields}))
    return out


class _Folder:
    """A run folder read like the store: (step, kind) pairs and one step's samples."""

    def __init__(self, folder: Path):
        self.name, self.all = folder.name, folder_samples(folder)

    def sample_steps(self) -> list[tuple[int, str]]:
        return sorted({(s.step, s.kind) for s in self.all})

    def samples(self, step: int, kind: str, branch: str | None) -> list[Sample]:
        got = [s for s in self.all if s.step == step and s.kind == kind]
        got = [s for s in got if branch is None or s.branch == branch]
        return sorted(got, key=lambda s: -s.disagreement if math.isfinite(s.disagreement) else 0)


class _Stored:
    """A stored run: the same two reads from the store."""

    def __init__(self, store, run_id: int):
        self.store, self.run = store, store.get_run(run_id)
        self.name = f"run {self.run.id} ({_shown(self.run.name)})"

    def sample_steps(self) -> list[tuple[int, str]]:
        return self.store.sample_steps(self.run.id)

    def samples(self, step: int, kind: str, branch: str | None) -> list[Sample]:
        return self.store.samples(self.run.id, step=step, kind=kind, branch=branch)


def cmd_samples(args: argparse.Namespace) -> int:
    from copd.spec import ConfigError

    if args.run.isdigit():
        from storage import RunStore

        src = _Stored(RunStore.from_url(args.db), int(args.run))
    elif Path(args.run).is_dir():
        src = _Folder(Path(args.run))
    else:
        raise ConfigError(f"RUN {args.run!r} is neither a run id nor a folder: pass one of them")
    steps = [s for s, k in src.sample_steps() if k == args.kind]
    if not steps:
        print(
            f"{src.name} recorded no {args.kind} samples (diagnostics.samples_every "
            "sets how often a run records them; 0 turns them off)"
        )
        return 0
    step = steps[-1] if args.step is None else args.step
    if step not in steps:
        near = min(steps, key=lambda s: abs(s - step))
        raise ConfigError(
            f"{src.name} recorded no {args.kind} samples at step {step}; recorded steps: "
            f"{steps[0]}..{steps[-1]} ({len(steps)}), nearest {near}: pass --step {near}"
        )
    got = src.samples(step, args.kind, args.branch)[: args.top]
    if not got:
        raise ConfigError(
            f"{src.name} has no samples of branch {args.branch!r} at step {step}; "
            "drop --branch or name one of the run's branches"
        )
    print(f"{src.name}, step {step}: {len(got)} samples, most divergent first\n")
    print("\n\n".join(format_sample(s, args.peer, args.tokens) for s in got))
    return 0
