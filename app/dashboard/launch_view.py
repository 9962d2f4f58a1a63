"""The Launch page: a preset, a base model, branches and every config field as a form,
errors inline before anything is recorded (`launch_form`); one run, or an ablation set /
grid sweep (presets x grid points x seeds, all or nothing) with the form's shared values.

    form = draw_form()                 # the preset, the model, branches, fields, labels
    draw_single_launch(form)           # Launch: one run, queued
    draw_ablation_set(form)            # Launch ablation set: the preview, then all or nothing
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import streamlit as st

from app.control.sweep_cli import launch_sweep
from app.dashboard.forms import build_config, free_group_name, parse_seeds
from app.dashboard.launch_form import (
    branch_editor,
    config_form,
    gpu_picker,
    labels_inputs,
    model_picker,
    shared_values,
)
from app.dashboard.preview import sweep_preview
from app.dashboard.text import md_escape, md_line
from app.dashboard.widgets import (
    cached_gpus,
    cached_runs,
    db_url,
    get_launcher,
    invalidate,
    page_path,
    task_trust,
)
from copd.spec import ConfigError, presets
from copd.spec.sweep import parse_grid, sweep_configs
from copd.tasks import builtin_task_names


@dataclass
class LaunchForm:
    """What the form gave: the values of every field, the config they build (None when
    they do not), the errors to show, the labels and the GPUs asked for."""

    values: dict
    cfg: object | None
    errors: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    n_gpus: int = 0
    names: list[str] = field(default_factory=list)


def draw_form() -> LaunchForm:
    """The preset picker and the form; the config it builds, validated."""
    names = presets.names()
    if "launch_preset" in st.session_state:  # set by "Launch the demo" buttons elsewhere
        wanted = st.session_state.pop("launch_preset")
        if wanted in names:
            st.session_state["launch:preset"] = wanted
    preset = st.selectbox(
        "Preset",
        names,
        index=names.index("demo") if "demo" in names else 0,
        key="launch:preset",
        help="Start from a named configuration; every field below can be edited.",
    )
    st.caption(presets.describe(preset))
    base = presets.get(preset)
    prefix = f"cfg:{preset}"

    errors: list[str] = []
    st.subheader("Model and branches")
    model_path, model_errors = model_picker(base, prefix)
    errors += model_errors
    branches, branch_errors = branch_editor(base, prefix, builtin_task_names())
    errors += branch_errors
    n_gpus = gpu_picker(cached_gpus(), prefix)

    st.subheader("Configuration")
    values, form_errors = config_form(base, prefix)
    errors += form_errors
    values["model.path"] = model_path
    values["branches"] = branches
    tags, notes, label_errors = labels_inputs("launch")  # for this run and an ablation set
    errors += label_errors

    cfg = None
    if not errors:
        try:
            cfg, refused = task_trust(build_config(base.to_dict(), values))
            errors += [refused] if refused else []
        except ConfigError as e:
            errors.append(str(e))
    for err in errors:
        st.error(md_escape(err))
    if cfg is not None:
        st.caption(
            f"{cfg.method} · {len(cfg.branches)} branches · {cfg.schedule.total_steps()} steps "
            f"({cfg.schedule.cycles} cycles of {cfg.schedule.rl_steps} RL + "
            f"{cfg.schedule.opd_steps} OPD)"
        )

    return LaunchForm(values, cfg, errors, tags, notes, n_gpus, names)


def draw_single_launch(form: LaunchForm) -> None:
    """The Launch button: one run, queued through the launcher's checks."""
    errors, cfg, n_gpus, tags, notes = form.errors, form.cfg, form.n_gpus, form.tags, form.notes
    if st.button("Launch", type="primary", key="launch:go"):
        if errors or cfg is None:
            st.error(
                "Nothing was launched: fix the errors above first (each is shown beside its field)."
            )
        else:
            launcher = get_launcher()
            try:
                run = launcher.submit(cfg, gpus=n_gpus, tags=tags, notes=notes)
                launcher.start_now()
            except (ConfigError, ValueError) as e:  # the last line of defence: submit's checks
                st.error(f"{md_escape(e)}\n\nNothing was launched.")
            else:
                invalidate()
                st.session_state["live_run"] = run.id
                st.success(f"Run #{run.id} {md_line(run.name)} queued.")
                st.page_link(page_path("live"), label="Watch it live", icon=":material/monitoring:")


