"""A small, safe query language over runs: parsed here by hand, evaluated in Python, no eval.

    opd.beta >= 1 and method == "copd" and "ablation" in tags
    status in ["finished", "crashed"] or not (group == "smoke")
    "beta" in name and schedule.cycles > 4 and eval.validation

    matches = search(records, text)       # the indices of the records the query keeps
    query = compile_query(text, records)  # parse + check once, then query(record) -> bool

A record is one run as a mapping of dotted names: the run's fields (`id`, `name`, `status`,
`method`, `group`, `tags`, `notes`, `seed`) over its flattened config (`opd.beta`,
`schedule.cycles`, `branches.task` ..., see `flatten`); storage/search.RunFields resolves
them for a run as the query reads them (`lookup`).

The grammar and the parser are in copd/common/query_syntax.py (or, and, not, comparisons,
`in`, literals, lists, parentheses); this module checks a parsed query and evaluates it.

Types: numbers (ints and floats alike), strings ('...' or "..."), booleans, null, lists.
`==`/`!=` compare like with like (a number never equals a string or a boolean); `<`, `<=`,
`>`, `>=` order two numbers or two strings; `x in LIST` is membership, `"s" in TEXT` a
substring. A run that lacks a field (or holds null there) fails every comparison but `!=`.
The types a field holds are read from the runs searched, so `opd.beta > "1"` or a bare
`method` is an error before anything is evaluated, not a silent empty result.

Every error is one `QueryError` line: the problem, its column, and the fix (an unknown
field gets a did-you-mean from the fields the runs have). Standard library only.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from copd.common.query_syntax import (
    Compare,
    Field,
    ListOf,
    Literal,
    Logic,
    Node,
    QueryError,
    fail,
    fields_of,
    parse,
    tokenize,
)

__all__ = ["Compare", "Field", "ListOf", "Literal", "Logic", "Node", "Query", "QueryError",
           "compile_query", "fields_of", "flatten", "kind_of", "lookup", "parse", "search",
           "tokenize", "MISSING"]  # fmt: skip

_ORDERING = ("<", "<=", ">", ">=")
Record = Mapping[str, Any]


# ---------------------------------------------------------------------- records
def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config -> `dotted.key -> value`. Lists stay lists; a list of mappings (the
    branches) also gives one list per key: `branches.task == ["add", "rev"]`."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
            continue
        out[key] = v
        if isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
            for sub in dict.fromkeys(s for x in v for s in x):
                out[f"{key}.{sub}"] = [x.get(sub) for x in v]
    return out


MISSING = object()  # what `lookup` returns for a field the config does not have


def lookup(config: Mapping[str, Any], name: str) -> Any:
    """`flatten(config).get(name, MISSING)` without flattening the rest: the query reads a
    few fields of each run, so resolving just those keeps a search of 1,000 runs cheap."""
    node: Any = config
    parts = name.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, Mapping):
            if part not in node:
                return MISSING
            node = node[part]
        elif isinstance(node, list) and node and all(isinstance(x, Mapping) for x in node):
            rest = ".".join(parts[i:])  # a list of mappings spreads one level: branches.task
            return [x.get(rest) for x in node] if any(rest in x for x in node) else MISSING
        else:
            return MISSING
    return MISSING if isinstance(node, Mapping) and node else node


def kind_of(value: Any) -> str:
    """ "null" | "bool" | "number" | "string" | "list" | "object"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    return "object"


_PLURAL = {"bool": "booleans", "number": "numbers", "string": "strings", "list": "lists",
           "object": "mappings", "null": "null"}  # fmt: skip
_SINGULAR = {"bool": "boolean", "number": "number", "string": "string", "list": "list",
             "object": "mapping", "null": "null"}  # fmt: skip


# ---------------------------------------------------------------------- checks
Kinds = frozenset[str]
_BOOL: Kinds = frozenset({"bool"})


