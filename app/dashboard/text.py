"""User text inside Streamlit markdown, shown as the characters it holds (Streamlit-free).

    st.subheader(f"Group {md_escape(run.group)}")      # never a link, an image, a formula
    st.error(md_escape(str(e)))

Run names, groups, task names, config values, errors and log lines come from whoever
launched the run (a browser form, a `--set`, a config file). Streamlit renders headings,
captions, messages, tab/expander labels and metric values as GitHub-flavoured markdown
with math and `:color[...]` directives, so `[x](http://a) ![p](http://b/p.png)` in a group
would be an outside link and an image the browser fetches. `md_escape` puts a backslash
before every ASCII punctuation character (CommonMark lets any of them be escaped), which
also stops HTML (`\\<`), math (`\\$`) and directives (`\\:`); GFM's bare-URL links
(`http://`, `www.`, `a@b.c`) ignore escapes and get an invisible word joiner instead.
Text rendered with st.code, st.text, a dataframe or a plotly title is not markdown and
needs none of this.
"""

from __future__ import annotations

import re
import string

_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")
# GFM turns bare `http://`, `www.` and `a@b.c` into links whatever the escapes; an invisible
# WORD JOINER after the scheme / before the '@' leaves the text as it reads but no link.
_AUTOLINK = re.compile(r"(?i)(https?|ftp|mailto|xmpp|www)(?=[:.])|(?=@)")
WORD_JOINER = "\u2060"


def md_escape(text: object) -> str:
    """`text` (any value, str() first) with every markdown special character escaped, so
    Streamlit shows it literally. Line breaks are kept (a message may span lines); a
    heading is one line, see `md_line`."""
    unlinked = _AUTOLINK.sub(lambda m: (m.group(1) or "") + WORD_JOINER, str(text))
    return _SPECIAL.sub(r"\\\1", unlinked)


def md_line(text: object) -> str:
    """`md_escape` on one line: line breaks become spaces (for headings and labels, where
    a new line would start a new block)."""
    return md_escape(" ".join(str(text).splitlines()))


def plural(n: int, word: str) -> str:
    """`1 seed`, `3 seeds`."""
    return f"{n} {word}" + ("" if n == 1 else "s")
