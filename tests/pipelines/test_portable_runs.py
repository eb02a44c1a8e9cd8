"""Run folders are portable: copied or moved with their cohort, analysed from any directory.

A run's ``config.json`` stores its paths relative to the run folder (and their absolute paths as
a fallback); loading a run resolves them from the run folder first, and a run whose inputs are
truly gone says which file is missing and which run named it. The integration case trains a
real (one-epoch) pretraining and fine-tuning run; the others work on the conftest's untrained
run folder.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from phantoms import PhantomConfig, generate_cohort
from pipelines.cli import main
from pipelines.explain import LATENT_SCALE_FILE
from pipelines.trained_model import load_trained_model
from pipelines.training import train
from pipelines.training_config import TrainConfig


def _cli(capfd: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capfd.readouterr()
    return code, captured.out + captured.err


@pytest.mark.integration
def test_explain_and_audit_a_copied_run_after_the_original_is_gone(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    original = tmp_path / "original"
    generate_cohort(
        PhantomConfig(kind="brain2d", n=150, seed=4, size=32), original / "cohort", progress=False
    )
    monkeypatch.chdir(tmp_path)  # relative paths, as a user types them
    common = {
        "spatial_size": (32, 32),
        "size": "tiny",
        "latent_dim": 8,
        "batch_size": 8,
        "tracking_uri": None,
    }
    datalist = "original/cohort/datalist.json"
    train(TrainConfig(datalist=datalist, out_dir="original/pre", mode="pretrain", epochs=1, **common))
    train(
        TrainConfig(
            datalist=datalist, out_dir="original/cls", epochs=1, pretrained="original/pre/best.pt", **common
        )
    )
    saved = json.loads((original / "cls" / "config.json").read_text())
    assert saved["datalist"] == "../cohort/datalist.json" and saved["pretrained"] == "../pre/best.pt"
    assert saved["out_dir"] == "."

    copy = tmp_path / "archive" / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    image = next((copy / "cohort" / "images").iterdir())

    # single image, then the datalist mode and the audit, all through the command line
    argv = ["explain", "--model", "../archive/copy/cls", "--image", str(image), "--out", "explain"]
    code, output = _cli(capfd, [*argv, "--no-mlflow"])
    assert code == 0, output
    assert (elsewhere / "explain" / "report.html").is_file()
    # the training images were found through the moved config: the scale is theirs, not the prior
    assert "training images" in json.loads((copy / "cls" / LATENT_SCALE_FILE).read_text())["source"]
    moved_datalist = "../archive/copy/cohort/datalist.json"
    argv = ["explain", "--model", "../archive/copy/cls", "--datalist", moved_datalist, "--max-images", "2"]
    code, output = _cli(capfd, [*argv, "--out", "explain_set", "--no-mlflow", "--no-progress"])
    assert code == 0, output
    assert (elsewhere / "explain_set" / "metrics.json").is_file()
    argv = [
        "audit",
        "--model",
        "../archive/copy/cls",
        "--datalist",
        moved_datalist,
        "--attributes",
        "sex",
        "site",
    ]
    code, output = _cli(
        capfd, [*argv, "--permutations", "400", "--out", "audit", "--no-mlflow", "--no-progress"]
    )
    assert code == 0, output
    assert (elsewhere / "audit" / "report.html").is_file()
    # the pretraining checkpoint is only needed to train: gone, the fine-tuned run still loads
    shutil.rmtree(copy / "pre")
    assert load_trained_model(copy / "cls").config.pretrained is None

    # the cohort really gone: explaining still works from the run folder's caches, and says what is missing
    shutil.rmtree(copy / "cohort")
    caplog.set_level(logging.WARNING, logger="medglass.model")
    argv = [
        "explain",
        "--model",
        "../archive/copy/cls",
        "--image",
        str(_an_image(elsewhere)),
        "--out",
        "again",
    ]
    code, output = _cli(capfd, [*argv, "--no-mlflow"])
    assert code == 0, output
    gone = [r.getMessage() for r in caplog.records if r.name == "medglass.model"]
    assert gone and "../archive/copy/cls" in gone[0] and "cohort/datalist.json" in gone[0], gone


def _an_image(folder: Path) -> Path:
    """A phantom-like PNG outside any cohort (the cohort itself was deleted)."""
    import numpy as np
    from PIL import Image

    path = folder / "scan.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)).save(path)
    return path


def _portable_copy(untrained_run: Path, small_cohort: Path, tree: Path) -> Path:
    """``tree/cohort`` (a copy of the cohort) and ``tree/runs/cls`` whose config.json training would write."""
    shutil.copytree(small_cohort.parent, tree / "cohort")
    run = tree / "runs" / "cls"
    run.mkdir(parents=True)
    shutil.copy(untrained_run / "best.pt", run / "best.pt")
    config = TrainConfig.from_json(json.loads((untrained_run / "config.json").read_text()))
    config.datalist, config.out_dir = tree / "cohort" / "datalist.json", run
    (run / "config.json").write_text(json.dumps(config.to_json(relative_to=run)))
    return run


def test_a_run_whose_datalist_is_gone_names_the_file_and_the_run(
    untrained_run: Path,
    small_cohort: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _portable_copy(untrained_run, small_cohort, tmp_path / "tree")
    shutil.rmtree(tmp_path / "tree" / "cohort")  # neither beside the run nor at its absolute path
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING)
    image = _an_image(tmp_path)
    argv = [
        "explain",
        "--model",
        "tree/runs/cls",
        "--image",
        str(image),
        "--out",
        "o",
        "--no-mlflow",
        "--no-progress",
    ]
    code, output = _cli(capfd, argv)
    assert code == 0, output  # the prior stands in for the training images' scale
    said = [r.getMessage() for r in caplog.records if r.name == "medglass.model"]
    assert said, [r.getMessage() for r in caplog.records]
    assert "model tree/runs/cls:" in said[0] and "config.json" in said[0]
    assert str(tmp_path / "tree" / "cohort" / "datalist.json") in said[0] and "is gone" in said[0]
    # what needs the datalist itself fails naming it
    argv = ["audit", "--model", "tree/runs/cls", "--datalist", "tree/cohort/datalist.json", "--out", "a"]
    code, output = _cli(capfd, argv)
    assert code == 2 and output.strip().splitlines()[-1].endswith(
        "datalist tree/cohort/datalist.json: file not found"
    )


def test_a_run_folder_moved_without_its_cohort_finds_it_at_its_absolute_path(
    untrained_run: Path, small_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _portable_copy(untrained_run, small_cohort, tmp_path / "tree")
    moved = tmp_path / "elsewhere" / "deep" / "cls"
    moved.parent.mkdir(parents=True)
    shutil.move(str(run), moved)  # ../../cohort from here does not exist
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_trained_model(moved).config.datalist == tmp_path / "tree" / "cohort" / "datalist.json"


def test_an_older_config_with_paths_as_typed_still_loads_after_the_tree_moved(
    untrained_run: Path, small_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before portable run folders, config.json held the paths as typed, relative to where training started."""
    tree = tmp_path / "old"
    run = _portable_copy(untrained_run, small_cohort, tree)
    data = json.loads((run / "config.json").read_text())
    del data["absolute_paths"]
    data |= {"datalist": "cohort/datalist.json", "out_dir": "runs/cls", "pretrained": "runs/pre/best.pt"}
    (run / "config.json").write_text(json.dumps(data))
    moved = tmp_path / "new" / "place"
    shutil.move(str(tree), moved)
    other = tmp_path / "cwd"
    other.mkdir()
    monkeypatch.chdir(other)
    config = load_trained_model(moved / "runs" / "cls").config
    assert config.datalist == moved / "cohort" / "datalist.json" and config.datalist.is_file()
    assert config.out_dir == moved / "runs" / "cls"
    assert config.pretrained is None  # never there: only training needed it


def test_training_still_requires_the_pretrained_checkpoint(untrained_run: Path, tmp_path: Path) -> None:
    data = json.loads((untrained_run / "config.json").read_text()) | {"pretrained": "gone/best.pt"}
    with pytest.raises(ValueError, match=r"pretrained checkpoint .*gone/best.pt: file not found"):
        TrainConfig.from_json(data, base=tmp_path)
    assert TrainConfig.from_json(data, base=tmp_path, require_inputs=False).pretrained is None
