"""The syntax of the run query language (copd/common/query.py): tokens, a tree of five node
types, and a hand-written recursive-descent parser. Nothing here evaluates anything.

    tree = parse('opd.beta >= 1 and "ablation" in tags')   # Logic("and", Compare(...), ...)

Grammar (lowest precedence first; keywords are case-insensitive):

    query  := or
    or     := and ("or" and)*
    and    := not ("and" not)*
    not    := "not" not | cmp
    cmp    := value [("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in") value]
    value  := FIELD | STRING | NUMBER | true | false | null | "[" [value ("," value)*] "]"
            | "(" query ")"

A syntax error is one `QueryError` line with its column and the fix. Standard library only.
A query is bounded before it is parsed or run (MAX_CHARS, MAX_DEPTH, MAX_TERMS,
MAX_NUMBER_CHARS): hostile input is one line too, never a RecursionError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MAX_CHARS = 2000  # characters in a query
MAX_DEPTH = 32  # nested parentheses and `not`s
MAX_TERMS = 64  # conditions joined by and / or
MAX_NUMBER_CHARS = 40  # characters of one number literal

_LITERALS = {"true": True, "false": False, "null": None, "none": None}
_KEYWORDS = {"and", "or", "not", "in", *_LITERALS}


class QueryError(ValueError):
    """A query that does not parse or does not fit the runs; the message names the fix."""

    user_error = True  # copd's CLI prints it as one line, without a traceback


def fail(message: str) -> QueryError:
    """A QueryError saying `message` (prefixed "query: ")."""
    return QueryError(f"query: {message}")


# ---------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class Token:
    kind: (
        str  # "name" | "keyword" | "string" | "number" | "op" | "(" | ")" | "[" | "]" | "," | "end"
    )
    value: Any
    col: int  # 1-based column where the token starts


_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
_OPS = ("==", "!=", "<=", ">=", "<", ">")
# What people type from other languages, and what to write instead.
_FOREIGN = {
    "&&": "write 'and'",
    "||": "write 'or'",
    "<>": "write '!='",
    "=": "write '==' to compare",
    "!": "write 'not'",
    "&": "write 'and'",
    "|": "write 'or'",
}
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}


def _string(text: str, i: int) -> tuple[str, int]:
    """The string literal opening at text[i] (its quote) and the index after it."""
    quote, out, j = text[i], [], i + 1
    while j < len(text):
        c = text[j]
        if c == quote:
            return "".join(out), j + 1
        if c == "\\" and j + 1 < len(text):
            out.append(_ESCAPES.get(text[j + 1], "\\" + text[j + 1]))
            j += 2
            continue
        out.append(c)
        j += 1
    raise fail(f"the string opened at column {i + 1} is never closed: end it with {quote}")


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`, ending with an "end" token; QueryError on a stray character."""
    tokens, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "\"'":
            value, j = _string(text, i)
            tokens.append(Token("string", value, i + 1))
            i = j
        elif (m := _NUMBER.match(text, i)) and not _NAME.match(text, m.end()):
            raw = m.group(0)
            if len(raw) > MAX_NUMBER_CHARS:
                raise fail(
                    f"the number at column {i + 1} is {len(raw)} characters long; at most "
                    f"{MAX_NUMBER_CHARS}: write it shorter (1e30, not 1 and 30 zeros)"
                )
            value = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
            tokens.append(Token("number", value, i + 1))
            i = m.end()
        elif m := _NAME.match(text, i):
            word = m.group(0)
            kind = "keyword" if word.lower() in _KEYWORDS else "name"
            tokens.append(Token(kind, word.lower() if kind == "keyword" else word, i + 1))
            i = m.end()
        elif op := next((o for o in _OPS if text.startswith(o, i)), None):
            if op == "<" and text.startswith("<>", i):
                raise fail(f"'<>' at column {i + 1}: {_FOREIGN['<>']}")
            tokens.append(Token("op", op, i + 1))
            i += len(op)
        elif c in "()[],-":
            tokens.append(Token(c, c, i + 1))
            i += 1
        else:
            two = text[i : i + 2]
            foreign = two if two in _FOREIGN else c
            hint = _FOREIGN.get(foreign, "use and / or / not, comparisons, strings and numbers")
            raise fail(f"{foreign!r} at column {i + 1} is not part of the query language: {hint}")
    tokens.append(Token("end", None, len(text.rstrip()) + 1))
    return tokens


# ---------------------------------------------------------------------- syntax tree
@dataclass(frozen=True)
class Field:
    name: str
    col: int


@dataclass(frozen=True)
class Literal:
    value: Any
    col: int


@dataclass(frozen=True)
class ListOf:
    items: tuple[Literal, ...]
    col: int


@dataclass(frozen=True)
class Compare:
    op: str
    left: Node
    right: Node
    col: int  # of the operator


@dataclass(frozen=True)
class Logic:
    op: str  # "and" | "or" | "not" (then `right` is None)
    left: Node
    right: Node | None
    col: int


