r"""Untrusted text (documents, model output, server errors, file names) made safe for where it goes.

Text fanout did not write is data: shown raw, an ``ESC c`` in a model's answer resets the screen, a
``[/b]`` in a server error breaks rich's markup parser after the run finished, and ``<script>`` in a
dataset runs in whoever opens report.html. One function per sink makes such text safe, and every
sink goes through one of them:

- `for_terminal`: plain stderr/stdout lines; C0 and C1 controls (ESC included, so no escape
  sequence survives), DEL, and the Unicode controls that reorder or break lines are shown as
  visible escapes (``\x1b``, ``\u202e``).
- `rich_text`: the same, as a `rich.text.Text`, which rich never parses for markup or emoji codes.
- `for_markdown`, `for_html`: the same, then escaped for the format.
- `for_plot`: the same, with ``$`` escaped (matplotlib reads ``$...$`` as mathtext).

Each also redacts secrets (`fanout.agents._secrets.scrub`), so one call per sink does both. JSON
sinks need no escaping (JSON escapes controls itself) and keep everything; they call `scrub`.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

from ._secrets import scrub

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

__all__ = [
    "CELL_LIMIT",
    "console",
    "for_html",
    "for_markdown",
    "for_markdown_code",
    "for_plot",
    "for_terminal",
    "rich_text",
    "shorten",
    "visible",
]

CELL_LIMIT = 300
"""Characters a table cell shows of one value; the JSON output keeps the whole value."""

# C0 and C1 controls and DEL; the bidirectional overrides and isolates (they reorder what follows:
# "Trojan source"); the Unicode line and paragraph separators; the invisible characters that no
# script needs (zero-width space, word joiner, invisible operators, byte order mark), with which
# "a\u200b.md" would look like "a.md". The zero-width joiners stay: emoji and scripts need them.
_CONTROLS = (
    r"\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069"
    r"\u2028\u2029\ufeff"
)
_ANY_CONTROL = re.compile(f"[{_CONTROLS}]")
# Emphasis, code, table and strike characters; an underscore only where it can open or close
# emphasis (between two letters or digits it cannot, so "q4_k_m.gguf" stays as it is).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*{}|~]|(?<![^\W_])_|_(?![^\W_]))")
# A bracket that would open a link, an image, a footnote or a link definition.
_MARKDOWN_LINK = re.compile(r"(\](?=[(\[:])|!(?=\[)|\[(?=\^))")


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def visible(text: str, *, multiline: bool = False) -> str:
    r"""`text` with every control character shown as its escape (``ESC`` -> ``\x1b``).

    With `multiline`, line feeds stay line feeds (an answer has lines); every other control,
    carriage returns and tabs included, is escaped.
    """
    if multiline:
        return "\n".join(_ANY_CONTROL.sub(_escape, line) for line in text.split("\n"))
    return _ANY_CONTROL.sub(_escape, text)


def shorten(text: str, limit: int = CELL_LIMIT) -> str:
    """`text` cut to `limit` characters, saying how much was left out (a table cell, a note)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def for_terminal(text: str, *, multiline: bool = False, limit: int | None = None) -> str:
    """Untrusted text for a terminal line: secrets redacted, controls visible, optionally cut."""
    safe = visible(scrub(text), multiline=multiline)
    return safe if limit is None else shorten(safe, limit)


def rich_text(
    text: str, *, multiline: bool = True, limit: int | None = None, style: str = ""
) -> Text:
    """Untrusted text for rich (tables, consoles): a `Text`, so markup and emoji codes stay text."""
    from rich.text import Text  # rich loads only where something is drawn

    return Text(for_terminal(text, multiline=multiline, limit=limit), style=style)


def for_markdown(text: str) -> str:
    """Untrusted text for one line of Markdown (a table cell, a list item).

    Nothing it holds is markup, HTML, a link or a line break: emphasis, code and table characters
    are backslash-escaped, and brackets wherever they would open a link or an image (a bare
    "[34%-100%]" stays as it is: lines here never start a link definition); <, > and & become
    entities, so no HTML and no autolink.
    """
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", visible(scrub(text)))
    escaped = _MARKDOWN_LINK.sub(r"\\\1", escaped)
    return html.escape(escaped, quote=False)


def for_markdown_code(text: str) -> str:
    """Untrusted text as a Markdown code span (a command line): shown exactly, never rendered."""
    safe = visible(scrub(text))
    fence = "`" * (max((len(run) for run in re.findall("`+", safe)), default=0) + 1)
    pad = " " if safe.startswith("`") or safe.endswith("`") else ""
    return f"{fence}{pad}{safe}{pad}{fence}"


def for_html(text: str) -> str:
    """Untrusted text for HTML element content or a quoted attribute value."""
    return html.escape(visible(scrub(text)), quote=True)


def for_plot(text: str, limit: int = 80) -> str:
    """Untrusted text for a matplotlib title or legend: controls visible, no mathtext, cut."""
    return shorten(visible(scrub(text)), limit).replace("$", r"\$")


def console(*, stderr: bool = False, **options: Any) -> Console:
    """A rich console that never reads markup, emoji codes or highlights in what it prints.

    Whatever it prints is fanout's own text or passed through `rich_text`; styled headings are
    `Text` with a style, so no string is ever parsed as markup.
    """
    from rich.console import Console

    return Console(stderr=stderr, markup=False, emoji=False, highlight=False, **options)
