"""JSON-shaped dicts to and from the config dataclasses, with type coercion and errors
that name the field (`grpo.group_size: expected an integer, got 'x'`); a JSON or YAML
config file read into such a dict (`read_config_file`)."""

from __future__ import annotations

import difflib
import functools
import json
import math
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from copd.errors import ConfigError

# A class's resolved annotations never change: resolving the string annotations (they are
# compiled each time) was two thirds of building a config, which the Launch page does on
# every edit (each changed field, the sweep preview's runs).
type_hints = functools.cache(get_type_hints)


def to_jsonable(obj: Any) -> Any:
    if is_dataclass(obj):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    return obj


def unknown_field(name: str, known: Any, section: str = "") -> str:
    """The words for a field that does not exist, the same for a config file and `--set`:
    "unknown field 'lrr'; did you mean 'lr'? known fields of grpo are [...]"."""
    known = sorted(str(k) for k in known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" did you mean {close[0]!r}?" if close else ""
    where = f" of {section}" if section else ""
    return f"unknown field {name!r};{hint} known fields{where} are {known}"


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """An instance of dataclass `cls` from `data`; unknown fields are refused."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected an object, got {type(data).__name__}")
    hints = type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(
            f"{prefix + '.' if prefix else ''}{name}: {unknown_field(name, known, prefix)}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = coerce(hints[name], value, f"{prefix}.{name}" if prefix else name)
    return cls(**kwargs)


def coerce(tp: Any, value: Any, name: str) -> Any:
    """`value` as type `tp` (dataclass, tuple, Literal, dict, Optional, bool/int/float/str)."""
    origin = get_origin(tp)
    args = get_args(tp)
    if is_dataclass(tp):
        return from_dict(tp, value, name)
    if origin is tuple:
        inner = args[0] if args else Any
        if isinstance(value, str) and get_origin(inner) is Literal:
            # A list of choices may be written as text: "tensorboard" or "wandb,mlflow".
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return tuple(coerce(inner, v, f"{name}[{i}]") for i, v in enumerate(value))
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f" did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{name}: {value!r} is not allowed;{hint} use one of {list(args)}")
        return value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected an object, got {value!r}")
        return dict(value)
    if args and type(None) in args:  # Optional[X]
        if value is None:
            return None
        non_none = [a for a in args if a is not type(None)]
        return coerce(non_none[0], value, name)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str, float)):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            f = float(value)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
        if not math.isfinite(f) or f != int(f):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
        if not math.isfinite(f):
            raise ConfigError(f"{name}: expected a finite number, got {value!r}")
        return f
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


def nonfinite_fields(obj: Any, prefix: str = "") -> list[str]:
    """The dotted names of the float fields of a config dataclass holding inf or NaN (a
    config built in code never passes through `coerce`)."""
    out: list[str] = []
    for f in fields(obj):
        value, name = getattr(obj, f.name), f"{prefix}{f.name}"
        if is_dataclass(value):
            out += nonfinite_fields(value, name + ".")
        elif isinstance(value, (tuple, list)):
            for i, v in enumerate(value):
                if is_dataclass(v):
                    out += nonfinite_fields(v, f"{name}[{i}].")
                elif isinstance(v, float) and not math.isfinite(v):
                    out.append(f"{name}[{i}]")
        elif isinstance(value, float) and not math.isfinite(value):
            out.append(name)
    return out


CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def read_config_file(path: Path) -> dict:
    """The mapping in a JSON or YAML config file; ConfigError with the file, line and column
    when it does not parse or is not a mapping."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"config: cannot read {path}: {e.strerror or e}") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            raise ConfigError(f"config: {path}: {where}not valid YAML ({e})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(
                f"config: {path}: line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})"
            ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config: {path}: expected a mapping of fields, got {type(data).__name__}"
        )
    return data