Node = Field | Literal | ListOf | Compare | Logic


def _shown(t: Token) -> str:
    if t.kind == "end":
        return "the end of the query"
    return repr(t.value) if t.kind == "string" else f"'{t.value}'"


class _Parser:
    """Recursive descent over the grammar of the module docstring."""

    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0  # open parentheses and `not`s
        self.terms = 1

    def deeper(self, col: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise fail(
                f"nested more than {MAX_DEPTH} deep (column {col}): "
                "remove parentheses or `not`s that do nothing"
            )

    def one_more_term(self, col: int) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise fail(
                f"more than {MAX_TERMS} conditions (column {col}): "
                "use `in [...]` for a list of values, e.g. id in [1, 2, 3]"
            )

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def at(self, kind: str, value: Any = None, ahead: int = 0) -> bool:
        t = self.tokens[min(self.i + ahead, len(self.tokens) - 1)]
        return t.kind == kind and (value is None or t.value == value)

    def parse(self) -> Node:
        node = self.or_()
        if not self.at("end"):
            t = self.tok
            if t.kind == ")":
                raise fail(f"')' at column {t.col} has no matching '('")
            raise self.unexpected()
        return node

    def unexpected(self) -> QueryError:
        """The error for a token where a condition ended."""
        t = self.tok
        if t.kind == "op" or t.kind == "keyword" and t.value in ("in", "not"):
            return fail(
                f"comparisons do not chain ({_shown(t)} at column {t.col}): write a < x and x < b"
            )
        return fail(f"unexpected {_shown(t)} at column {t.col}: join conditions with and / or")

    def or_(self) -> Node:
        node = self.and_()
        while self.at("keyword", "or"):
            col = self.take().col
            self.one_more_term(col)
            node = Logic("or", node, self.and_(), col)
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.at("keyword", "and"):
            col = self.take().col
            self.one_more_term(col)
            node = Logic("and", node, self.not_(), col)
        return node

    def not_(self) -> Node:
        if self.at("keyword", "not"):
            col = self.take().col
            self.deeper(col)
            node = Logic("not", self.not_(), None, col)
            self.depth -= 1
            return node
        return self.cmp()

    def cmp(self) -> Node:
        left = self.value()
        t = self.tok
        if t.kind == "op" or self.at("keyword", "in"):
            op = self.take().value
        elif self.at("keyword", "not") and self.at("keyword", "in", ahead=1):
            self.i += 2
            op = "not in"
        else:
            return left
        return Compare(op, left, self.value(after=op), t.col)

    def value(self, after: str | None = None) -> Node:
        t = self.tok
        if t.kind == "(":
            self.take()
            self.deeper(t.col)
            node = self.or_()
            self.depth -= 1
            if self.at("end"):
                raise fail(f"'(' at column {t.col} is never closed: add ')' at the end")
            if not self.at(")"):
                raise self.unexpected()
            self.take()
            return node
        if t.kind == "[":
            return self.list_()
        return self.literal_or_field(after)

    def list_(self) -> ListOf:
        start = self.take()
        items: list[Literal] = []
        while not self.at("]"):
            item = self.literal_or_field("[" if not items else ",")
            if not isinstance(item, Literal):
                raise fail(
                    f"a list holds strings and numbers only ({item.name!r} at column "
                    f"{item.col}): quote it if it is text"
                )
            items.append(item)
            if self.at(","):
                self.take()
            elif not self.at("]"):
                raise fail(
                    f"the list opened at column {start.col} needs ',' between items or ']' "
                    f"to close it (found {_shown(self.tok)} at column {self.tok.col})"
                )
        self.take()
        return ListOf(tuple(items), start.col)

    def literal_or_field(self, after: str | None) -> Node:
        t = self.take()
        if t.kind == "-" and self.at("number"):
            return Literal(-self.take().value, t.col)
        if t.kind in ("string", "number"):
            return Literal(t.value, t.col)
        if t.kind == "keyword" and t.value in _LITERALS:
            return Literal(_LITERALS[t.value], t.col)
        if t.kind == "name":
            return Field(t.value, t.col)
        where = f" after '{after}'" if after else ""
        raise fail(
            f"expected a field, a string or a number{where} at column {t.col}, got {_shown(t)}"
        )


def parse(text: str) -> Node | None:
    """The syntax tree of `text` (None for an empty query); QueryError when it does not
    parse."""
    if not text or not text.strip():
        return None
    if len(text) > MAX_CHARS:
        raise fail(f"{len(text)} characters long; at most {MAX_CHARS}: shorten the query")
    return _Parser(text).parse()


def fields_of(node: Node | None) -> list[Field]:
    """The fields a tree reads, in order of appearance."""
    if node is None or isinstance(node, (Literal, ListOf)):
        return []
    if isinstance(node, Field):
        return [node]
    return fields_of(node.left) + fields_of(node.right)
