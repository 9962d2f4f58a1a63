"""The launch form's schema, read from `copd.spec`'s dataclasses (no Streamlit here).

Each config section (model, sampling, grpo, opd, schedule, topology, merge, eval,
diagnostics) becomes a group of `FieldSpec`s: its dotted path, a widget kind chosen from
the field's type, the default, the choices of a `Literal`, and help text taken from the
`# comment` after the field in the source (falling back to the class docstring).

    for section in form_sections():
        for f in section.fields: ...            # render f.kind as a widget
    cfg = build_config(base_dict, {"schedule.cycles": 2, "model.lora.r": 4})  # validated
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, Literal, get_args, get_origin, get_type_hints

from copd.spec import ConfigError, RunConfig, parse_seeds  # noqa: F401  (re-exported for pages)

SECTIONS = (
    "model",
    "sampling",
    "grpo",
    "opd",
    "schedule",
    "topology",
    "merge",
    "eval",
    "diagnostics",
    "alerts",
)
# Top-level fields the form shows in its own "run" group (branches have their own widget).
RUN_FIELDS = (
    "name", "method", "seed", "group", "threads", "static_direction", "checkpoint_every",
    "report_to",
)  # fmt: skip


@dataclass(frozen=True)
class FieldSpec:
    """One form field. kind: int | float | bool | choice | str | optional_str | list."""

    path: str
    kind: str
    default: Any
    choices: tuple[Any, ...] = ()
    help: str = ""
    item_type: type | None = None  # element type of a `list` field (tuples in the config)


@dataclass(frozen=True)
class Section:
    """A group of fields: the config section name, its docstring and its fields."""

    name: str
    doc: str
    fields: tuple[FieldSpec, ...]


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """`field -> help` from the class source: the inline `# comment` after the field, plus
    any full-line comments right above it. Empty when the source is unavailable."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    block: list[str] = []  # a comment block applies to the fields below it, up to a blank line
    for line in src.splitlines():
        stripped = line.strip()
        if not stripped:
            block = []
            continue
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        m = re.match(r"^\s{4}(\w+)\s*:[^#]*?(?:#\s*(.*))?$", line)
        if m and not stripped.startswith(("def ", "return", "@")):
            text = " ".join(p for p in [*block, m.group(2) or ""] if p)
            if text:
                out[m.group(1)] = text
    return out


def class_doc(cls: type) -> str:
    """The class docstring, dedented, without the generated dataclass signature."""
    doc = inspect.getdoc(cls) or ""
    return "" if doc.startswith(cls.__name__ + "(") else doc


def _spec(path: str, tp: Any, default: Any, help_text: str) -> FieldSpec:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return FieldSpec(path, "choice", default, tuple(args), help_text)
    if tp is bool:
        return FieldSpec(path, "bool", default, (), help_text)
    if tp is int:
        return FieldSpec(path, "int", default, (), help_text)
    if tp is float:
        return FieldSpec(path, "float", default, (), help_text)
    if tp is str:
        return FieldSpec(path, "str", default, (), help_text)
    if origin is tuple:
        return FieldSpec(path, "list", default, (), help_text, args[0] if args else str)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and (
        type(None) in args
    ):
        return FieldSpec(path, "optional_str", default, (), help_text)
    return FieldSpec(path, "str", default, (), help_text)