def draw_ablation_set(form: LaunchForm) -> None:
    """Several presets as one group (and a grid), previewed as they are typed, launched
    all or nothing; a group name already taken is said before launching."""
    errors, values, n_gpus, names = form.errors, form.values, form.n_gpus, form.names
    tags, notes = form.tags, form.notes
    st.subheader("Launch an ablation set")
    st.caption(
        "Several presets as one group, every arm with the same seeds and the budgets, model, "
        "evaluation and diagnostics of the form above. Compare them on the Compare page."
    )
    default_arms = [n for n in ("demo", "mixed") if n in names] or names[:1]
    arms = st.multiselect("Presets (arms)", names, default=default_arms, key="ablation:presets")
    seeds_text = st.text_input(
        "Seeds", value="0, 1, 2", key="ablation:seeds", help="0, 1, 2 or 0-2"
    )
    group = st.text_input("Group name", value="ablation-1", key="ablation:group")
    grid_text = st.text_area(
        "Grid (optional): one `field=v1,v2,...` per line; runs = presets x grid points x seeds",
        value="",
        key="ablation:grid",
        placeholder="opd.beta=0.5,1,2,4\nschedule.rl_steps=3,6",
    )
    set_errors: list[str] = list(errors)
    runs = []
    try:  # checked on every edit: the preview below says what Launch would queue
        seeds = parse_seeds(seeds_text)
        shared = {k: v for k, v in shared_values(values).items() if k != "branches"}
        grid = parse_grid([ln for ln in grid_text.splitlines() if ln.strip()])
        runs = sweep_configs(arms, seeds, group, grid=grid, values=shared)
        trusted = [(r, *task_trust(r.cfg)) for r in runs]
        set_errors += [refused for _, _, refused in trusted if refused][:1]
        runs = [dataclasses.replace(r, cfg=cfg_) for r, cfg_, _ in trusted]
    except ConfigError as e:
        set_errors.append(str(e))
    join_errors: list[str] = []  # shown on a click only: the warning says it as it is typed
    taken = [r for r in cached_runs(db_url()) if group.strip() and r.group == group.strip()]
    if taken:  # a second set in one group reads as one set on Compare: only on purpose
        free = free_group_name(group.strip(), {r.group for r in cached_runs(db_url()) if r.group})
        st.warning(
            md_escape(
                f"Group {group.strip()!r} already holds {len(taken)} runs; an ablation set launched "
                f"into it is compared with them as one set (its swept fields then include theirs). "
                f"Use a new name such as {free!r}, or add to the group on purpose below."
            )
        )
        if not st.checkbox(f"Add these runs to group {group.strip()!r}", key="ablation:join"):
            join_errors.append(
                f"group {group.strip()!r} already exists: name a new group (e.g. {free!r}) or "
                "tick 'Add these runs to group'"
            )
    if runs and not set_errors:
        st.info(md_escape(sweep_preview(runs, grid, seeds, past=cached_runs(db_url()))))
    if st.button("Launch ablation set", key="ablation:go"):
        if set_errors or join_errors:
            for err in dict.fromkeys(set_errors + join_errors):
                st.error(md_escape(err))
            st.error("Nothing was launched.")
        else:
            launcher = get_launcher()
            queued = launch_sweep(
                launcher.store, launcher, runs, gpus=n_gpus, tags=tags, notes=notes
            )
            ids = [r.id for r in queued]
            launcher.start_now()
            invalidate()
            st.success(
                f"Group {md_line(repr(group))}: {len(ids)} runs queued (#{ids[0]}…#{ids[-1]})."
            )
            st.page_link(page_path("compare"), label="Compare them", icon=":material/balance:")
    elif set_errors and set_errors != errors:  # the set's own problems, as they are typed
        for err in dict.fromkeys(e for e in set_errors if e not in errors):
            st.error(md_escape(err))
