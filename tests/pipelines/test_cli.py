"""The medglass command line: one-line errors, exit codes, subcommands wired to their functions."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from pipelines.cli import main
from tests.conftest import pydicom_test_dir


def test_ingest_command(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(pydicom_test_dir() / "CT_small.dcm", src / "a.dcm")
    (src / "junk.dcm").write_bytes(b"")
    assert main(["ingest", str(src), "--out", str(tmp_path / "out"), "--no-progress", "--salt", "x"]) == 0
    out = capsys.readouterr().out
    assert "1 images" in out and "1 rejected" in out


def test_folder_without_images_exits_1_with_one_line(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "readme.txt").write_text("hello")
    assert main(["ingest", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no readable images found" in err[0]


def test_errors_are_one_line_without_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "ingest",
            str(tmp_path / "nope"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"medglass ingest: error: SRC {tmp_path / 'nope'}: not a folder"
    assert "Traceback" not in proc.stderr


def test_phantom_bad_argument_is_one_line(tmp_path, capsys):
    code = main(["phantom", "--out", str(tmp_path / "p"), "--marker-correlation", "1.5", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("medglass phantom: error: marker_correlation must be in [0")
    assert "got 1.5" in err and len(err.splitlines()) == 1


def test_training_options_reach_the_train_config(tmp_path):
    from pipelines.cli import _train_config, build_parser
    from pipelines.training_config import TrainConfig

    datalist = tmp_path / "d.json"
    datalist.write_text("{}")
    common = ["--datalist", str(datalist), "--out", str(tmp_path / "o")]
    options = [
        "--labelled-share",
        "0.3",
        "--flip-prob",
        "0.2",
        "--latent-pool",
        "mean",
        "--cache-rate",
        "0.25",
        "--no-pooled-logits",
        "--attention-sparsity",
        "0.05",
    ]
    config = _train_config(build_parser().parse_args(["classify", *common, *options]), "classify")
    assert (config.labelled_share, config.flip_prob, config.latent_pool, config.cache_rate) == (
        0.3,
        0.2,
        "mean",
        0.25,
    )
    assert config.pooled_logits is False and config.attention_sparsity == 0.05
    defaults = _train_config(build_parser().parse_args(["classify", *common]), "classify")
    assert (defaults.labelled_share, defaults.flip_prob, defaults.latent_pool, defaults.cache_rate) == (
        TrainConfig.labelled_share,
        TrainConfig.flip_prob,
        TrainConfig.latent_pool,
        TrainConfig.cache_rate,
    )
    assert defaults.pooled_logits is TrainConfig.pooled_logits is None
    assert defaults.attention_sparsity == TrainConfig.attention_sparsity
    forced = _train_config(build_parser().parse_args(["pretrain", *common, "--pooled-logits"]), "pretrain")
    assert forced.pooled_logits is True
    pretrain = _train_config(build_parser().parse_args(["pretrain", *common, "--flip-prob", "0"]), "pretrain")
    assert pretrain.flip_prob == 0.0


def test_size_choices_are_the_network_presets(tmp_path):
    from networks.presets import SIZE_PRESETS
    from pipelines.cli import _train_config, build_parser
    from pipelines.training_config import TrainConfig

    parser = build_parser()
    common = ["--datalist", str(tmp_path / "d.json"), "--out", str(tmp_path / "o")]
    for size in SIZE_PRESETS:
        assert (
            _train_config(parser.parse_args(["pretrain", *common, "--size", size]), "pretrain").size == size
        )
    with pytest.raises(SystemExit):
        parser.parse_args(["pretrain", *common, "--size", "huge"])
    # the CLI default is TrainConfig's (the preset the bundles and the demo train too)
    assert (
        _train_config(parser.parse_args(["classify", *common]), "classify").size
        == TrainConfig(datalist=tmp_path / "d.json", out_dir=tmp_path).size
    )