def _default(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def _fields_of(cls: type, prefix: str, instance: Any) -> list[FieldSpec]:
    hints = get_type_hints(cls)
    docs = field_comments(cls)
    out: list[FieldSpec] = []
    for f in fields(cls):
        value = getattr(instance, f.name) if instance is not None else _default(f)
        path = f"{prefix}{f.name}"
        if is_dataclass(hints[f.name]):
            out.extend(_fields_of(hints[f.name], path + ".", value))
            continue
        out.append(_spec(path, hints[f.name], value, docs.get(f.name, "")))
    return out


def run_fields(cfg: RunConfig | None = None) -> Section:
    """The top-level run fields (name, method, seed, group, ...)."""
    cfg = cfg or RunConfig()
    hints = get_type_hints(RunConfig)
    docs = field_comments(RunConfig)
    specs = tuple(
        _spec(n, hints[n], getattr(cfg, n), docs.get(n, "")) for n in RUN_FIELDS if n in hints
    )
    return Section("run", class_doc(RunConfig), specs)


def form_sections(cfg: RunConfig | None = None) -> list[Section]:
    """Every config section with its fields, defaults taken from `cfg` (e.g. a preset)."""
    cfg = cfg or RunConfig()
    hints = get_type_hints(RunConfig)
    out = [run_fields(cfg)]
    for name in SECTIONS:
        cls = hints[name]
        out.append(
            Section(name, class_doc(cls), tuple(_fields_of(cls, name + ".", getattr(cfg, name))))
        )
    return out


def parse_list(text: str, item_type: type | None, path: str) -> list[Any]:
    """Comma-separated text -> list of `item_type` ("1, 5" -> [1, 5]); errors name the field."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    conv = item_type if item_type in (int, float) else str
    try:
        return [conv(t) for t in items]
    except ValueError:
        raise ConfigError(
            f"{path}: {text!r} is not a comma-separated list of {conv.__name__}s"
        ) from None


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b.c` inside nested dicts (creating nothing: the path must exist)."""
    node = data
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value


def build_config(base: dict[str, Any], values: dict[str, Any]) -> RunConfig:
    """Apply form `values` (dotted path -> value) to `base` (a config dict) and validate.

    Raises ConfigError naming the field when a value is invalid; nothing else happens, so
    an invalid form records nothing.
    """
    import copy

    data = copy.deepcopy(base)
    for path, value in values.items():
        try:
            set_path(data, path, value)
        except (KeyError, TypeError):
            raise ConfigError(f"{path}: unknown field") from None
    return RunConfig.from_dict(data).validate()


def parse_number(text: str, kind: str, path: str) -> int | float:
    """A number field's text -> int or float; errors name the field and the fix."""
    raw = str(text).strip()
    try:
        return int(raw) if kind == "int" else float(raw)
    except ValueError:
        what = "a whole number such as 4" if kind == "int" else "a number such as 1, 0.5 or 1e-3"
        raise ConfigError(f"{path}: {raw!r} is not a number; type {what}") from None


def field_problem(base: dict[str, Any], path: str, value: Any) -> str | None:
    """What is wrong with one field's edited value on its own (the preset's other values
    kept), or None: the config's own check, and for the run's name and group the limits of
    a run folder and the store. A rule across fields that the value breaks counts too."""
    from copd.tools.preflight import check_run_group, check_run_name

    try:
        if path == "name":
            check_run_name(str(value))
        elif path == "group":
            check_run_group(value)
        build_config(base, {path: value})
    except ConfigError as e:
        return str(e)
    return None


def branch_rows(cfg: RunConfig) -> list[dict[str, str]]:
    """Branches as editable rows (name, task, device)."""
    return [{"name": b.name, "task": b.task, "device": b.device} for b in cfg.branches]


def check_model_dir(path: str) -> str | None:
    """None when `path` is "demo" or a directory with a config.json; else the problem."""
    from pathlib import Path

    if path == "demo":
        return None
    p = Path(path).expanduser()
    if not p.is_dir():
        return f"model.path: {path!r} is not a directory; give a local model folder or 'demo'"
    if not (p / "config.json").is_file():
        return f"model.path: {path!r} has no config.json; point at a Hugging Face model folder"
    return None


def free_group_name(group: str, taken: set[str]) -> str:
    """`group` with its trailing number raised until no run holds it: ablation-1 ->
    ablation-2 (or `group-2` when it ends in no number)."""
    stem, _, tail = group.rpartition("-")
    stem, n = (stem, int(tail)) if stem and tail.isdigit() else (group, 1)
    while f"{stem}-{n}" in taken or f"{stem}-{n}" == group:
        n += 1
    return f"{stem}-{n}"
