"""Self-contained HTML reports: headings, plain-language summaries, tables and PNG figures.

Explanation and bias-audit reports are read by clinicians and auditors, not programmers: a
summary in sentences first, then tables, then figures. :class:`HtmlReport` collects those
blocks and writes one ``report.html`` whose figures are PNG files beside it (relative links,
so the folder can be zipped, logged to MLflow and opened anywhere). Written by hand because
the page is a few dozen lines of escaped HTML: a template engine would be a dependency for
nothing. Every piece of text goes through :func:`html.escape`.

Example:
    >>> report = HtmlReport("Explanation of scan_001")
    >>> report.paragraph("The model predicts a lesion (p = 0.93).")
    >>> report.table([{"method": "attention", "pointing game": 0.95}])
    >>> report.write("out/report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import html
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

__all__ = ["HtmlReport", "format_value", "write_text_atomic"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.summary li { margin: 0.3em 0; } .note { color: #666; font-size: 0.9em; }
.flag { color: #b00020; font-weight: 600; }
"""


def format_value(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` decimals (``n/a`` for NaN), everything else as text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.{digits}f}"
    return str(value)


class HtmlReport:
    """Blocks of a report, written as one HTML page.

    Args:
        title: page title and top heading.
    """

    def __init__(self, title: str) -> None:
        if not isinstance(title, str) or not title.strip():
            raise ValueError(f"title must be a non-empty string, got {title!r}")
        self.title = title
        self.blocks: list[str] = []

    def heading(self, text: str) -> None:
        """A section heading."""
        self.blocks.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str, css_class: str | None = None) -> None:
        """A paragraph of plain text (escaped)."""
        cls = f' class="{html.escape(css_class)}"' if css_class else ""
        self.blocks.append(f"<p{cls}>{html.escape(text)}</p>")

    def bullets(self, items: Sequence[str], flagged: Sequence[bool] | None = None) -> None:
        """A bulleted list of sentences; ``flagged`` items are shown in the warning style."""
        flags = list(flagged) if flagged is not None else [False] * len(items)
        if len(flags) != len(items):
            raise ValueError(f"flagged must have one entry per item ({len(items)}), got {len(flags)}")
        rows = "".join(
            f"<li{' class=flag' if f else ''}>{html.escape(text)}</li>"
            for text, f in zip(items, flags, strict=True)
        )
        self.blocks.append(f'<ul class="summary">{rows}</ul>')

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
        caption: str | None = None,
    ) -> None:
        """A table with one row per mapping (columns: ``columns`` or the keys of the first row)."""
        if not rows:
            self.paragraph("(no rows)", css_class="note")
            return
        cols = list(columns) if columns is not None else list(rows[0])
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(format_value(r.get(c, '')))}</td>" for c in cols) + "</tr>"
            for r in rows
        )
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.blocks.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figure(self, path: str | PathLike, caption: str = "", root: str | PathLike | None = None) -> None:
        """A PNG figure, linked relative to ``root`` (the report's folder) when given."""
        target = Path(path)
        if root is not None:
            try:
                target = target.resolve().relative_to(Path(root).resolve())
            except ValueError:
                pass
        src = html.escape(target.as_posix(), quote=True)
        alt = html.escape(caption or target.name, quote=True)
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        self.blocks.append(f'<figure><img src="{src}" alt="{alt}">{cap}</figure>')

    def render(self) -> str:
        """The whole page as a string."""
        title = html.escape(self.title)
        body = "\n".join(self.blocks)
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
            f"{body}\n</body>\n</html>\n"
        )

    def write(self, path: str | PathLike) -> Path:
        """Write the page (folders created, atomically: see :func:`write_text_atomic`) and return its path."""
        return write_text_atomic(path, self.render())


def write_text_atomic(path: str | PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` so that no reader ever sees half of it.

    The text goes to a temporary file in the same folder, which then replaces ``path`` in one
    step (``os.replace``): a crash or a full disk leaves the old file or none, never a
    truncated report or ``metrics.json``.

    Args:
        path: the file to write (its folder is created).
        text: the content (UTF-8).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OSError: the folder cannot be written (nothing is left behind).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> write_text_atomic(folder / "metrics.json", "{}").read_text()
        '{}'
        >>> sorted(p.name for p in folder.iterdir())
        ['metrics.json']
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a unique name opened with "x" (not mkstemp, whose 0600 mode would outlive the rename)
    tmp = out.parent / f".{out.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "x", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
