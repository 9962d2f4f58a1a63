"""Tags and notes on runs: what a valid one is, checked once for every writer.

    tags = check_tags(["ablation", "beta-sweep"])     # the tags, deduplicated, in order
    note = check_notes("diverged after step 300")     # the notes, unchanged
    tags = split_tags("ablation, beta-sweep")          # a form's text -> checked tags

A tag is a short label a run is searched by (`"ablation" in tags`, docs/ARCHITECTURE.md):
1 to 64 characters from letters, digits and `_ - . : / = + @`, starting with a letter or a
digit (so `copd tag RUN +x -y` reads +/- as add/remove, and a tag never needs quoting on a
command line). Notes are free text (lines and tabs allowed, other control characters not),
at most 10,000 characters. Both are shown as text, never as markdown. Errors are one line
naming the fix (`TagError`, a ValueError the CLI prints without a traceback).

Standard library only: the store, the CLI and the dashboard all check with this module.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

MAX_TAG_CHARS = 64
MAX_TAGS = 32  # per run
MAX_NOTES_CHARS = 10_000
TAG_CHARSET = "letters, digits and _ - . : / = + @"
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/=+@-]*")
_ALLOWED = re.compile(r"[A-Za-z0-9_.:/=+@-]")


class TagError(ValueError):
    """A tag or a note the store refuses; the message names the fix."""

    user_error = True  # copd's CLI prints it as one line, without a traceback


def control_char(text: str, allowed: str = "") -> str | None:
    """The first control character of `text` (a tab, newline or escape) not in `allowed`."""
    return next((c for c in text if unicodedata.category(c) == "Cc" and c not in allowed), None)


def check_tag(tag: str) -> str:
    """`tag` itself when it is a valid tag, else TagError saying what to change."""
    if not isinstance(tag, str):
        raise TagError(f"tag {tag!r}: a tag is text, e.g. 'ablation'")
    if not tag:
        raise TagError("tag '': empty; give a word such as 'ablation'")
    if len(tag) > MAX_TAG_CHARS:
        raise TagError(
            f"tag {tag[:24]!r}...: {len(tag)} characters; shorten it to at most {MAX_TAG_CHARS}"
        )
    bad = control_char(tag)
    if bad is not None:
        raise TagError(f"tag {tag!r} holds the control character {bad!r}; remove it")
    if _TAG.fullmatch(tag):
        return tag
    if not tag[0].isascii() or not tag[0].isalnum():
        raise TagError(
            f"tag {tag!r}: start it with a letter or a digit (it may hold {TAG_CHARSET})"
        )
    bad = next(c for c in tag if not _ALLOWED.fullmatch(c))
    what = "a space" if bad == " " else repr(bad)
    raise TagError(f"tag {tag!r}: {what} is not allowed; use {TAG_CHARSET} (e.g. 'beta-sweep')")


def check_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Every tag checked (`check_tag`), duplicates dropped, order kept; at most MAX_TAGS."""
    if isinstance(tags, str):  # a lone string would be read as its characters
        tags = [tags]
    out = tuple(dict.fromkeys(check_tag(t) for t in tags))
    if len(out) > MAX_TAGS:
        raise TagError(f"{len(out)} tags; a run holds at most {MAX_TAGS}: drop some")
    return out


def split_tags(text: str) -> tuple[str, ...]:
    """Tags typed as text, separated by commas and/or spaces: "a, b c" -> ("a", "b", "c")."""
    return check_tags(t for t in re.split(r"[,\s]+", text or "") if t)


def check_notes(notes: str | None) -> str:
    """The notes (None -> ""), refused when too long or holding control characters other
    than line breaks and tabs."""
    notes = "" if notes is None else notes
    if not isinstance(notes, str):
        raise TagError(f"notes: {type(notes).__name__}; notes are text")
    if len(notes) > MAX_NOTES_CHARS:
        raise TagError(
            f"notes: {len(notes)} characters; shorten them to at most {MAX_NOTES_CHARS} "
            "(long write-ups belong in a file in the run's folder)"
        )
    bad = control_char(notes, allowed="\n\r\t")
    if bad is not None:
        raise TagError(f"notes hold the control character {bad!r}; remove it")
    return notes
