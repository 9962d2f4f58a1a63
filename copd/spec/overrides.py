"""Changing and comparing configs: `--set` overrides, diffs, nested replace, seed lists."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import fields, replace
from typing import Any

from copd.errors import ConfigError
from copd.spec.run import RunConfig
from copd.spec.serialize import unknown_field


def apply_overrides(cfg: RunConfig, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """Apply `dotted.path=value` overrides (values parsed as JSON when they parse, else
    taken as strings): `grpo.group_size=8`, `branches=[{"name":"a","task":"add"}]`."""
    data = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: write KEY=VALUE, e.g. grpo.group_size=8")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for i, p in enumerate(parts[:-1]):
            if not isinstance(node, dict) or p not in node:
                raise ConfigError(f"--set {key}: {_unknown(node, p, parts[:i])}")
            node = node[p]
        if not isinstance(node, dict) or (
            parts[-1] not in node and node is not data.get("task_options")
        ):
            raise ConfigError(f"--set {key}: {_unknown(node, parts[-1], parts[:-1])}")
        node[parts[-1]] = value
    return RunConfig.from_dict(data)


def _unknown(node: Any, name: str, section: list[str]) -> str:
    """What `--set` says about a missing field: the words a config file gets (serialize)."""
    where = ".".join(section)
    if not isinstance(node, dict):  # e.g. a list (branches): it has no fields to set
        return f"unknown field {name!r}; {where} is not a section with fields"
    return unknown_field(name, node, where)


def config_diff(
    a: dict[str, Any], b: dict[str, Any], prefix: str = ""
) -> dict[str, tuple[Any, Any]]:
    """Flattened `dotted.key -> (a_value, b_value)` for every leaf that differs."""
    out: dict[str, tuple[Any, Any]] = {}
    for k in sorted(set(a) | set(b)):
        key = f"{prefix}{k}"
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.update(config_diff(va, vb, key + "."))
        elif va != vb:
            out[key] = (va, vb)
    return out


def field_docs(cls: type = RunConfig) -> dict[str, str]:
    """Help text per field of a config section (from the class docstring; for forms)."""
    return {f.name: (cls.__doc__ or "").strip().splitlines()[0] for f in fields(cls)}


def replace_in(cfg: RunConfig, **sections: Any) -> RunConfig:
    """`dataclasses.replace` that accepts `section__field=value` for nested sections."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in sections.items():
        if "__" in key:
            sec, fld = key.split("__", 1)
            nested.setdefault(sec, {})[fld] = value
        else:
            top[key] = value
    for sec, vals in nested.items():
        top[sec] = replace(getattr(cfg, sec), **vals)
    return dataclasses.replace(cfg, **top)


def parse_seeds(text: str) -> list[int]:
    """Seeds from "0, 1, 2" or an inclusive range "0-2" -> [0, 1, 2] (CLI and forms)."""
    text = text.strip()
    m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", text)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if hi < lo:
            raise ConfigError(f"seeds: range {text!r} is empty; write low-high, e.g. 0-2")
        return list(range(lo, hi + 1))
    try:
        seeds = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise ConfigError(f"seeds: {text!r} is not a list; write 0,1,2 or 0-2") from None
    if not seeds or any(s < 0 for s in seeds):
        raise ConfigError("seeds: give non-negative integers, e.g. 0, 1, 2")
    return seeds
