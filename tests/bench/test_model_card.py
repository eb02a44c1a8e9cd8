"""The model cards' generated sections: replaced in place, appended once, hand-written text kept."""

from __future__ import annotations

from pathlib import Path

from bench.model_card import card_markers, write_card_section


def test_a_section_is_replaced_in_place_and_the_rest_kept(tmp_path: Path) -> None:
    card = tmp_path / "README.md"
    begin, end = card_markers("bench_x.py")
    card.write_text(f"# Card\n\nintro\n\n{begin}\nold figures\n{end}\n\n## Limits\nhand-written\n")
    write_card_section(
        card, "bench_x.py", "Figures", ["| new |"], "python bench/bench_x.py --n 3", note="(2 runs)"
    )
    text = card.read_text()
    assert "old figures" not in text and "| new |" in text
    assert (
        text.index("intro")
        < text.index(begin)
        < text.index("| new |")
        < text.index(end)
        < text.index("## Limits")
    )
    assert "by `python bench/bench_x.py --n 3` (2 runs); do not edit by hand._" in text
    assert "## Figures" not in text  # the section existed: no heading added


def test_a_missing_section_is_appended_once_and_sections_of_other_benches_stay(tmp_path: Path) -> None:
    card = tmp_path / "README.md"
    other_begin, other_end = card_markers("bench_y.py")
    card.write_text(f"# Card\n\n{other_begin}\ny figures\n{other_end}\n")
    for figures in ("| first |", "| second |"):
        write_card_section(card, "bench_x.py", "Figures", [figures], "cmd")
    text = card.read_text()
    assert text.count("## Figures") == 1 and "| first |" not in text and "| second |" in text
    assert "y figures" in text