def _suggest(name: str, known: Iterable[str]) -> str:
    """ "; did you mean 'opd.beta'?": the fields that end in the same name, and the closest
    spellings (the best and any as close), at most three."""
    known = sorted(set(known))
    leaf = [k for k in known if k.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1] and k != name]
    scored = sorted(
        ((difflib.SequenceMatcher(None, name, k).ratio(), k) for k in known), reverse=True
    )
    close = [k for r, k in scored if r >= max(0.6, scored[0][0] - 0.05)] if scored else []
    picks = list(dict.fromkeys(leaf + close))[:3]
    if not picks:
        return "; see a run's config for the field names (e.g. opd.beta, schedule.cycles)"
    return "; did you mean " + " or ".join(repr(p) for p in picks) + "?"


class _Checker:
    """The kinds each node can take over the records; QueryError on a misuse."""

    def __init__(self, kinds: Mapping[str, Kinds]):
        self.kinds = kinds

    def kinds_of(self, node: Node) -> Kinds:
        if isinstance(node, Literal):
            return frozenset({kind_of(node.value)})
        if isinstance(node, ListOf):
            return frozenset({"list"})
        if isinstance(node, Field):
            return self.kinds[node.name] - {"null"}
        self.condition(node)
        return _BOOL

    def condition(self, node: Node) -> None:
        """`node` must be true or false: a comparison, a logic node, a boolean."""
        if isinstance(node, Logic):
            self.condition(node.left)
            if node.right is not None:
                self.condition(node.right)
        elif isinstance(node, Compare):
            self.compare(node)
        elif not self.kinds_of(node) <= _BOOL:
            raise fail(f"{_describe(node)} at column {node.col} is not a condition: "
                        f"{_bare_hint(node, self.kinds_of(node))}")  # fmt: skip

    def compare(self, node: Compare) -> None:
        left, right = self.kinds_of(node.left), self.kinds_of(node.right)
        op, where = node.op, f"'{node.op}' at column {node.col}"
        if op in ("in", "not in"):
            if right and not right <= {"list", "string"}:
                raise fail(
                    f"{where}: the right side must be a list or text, and "
                    f"{_holds(node.right, right)}"
                )
            if right == {"string"} and left and left != {"string"}:
                raise fail(f"{where}: only text is found inside text; quote the left side")
            return
        if _is_null(node.left) or _is_null(node.right):
            if op in _ORDERING:
                raise fail(f"{where}: null has no order; compare with == null or != null")
            return
        if op in _ORDERING and (left | right) - {"number", "string"}:
            bad = node.left if left - {"number", "string"} else node.right
            raise fail(f"{where} orders numbers or text, and "
                        f"{_holds(bad, self.kinds_of(bad))}")  # fmt: skip
        if left and right and not left & right:
            raise fail(
                f"{where}: {_holds(node.left, left)} but {_holds(node.right, right)}; "
                f"compare like with like{_literal_hint(node, left, right)}"
            )


def _is_null(node: Node) -> bool:
    return isinstance(node, Literal) and node.value is None


def _lit(value: Any) -> str:
    """A literal as the query would write it: "text", 1.5, true, null."""
    if isinstance(value, str):
        return json.dumps(value)
    return "null" if value is None else str(value).lower()


def _describe(node: Node) -> str:
    if isinstance(node, Field):
        return f"'{node.name}'"
    if isinstance(node, Literal):
        return _lit(node.value)
    return "the list" if isinstance(node, ListOf) else "the condition"


def _kinds_text(kinds: Kinds) -> str:
    return " and ".join(_PLURAL[k] for k in sorted(kinds)) or "nothing but null"


def _holds(node: Node, kinds: Kinds) -> str:
    """`'opd.beta' holds numbers`, `"1" is a string`."""
    if isinstance(node, Field):
        return f"{_describe(node)} holds {_kinds_text(kinds)}"
    return f"{_describe(node)} is a {_SINGULAR[next(iter(kinds))]}"


def _bare_hint(node: Node, kinds: Kinds) -> str:
    if isinstance(node, Field) and node.name == "tags":
        return 'write "x" in tags'
    if isinstance(node, Field):
        return f"compare it, e.g. {node.name} == ... (it holds {_kinds_text(kinds)})"
    if isinstance(node, Literal) and isinstance(node.value, str):
        return f"write {_lit(node.value)} in tags, or name == {_lit(node.value)}"
    return "compare something with it"


