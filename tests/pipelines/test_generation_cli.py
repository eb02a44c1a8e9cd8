"""medglass generate from the command line: images and a datalist, or one line naming the bad argument."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.cli import main


def test_generate_writes_a_marked_datalist(
    untrained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "gen"
    assert (
        main(["generate", "--model", str(untrained_run), "--n", "5", "--class", "1", "--out", str(out)]) == 0
    )
    data = json.loads((out / "datalist.json").read_text())
    records = [r for section in data.values() for r in section]
    assert len(records) == 5 and all(r["synthetic"] is True and r["label"] == 1 for r in records)
    assert all((out / r["image"]).is_file() and (out / r["latent"]).is_file() for r in records)
    assert "generate: 5 images (aggregate)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "0"], "n must be a positive int, got 0"),
        (["--n", "2", "--class", "5"], "got 5"),
        (["--n", "2", "--latent", "one=2"], "--latent takes k=v pairs"),
    ],
)
def test_generate_bad_arguments_are_one_line(
    untrained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    code = main(["generate", "--model", str(untrained_run), "--out", str(tmp_path / "g"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("medglass generate: error:") and message in err, err
    assert len(err.splitlines()) == 1


def test_generate_never_overwrites_another_runs_files(
    untrained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["generate", "--model", str(untrained_run), "--n", "2", "--out", str(out)]) == 2
    assert "already holds files of another run" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == [
        "notes.txt"
    ]
