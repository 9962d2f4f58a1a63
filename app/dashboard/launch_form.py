"""Widgets of the Launch page: the config form generated from `copd.spec` (Streamlit).

    values, errors = config_form(base_cfg, key_prefix="cfg:demo")
    branches, errors = branch_editor(base_cfg, key_prefix=...)
    tags, notes, errors = labels_inputs("launch")       # the run's tags and notes

Every widget key is `<prefix>:<dotted.path>`, so switching presets re-initialises the form
and tests can address a field by its config path.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from app.dashboard.forms import (
    FieldSpec,
    Section,
    check_model_dir,
    field_problem,
    form_sections,
    parse_list,
    parse_number,
)
from app.dashboard.text import md_escape
from copd.common.tags import TagError, check_notes, split_tags
from copd.spec import ConfigError, RunConfig

CUSTOM_TASK = "custom (module:factory)"
# Fields with their own widget elsewhere on the page.
SKIP = {"model.path", "model.gguf_file"}
# Sections an ablation set shares across its arms (equal budgets and models).
SHARED_SECTIONS = ("model", "sampling", "schedule", "eval", "diagnostics")
SHARED_FIELDS = (
    "grpo.group_size",
    "grpo.prompts_per_step",
    "opd.cross_prompts_per_step",
    "opd.cross_group_size",
)


def field_widget(f: FieldSpec, key: str) -> Any:
    """One widget for a field, chosen by its type; returns the value in config form."""
    label = f.path.split(".", 1)[-1] if "." in f.path else f.path
    help_text = f.help or None
    if f.kind == "bool":
        return st.checkbox(label, value=bool(f.default), key=key, help=help_text)
    if f.kind in ("int", "float"):  # text, so a typo is shown, not silently reverted
        text = str(int(f.default)) if f.kind == "int" else repr(float(f.default))  # exact
        return ("__number__", st.text_input(label, value=text, key=key, help=help_text))
    if f.kind == "choice":
        opts = list(f.choices)
        idx = opts.index(f.default) if f.default in opts else 0
        return st.selectbox(label, opts, index=idx, key=key, help=help_text)
    if f.kind == "list":
        text = ", ".join(str(x) for x in (f.default or ()))
        raw = st.text_input(
            label, value=text, key=key, help=(help_text or "") + " (comma-separated)"
        )
        return ("__list__", raw)
    if f.kind == "optional_str":
        raw = st.text_input(
            label, value=f.default or "", key=key, help=(help_text or "") + " (empty = none)"
        )
        return raw.strip() or None
    return st.text_input(label, value=str(f.default or ""), key=key, help=help_text)


def parsed(f: FieldSpec, v: Any) -> Any:
    """A widget's value in config form: number and list text parsed (ConfigError if not)."""
    if isinstance(v, tuple) and v and v[0] == "__list__":
        return parse_list(v[1], f.item_type, f.path)
    if isinstance(v, tuple) and v and v[0] == "__number__":
        return parse_number(v[1], f.kind, f.path)
    return v


def _section_widgets(
    section: Section, prefix: str, errors: list[str], base: dict[str, Any]
) -> dict[str, Any]:
    """The section's widgets in three columns; each field edited away from the preset is
    checked on its own as it changes, its error shown right below it (and kept in
    `errors` for the Launch button)."""
    values: dict[str, Any] = {}
    if section.doc:
        st.caption(section.doc)
    cols = st.columns(3)
    shown = [f for f in section.fields if f.path not in SKIP]
    for i, f in enumerate(shown):
        with cols[i % 3]:
            try:
                v = parsed(f, field_widget(f, f"{prefix}:{f.path}"))
                same = v == f.default or (isinstance(f.default, tuple) and list(f.default) == v)
                problem = None if same else field_problem(base, f.path, v)
            except ConfigError as e:
                v, problem = None, str(e)
            if problem:
                st.error(md_escape(problem))
                errors.append(f"{problem} (tab {section.name})")
                continue
        values[f.path] = v
    return values


def config_form(base: RunConfig, prefix: str) -> tuple[dict[str, Any], list[str]]:
    """Tabs of widgets, one per config section. Returns (dotted path -> value, errors)."""
    sections = form_sections(base)
    errors: list[str] = []
    values: dict[str, Any] = {}
    base_dict = base.to_dict()
    tabs = st.tabs([s.name for s in sections])
    for tab, section in zip(tabs, sections, strict=True):
        with tab:
            values.update(_section_widgets(section, prefix, errors, base_dict))
    return values, errors


def model_picker(base: RunConfig, prefix: str) -> tuple[str, list[str]]:
    """Built-in demo model or a local model directory (checked for config.json)."""
    kinds = ["Built-in demo model", "Local model directory"]
    kind = st.radio(
        "Base model",
        kinds,
        index=0 if base.model.path == "demo" else 1,
        horizontal=True,
        key=f"{prefix}:model_kind",
    )
    if kind == kinds[0]:
        return "demo", []
    path = st.text_input(
        "Model directory",
        value="" if base.model.path == "demo" else base.model.path,
        placeholder="/path/to/hf-model (a folder with config.json)",
        key=f"{prefix}:model_dir",
    )
    problem = check_model_dir(path.strip()) if path.strip() else "model.path: enter a folder"
    return path.strip(), [problem] if problem else []