def _literal_hint(node: Compare, left: Kinds, right: Kinds) -> str:
    """`opd.beta == "1"` -> "(write 1, without quotes)"."""
    lit = node.right if isinstance(node.right, Literal) else node.left
    other = left if lit is node.right else right
    if isinstance(lit, Literal) and isinstance(lit.value, str) and "number" in other:
        try:
            return f" (write {float(lit.value):g}, without quotes)"
        except ValueError:
            return ""
    if isinstance(lit, Literal) and not isinstance(lit.value, str) and "string" in other:
        return f" (write {json.dumps(_lit(lit.value))}, in quotes)"
    return ""


# ---------------------------------------------------------------------- evaluation
def _eq(a: Any, b: Any) -> bool:
    ka, kb = kind_of(a), kind_of(b)
    if ka != kb:
        return False
    if ka == "list":
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _ordered(op: str, a: Any, b: Any) -> bool:
    ka = kind_of(a)
    if ka not in ("number", "string") or ka != kind_of(b):
        return False
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _contains(a: Any, b: Any) -> bool:
    if isinstance(b, (list, tuple)):
        return any(_eq(a, x) for x in b)
    if isinstance(b, str) and isinstance(a, str):
        return a in b
    return False


Fn = Callable[[Record], Any]


def _build(node: Node) -> Fn:
    """A closure computing `node` on a record (built once per query)."""
    if isinstance(node, Literal):
        value = node.value
        return lambda r: value
    if isinstance(node, ListOf):
        values = [i.value for i in node.items]
        return lambda r: values
    if isinstance(node, Field):
        name = node.name
        return lambda r: r.get(name)
    if isinstance(node, Logic):
        left = _build(node.left)
        if node.right is None:
            return lambda r: not left(r)
        right = _build(node.right)
        if node.op == "and":
            return lambda r: bool(left(r)) and bool(right(r))
        return lambda r: bool(left(r)) or bool(right(r))
    left, right, op = _build(node.left), _build(node.right), node.op
    if op == "==":
        return lambda r: _eq(left(r), right(r))
    if op == "!=":
        return lambda r: not _eq(left(r), right(r))
    if op == "in":
        return lambda r: _contains(left(r), right(r))
    if op == "not in":
        return lambda r: not _contains(left(r), right(r))
    return lambda r: _ordered(op, left(r), right(r))


@dataclass(frozen=True)
class Query:
    """A parsed and checked query: `query(record)` is True when the record matches."""

    text: str
    node: Node | None
    fn: Fn

    def __call__(self, record: Record) -> bool:
        return bool(self.fn(record))


def field_kinds(records: Sequence[Record], names: Iterable[str]) -> dict[str, Kinds]:
    """For each name that some record has, the kinds of value it holds across the records."""
    out: dict[str, set[str]] = {}
    for name in dict.fromkeys(names):
        for r in records:
            if name in r:
                out.setdefault(name, set()).add(kind_of(r[name]))
    return {k: frozenset(v) for k, v in out.items()}


def compile_query(text: str, records: Sequence[Record]) -> Query:
    """Parse `text` and check it against the fields and value types of `records` (every
    field must be one some record has; with no records only the syntax is checked)."""
    node = parse(text)
    if node is None:
        return Query(text or "", None, lambda r: True)
    used = fields_of(node)
    kinds = field_kinds(records, [f.name for f in used])
    if records:
        missing = next((f for f in used if f.name not in kinds), None)
        if missing is not None:
            known = {k for r in records[:200] for k in r}  # for the did-you-mean only
            raise fail(f"unknown field {missing.name!r} at column {missing.col}"
                        f"{_suggest(missing.name, known)}")  # fmt: skip
        _Checker(kinds).condition(node)
    return Query(text, node, _build(node))


def search(records: Sequence[Record], text: str) -> list[int]:
    """The indices of the records `text` matches, in order (all of them for an empty
    query); QueryError when the query does not parse or does not fit the records."""
    query = compile_query(text, records)
    if query.node is None:
        return list(range(len(records)))
    return [i for i, r in enumerate(records) if query(r)]
