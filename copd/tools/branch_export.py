"""One branch of a finished run as a model folder, so any tool that loads a Hugging Face
folder (lm-evaluation-harness, `copd eval`) can score it, not only the merged model.

    folder = export_branch(Path("runs/1-demo"), "add")   # runs/1-demo/branches/add/

The branch's weights come from the run's last checkpoint (the final step's), put into the
world its own config builds; the folder is written once and reused.
"""

from __future__ import annotations

import json
from pathlib import Path

from copd.errors import ConfigError


def export_branch(run_dir: str | Path, name: str) -> Path:
    """`<run_dir>/branches/<name>`: the branch's model and tokenizer (`save_pretrained`),
    from the run's last checkpoint. ConfigError naming the fix for a branch the run does
    not have, a run with no checkpoint, or a LoRA branch (score the merged model)."""
    from copd.spec import RunConfig
    from copd.train import checkpoint
    from copd.train.world import World

    run_dir = Path(run_dir)
    out = run_dir / "branches" / name
    if (out / "config.json").is_file():
        return out
    cfg = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    names = cfg.policy_names()
    if name not in names:
        raise ConfigError(f"--model {name!r}: the run's policies are {list(names)} (or 'merged')")
    if cfg.model.branch_kind != "full":
        raise ConfigError(
            f"--model {name!r}: a LoRA branch has no folder of its own; score 'merged' (its "
            "export is one adapter, copd export)"
        )
    last = checkpoint.latest(run_dir)
    if last is None:
        raise ConfigError(f"--model {name!r}: {run_dir} holds no checkpoint to read it from")
    world = World.build(cfg)
    checkpoint.restore(world, last)
    out.mkdir(parents=True, exist_ok=True)
    world.branch(name).view.module.save_pretrained(out)
    world.tokenizer.save_pretrained(out)
    return out
