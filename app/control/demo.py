"""The first run: the demo CoPD run and the independent-experts baseline, one group, one
seed, queued in one click (Home's "Launch the demo", and the empty states of every page).

    runs = launch_demo(store, launcher)   # [copd run, expert run], group "demo-1", seed 0

The Live view overlays the group's runs: overlap and symmetric KL between the branches,
CoPD against independent experts (the paper's Fig. 4a/b), drawing as they train. The
configs come from `copd.spec.sweep.sweep_configs` and are queued all or nothing by
`app.control.sweep_cli.launch_sweep`, like any ablation set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.control.sweep_cli import launch_sweep
from copd.spec.sweep import sweep_configs

if TYPE_CHECKING:
    from app.control.launcher import Launcher
    from storage import Run, RunStore

# What the button does, in the words of Home and of the README (a test keeps them equal).
DEMO_DESCRIPTION = (
    "**Launch the demo** starts the demo CoPD run (two branches, `add` and `rev`, on the "
    "built-in tiny model) and, with the same seed and in the same group, the "
    "independent-experts baseline, and opens the **Live run view**, which overlays them: "
    "overlap and symmetric KL between the branches, CoPD against independent experts (the "
    "paper's Fig. 4a/b), drawing live."
)
DEMO_PRESETS = ("demo", "expert")
DEMO_GROUP = "demo"


def demo_group_name(groups: list[str]) -> str:
    """`demo-1`, or the next free `demo-N` when earlier demos are in the store."""
    n = 1
    while f"{DEMO_GROUP}-{n}" in groups:
        n += 1
    return f"{DEMO_GROUP}-{n}"


def launch_demo(store: RunStore, launcher: Launcher, seed: int = 0, gpus: int = 0) -> list[Run]:
    """Queue the demo group (CoPD, then the independent experts; same seed) and start it
    now (`Launcher.start_now`). Returns the queued runs, CoPD first."""
    group = demo_group_name(store.list_groups())
    # One thread each, so that on a small CPU machine both runs fit its cores at once and
    # the overlay draws side by side (the launcher counts CPU runs in threads).
    threads = [] if gpus else ["threads=1"]
    runs = launch_sweep(
        store, launcher, sweep_configs(list(DEMO_PRESETS), [seed], group, threads), gpus
    )
    launcher.start_now()
    return runs
