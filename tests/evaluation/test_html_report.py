"""Tests of evaluation/html_report.py: escaped text, tables, relative figure links."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from evaluation.html_report import HtmlReport, format_value


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.imgs: list[dict] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))

    def handle_data(self, data):  # noqa: ANN001
        self.text.append(data)


def test_report_escapes_text_and_links_figures_relative(tmp_path: Path) -> None:
    (tmp_path / "figs").mkdir()
    png = tmp_path / "figs" / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    report = HtmlReport("Audit <site>")
    report.heading("Summary")
    report.bullets(["site B: sensitivity 0.71 vs 0.89 <elsewhere>", "sex: no gap"], flagged=[True, False])
    report.table([{"group": "A", "auc": 0.91234, "n": 12}, {"group": "B", "auc": float("nan"), "n": 3}])
    report.figure(png, caption="Subgroup sensitivity", root=tmp_path)
    path = report.write(tmp_path / "report.html")
    page = path.read_text()
    assert "<site>" not in page and "&lt;site&gt;" in page
    parser = _Collect()
    parser.feed(page)
    assert parser.tags.count("tr") == 3 and parser.tags.count("li") == 2
    assert parser.imgs == [{"src": "figs/a.png", "alt": "Subgroup sensitivity"}]
    text = "".join(parser.text)
    assert "0.912" in text and "n/a" in text and "class=flag" in page


def test_format_value_and_bad_arguments() -> None:
    assert format_value(0.5) == "0.500" and format_value(True) == "yes" and format_value(3) == "3"
    with pytest.raises(ValueError, match="title must be a non-empty string"):
        HtmlReport("  ")
    with pytest.raises(ValueError, match=r"flagged must have one entry per item \(2\), got 1"):
        HtmlReport("x").bullets(["a", "b"], flagged=[True])