def name_follows_domain(name_key: str, task_key: str, named_for_key: str) -> None:
    """A branch named after its domain is renamed with it (a `rev` branch switched to `fwd`
    is `fwd`, or every chart would label it "rev"); a name the user typed is kept."""
    old, new = st.session_state.get(named_for_key), st.session_state[task_key]
    if new != CUSTOM_TASK and st.session_state.get(name_key, "").strip() in ("", old):
        st.session_state[name_key] = new
        st.session_state[named_for_key] = new


def topology_follows_branches(n_key: str, topo_key: str, preset_kind: str) -> None:
    """On a change of the branch count: 'pair' takes exactly 2 branches, so 3 or more
    switch the topology to 'hub' (and back to 'pair' at 2 where this switched it), said in
    a line under the count. A topology the user picked is left alone otherwise."""
    n = int(st.session_state[n_key])
    kind = st.session_state.get(topo_key, preset_kind)
    note = f"{topo_key}:switched"
    if n > 2 and kind == "pair":
        st.session_state[topo_key] = "hub"
        st.session_state[note] = (
            f"{n} branches: topology set to 'hub' ('pair' takes exactly 2): the hub branch "
            "(topology.hub, else the first) teaches and learns from each other. For every "
            "pair teaching each other pick 'full' under Topology."
        )
    elif n == 2 and kind == "hub" and st.session_state.get(note):
        st.session_state[topo_key] = "pair"
        st.session_state.pop(note)


def branch_editor(base: RunConfig, prefix: str, tasks: list[str]) -> tuple[list[dict], list[str]]:
    """Per-branch name, domain (built-in task or module:factory) and device."""
    topo_key = f"{prefix}:topology.kind"
    n = int(
        st.number_input(
            "Branches",
            min_value=1,
            max_value=8,
            value=len(base.branches),
            key=f"{prefix}:n_branches",
            on_change=topology_follows_branches,
            args=(f"{prefix}:n_branches", topo_key, base.topology.kind),
        )
    )
    switched = st.session_state.get(f"{topo_key}:switched")
    if switched and base.method == "copd":
        st.info(switched, icon=":material/hub:")
    rows: list[dict] = []
    errors: list[str] = []
    options = [*tasks, CUSTOM_TASK]
    for i in range(n):
        b = base.branches[i] if i < len(base.branches) else None
        c1, c2, c3, c4 = st.columns([2, 2, 3, 2])
        name = c1.text_input(
            f"branch {i + 1} name", value=b.name if b else f"b{i}", key=f"{prefix}:br{i}:name"
        )
        default_task = b.task if b else (tasks[i % len(tasks)] if tasks else "")
        idx = options.index(default_task) if default_task in options else len(options) - 1
        keys = (f"{prefix}:br{i}:name", f"{prefix}:br{i}:task", f"{prefix}:br{i}:named_for")
        st.session_state.setdefault(keys[2], default_task)
        choice = c2.selectbox(
            f"branch {i + 1} domain", options, index=idx, key=keys[1],
            on_change=name_follows_domain, args=keys,
        )  # fmt: skip
        custom = c3.text_input(
            "module:factory",
            value="" if default_task in tasks else default_task,
            disabled=choice != CUSTOM_TASK,
            key=f"{prefix}:br{i}:custom",
            help="a Python factory returning a copd Task, e.g. mypkg.tasks:make_task",
        )
        device = c4.text_input(
            "device", value=b.device if b else "auto", key=f"{prefix}:br{i}:device"
        )
        task = custom.strip() if choice == CUSTOM_TASK else choice
        if choice == CUSTOM_TASK and ":" not in task:
            errors.append(f"branches[{name}].task: write module:factory, e.g. mypkg.tasks:make")
        rows.append({"name": name.strip(), "task": task, "device": device.strip() or "auto"})
    return rows, errors


def labels_inputs(key: str) -> tuple[tuple[str, ...], str, list[str]]:
    """Tags (comma- or space-separated) and notes for the runs a Launch records. Returns
    (tags, notes, errors); an invalid tag is an error that launches nothing."""
    c1, c2 = st.columns([2, 3])
    raw = c1.text_input(
        "Tags", key=f"{key}:tags", placeholder="ablation, beta-sweep",
        help="comma- or space-separated; letters, digits and _ - . : / = + @. "
        'Search them on the Runs page: "ablation" in tags',
    )  # fmt: skip
    notes = c2.text_area("Notes", key=f"{key}:notes", height=68, help="free text on the run")
    try:
        return split_tags(raw), check_notes(notes), []
    except TagError as e:
        return (), "", [str(e)]


def gpu_picker(gpus: list[Any], prefix: str) -> int:
    """How many GPUs the run needs (the launcher assigns free ones); 0 = CPU."""
    if not gpus:
        st.caption("Compute: **CPU** (no CUDA GPU found on this machine)")
        return 0
    st.dataframe(
        [
            {
                "GPU": g.index,
                "name": g.name,
                "free GiB": round(g.free_mb / 1024, 1),
                "total GiB": round(g.total_mb / 1024, 1),
                "util %": g.util_percent,
            }
            for g in gpus
        ],
        hide_index=True,
    )
    return int(
        st.number_input(
            "GPUs for this run (0 = CPU)",
            min_value=0,
            max_value=len(gpus),
            value=min(1, len(gpus)),
            key=f"{prefix}:gpus",
        )
    )


def shared_values(values: dict[str, Any]) -> dict[str, Any]:
    """The part of the form an ablation set applies to every arm (budgets, model, eval)."""
    return {
        k: v
        for k, v in values.items()
        if k.split(".", 1)[0] in SHARED_SECTIONS or k in SHARED_FIELDS
    }
