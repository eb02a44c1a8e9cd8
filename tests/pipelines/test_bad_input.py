"""Bad input through every user-facing command: one line naming the file (or key) and the reason.

Issue 26's matrix. Each case asserts a non-zero exit code, a last line holding the file (or
config key) and a word of the reason, no ``object at 0x`` and no ``Traceback`` anywhere in the
output, and no half-written output (no temporary file, every JSON readable, no report or
``metrics.json`` of a command that failed). Most cases call ``pipelines.cli.main`` in-process
(the handler the ``medglass`` entry point runs); a few run ``python -m pipelines.cli`` as a
subprocess, where the real exit status and everything the process prints (logging included) are
checked. Engines log a failing run's exception themselves: in-process, the records that reach
pytest's log handler are checked to carry no traceback and no echo of the error.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.cli import main
from pipelines.training import build_network
from pipelines.training_config import TrainConfig
from tests.conftest import pydicom_test_dir

ROOT = Path(__file__).resolve().parents[2]

# the network of the conftest's untrained_run, as bundle overrides
_BUNDLE_NETWORK = [
    "--latent_dim",
    "8",
    "--spatial_channels",
    "4",
    "--size",
    "tiny_fine",
    "--spatial_size",
    "[32, 32]",
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, small_cohort: Path) -> dict[str, tuple[Path, str]]:
    """Each bad file, with a word its error message must hold."""
    tmp = tmp_path_factory.mktemp("bad")
    sample = sorted((small_cohort.parent / "images").iterdir())[0]
    (tmp / "empty.png").write_bytes(b"")
    (tmp / "truncated.png").write_bytes(sample.read_bytes()[:200])
    (tmp / "text.dcm").write_text("not a DICOM file\n")
    ct = (pydicom_test_dir() / "CT_small.dcm").read_bytes()
    (tmp / "truncated.dcm").write_bytes(ct[: len(ct) // 2])
    nib.save(nib.Nifti1Image(np.full((16, 16, 4), np.nan, np.float32), np.eye(4)), tmp / "nan.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((16, 16, 4, 3), np.float32), np.eye(4)), tmp / "four_d.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((16, 16, 4), np.float32), np.eye(4)), tmp / "whole.nii.gz")
    (tmp / "truncated.nii.gz").write_bytes((tmp / "whole.nii.gz").read_bytes()[:60])
    nib.save(nib.Nifti1Image(np.ones((16, 16, 4), np.float32), np.eye(4)), tmp / "whole.nii")
    (tmp / "truncated.nii").write_bytes((tmp / "whole.nii").read_bytes()[:400])
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp / "one_pixel.png")
    (tmp / "a_folder.png").mkdir()
    return {
        "empty": (tmp / "empty.png", "empty file"),
        "truncated_png": (tmp / "truncated.png", "unreadable"),
        "text_dcm": (tmp / "text.dcm", "not a DICOM file"),
        "truncated_dcm": (tmp / "truncated.dcm", "truncated pixel data"),
        "nan_nifti": (tmp / "nan.nii.gz", "NaN"),
        "four_d_nifti": (tmp / "four_d.nii.gz", "3-D image"),
        "truncated_nifti_gz": (tmp / "truncated.nii.gz", "truncated"),
        "truncated_nifti": (tmp / "truncated.nii", "unreadable NIfTI"),
        "one_pixel": (tmp / "one_pixel.png", "1 x 1 pixels is too small"),
        "folder": (tmp / "a_folder.png", "folder holds no files"),
        "missing": (tmp / "nowhere.png", "no such file"),
    }


def _datalist_with(small_cohort: Path, folder: Path, name: str, change) -> Path:  # noqa: ANN001
    """A copy of the cohort's datalist (image paths made absolute) changed by ``change(data)``."""
    data = json.loads(small_cohort.read_text())
    for section in ("training", "validation", "test"):
        for record in data[section]:
            for key in ("image", "mask"):
                if key in record:
                    record[key] = str(small_cohort.parent / record[key])
    change(data)
    path = folder / name
    path.write_text(json.dumps(data))
    return path


def _run(capfd: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capfd.readouterr()
    return code, captured.out + captured.err


def _check(code: int, output: str, name: str, reason: str) -> None:
    assert code != 0, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("medglass "), last
    assert name in last and reason in last, last
    assert "object at 0x" not in output and "Traceback" not in output, output


def _no_partial_output(out: Path, finished: tuple[str, ...] = ("metrics.json", "report.html")) -> None:
    """Nothing half-written under ``out``: no temporary file, readable JSON, no report of a failed command."""
    if not out.exists():
        return
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp")], files
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text())
    assert not [p for p in files if p.name in finished], files


def _no_echo(caplog: pytest.LogCaptureFixture) -> None:
    """Engines' logging of the failure reached no handler with a traceback or as a repeat of the error."""
    for record in caplog.records:
        assert not record.exc_info and not record.exc_text, record.getMessage()
        assert "terminating due to exception" not in record.getMessage()
        assert "object at 0x" not in record.getMessage()


# --- explain --image: every kind of bad file ------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "truncated_png",
        "text_dcm",
        "truncated_dcm",
        "nan_nifti",
        "four_d_nifti",
        "truncated_nifti_gz",
        "truncated_nifti",
        "one_pixel",
        "folder",
        "missing",
    ],
)
def test_explain_image_names_the_file_and_the_reason(
    case: str, bad_files: dict, untrained_run: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    path, reason = bad_files[case]
    out = tmp_path / "explain"
    argv = ["explain", "--model", str(untrained_run), "--image", str(path), "--out", str(out), "--no-mlflow"]
    code, output = _run(capfd, argv)
    _check(code, output, path.name, reason)
    _no_partial_output(out)


# --- ingest -----------------------------------------------------------------------------------


def test_ingest_rejects_each_bad_file_with_its_reason(
    bad_files: dict, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for path, _ in bad_files.values():
        if path.is_file():
            shutil.copy(path, src / path.name)
    (src / "a_folder.png").mkdir()
    out = tmp_path / "out"
    code, output = _run(capfd, ["ingest", str(src), "--out", str(out), "--no-progress", "--salt", "s"])
    # only the 4-D NIfTI is an image (ingestion is model-agnostic: the model refuses it later)
    assert code == 0, output
    _no_partial_output(out, finished=())
    rejects = {
        Path(row.split(",")[0]).name: row for row in (out / "rejects.csv").read_text().splitlines()[1:]
    }
    for case, (path, reason) in bad_files.items():
        if case in ("four_d_nifti", "missing"):
            continue
        assert reason in rejects[path.name], (case, rejects.get(path.name))
    assert "object at 0x" not in (out / "rejects.csv").read_text()


@pytest.mark.parametrize(
    ("case", "argv", "name", "reason"),
    [
        ("src_missing", ["ingest", "{tmp}/nowhere", "--out", "{tmp}/out"], "nowhere", "not a folder"),
        ("src_a_file", ["ingest", "{empty}", "--out", "{tmp}/out"], "empty.png", "not a folder"),
        ("no_image", ["ingest", "{bad_only}", "--out", "{tmp}/out"], "bad_only", "no readable images"),
        (
            "labels_missing",
            ["ingest", "{bad_only}", "--labels", "{tmp}/l.csv", "--out", "{tmp}/out"],
            "l.csv",
            "no such file",
        ),
    ],
)
def test_ingest_bad_arguments(
    case: str,
    argv: list[str],
    name: str,
    reason: str,
    bad_files: dict,
    tmp_path: Path,
    capfd: pytest.CaptureFixture,
) -> None:
    bad_only = tmp_path / "bad_only"
    bad_only.mkdir()
    shutil.copy(bad_files["empty"][0], bad_only / "empty.png")
    values = {"tmp": str(tmp_path), "empty": str(bad_files["empty"][0]), "bad_only": str(bad_only)}
    code, output = _run(capfd, [a.format(**values) for a in argv] + ["--no-progress"])
    _check(code, output, name, reason)
    _no_partial_output(tmp_path / "out", finished=())


# --- pretrain / classify ----------------------------------------------------------------------


def _classify(datalist: Path, out: Path, *extra: str) -> list[str]:
    return [
        "classify",
        "--datalist",
        str(datalist),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--spatial-size",
        "32",
        "32",
        "--size",
        "tiny",
        "--latent-dim",
        "8",
        "--batch-size",
        "8",
        "--no-progress",
        "--tracking-uri",
        f"sqlite:///{out.parent}/mlruns.db",
        *extra,
    ]


def test_classify_a_datalist_record_without_its_image(
    small_cohort: Path, tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    broken = _datalist_with(small_cohort, tmp_path, "no_image.json", lambda d: d["training"][3].pop("image"))
    code, output = _run(capfd, _classify(broken, tmp_path / "run"))
    _check(code, output, "no_image.json", "record 3 has no 'image'")
    _no_partial_output(tmp_path / "run")


def test_classify_a_bad_setting_names_it(
    small_cohort: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    code, output = _run(capfd, _classify(small_cohort, tmp_path / "run", "--label-fraction", "1.5"))
    _check(code, output, "label_fraction", "must be in [0, 1], got 1.5")


def test_pretrained_checkpoint_of_the_other_core(
    small_cohort: Path, tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    vector = TrainConfig(
        datalist=small_cohort, out_dir=tmp_path, spatial_size=(32, 32), latent_dim=8, latent="vector"
    )
    torch.save({"model": build_network(vector).state_dict()}, tmp_path / "vector.pt")
    code, output = _run(
        capfd, _classify(small_cohort, tmp_path / "run", "--pretrained", str(tmp_path / "vector.pt"))
    )
    _check(code, output, "vector.pt", "holds the vector-latent core")
    _no_partial_output(tmp_path / "run")


def test_classify_an_image_that_fails_inside_the_engine(
    small_cohort: Path,
    bad_files: dict,
    tmp_path: Path,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not cached (cache rate 0), the validation image is first read by the evaluator during the run."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    truncated = bad_files["truncated_png"][0]
    datalist = _datalist_with(
        small_cohort,
        tmp_path,
        "bad_validation.json",
        lambda d: d["validation"][0].update(image=str(truncated)),
    )
    caplog.set_level(logging.INFO)
    code, output = _run(capfd, _classify(datalist, tmp_path / "run", "--cache-rate", "0"))
    _check(code, output, truncated.name, "unreadable image file")
    _no_echo(caplog)
    _no_partial_output(tmp_path / "run")


# --- explain --datalist, audit, mitigate ------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "section", "extra"),
    [
        ("explain", "test", ["--max-images", "2", "--no-progress"]),
        ("audit", "test", ["--permutations", "200", "--no-progress"]),
        ("mitigate", "validation", ["--attribute", "sex", "--no-progress"]),
    ],
)
@pytest.mark.parametrize("fault", ["missing_key", "truncated_image"])
def test_analysis_commands_name_the_bad_record(
    command: str,
    section: str,
    extra: list[str],
    fault: str,
    small_cohort: Path,
    untrained_run: Path,
    bad_files: dict,
    tmp_path: Path,
    capfd: pytest.CaptureFixture,
) -> None:
    truncated = bad_files["truncated_png"][0]

    def change(data: dict) -> None:
        if fault == "missing_key":
            data[section][1].pop("image")
        else:
            data[section][1]["image"] = str(truncated)

    datalist = _datalist_with(small_cohort, tmp_path, f"{fault}.json", change)
    out = tmp_path / "out"
    argv = [
        command,
        "--model",
        str(untrained_run),
        "--datalist",
        str(datalist),
        "--out",
        str(out),
        "--no-mlflow",
    ]
    code, output = _run(capfd, argv + extra)
    if fault == "missing_key":
        _check(code, output, f"{fault}.json", "record 1 has no 'image'")
    else:
        _check(code, output, truncated.name, "unreadable image file")
    _no_partial_output(out, finished=("metrics.json", "report.html", "eraser.pt", "eraser.json"))


def test_a_checkpoint_of_the_other_core(
    untrained_run: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(untrained_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"latent": "vector"}))
    image = tmp_path / "scan.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    argv = [
        "explain",
        "--model",
        str(run),
        "--image",
        str(image),
        "--out",
        str(tmp_path / "o"),
        "--no-mlflow",
    ]
    code, output = _run(capfd, argv)
    _check(code, output, "best.pt", "architecture changed")
    _no_partial_output(tmp_path / "o")


def test_a_folder_where_a_model_is_expected(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    (tmp_path / "empty_run").mkdir()
    image = tmp_path / "scan.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    argv = [
        "explain",
        "--model",
        str(tmp_path / "empty_run"),
        "--image",
        str(image),
        "--out",
        str(tmp_path / "o"),
    ]
    code, output = _run(capfd, [*argv, "--no-mlflow"])
    _check(code, output, "empty_run", "no checkpoint")


def test_a_config_json_with_an_unknown_key(
    untrained_run: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(untrained_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"epochz": 3}))
    image = tmp_path / "scan.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    argv = [
        "explain",
        "--model",
        str(run),
        "--image",
        str(image),
        "--out",
        str(tmp_path / "o"),
        "--no-mlflow",
    ]
    code, output = _run(capfd, argv)
    _check(code, output, "config.json", "unknown TrainConfig fields: ['epochz']")


# --- the bundle runner ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "name", "reason"),
    [
        (["--train#epochz", "1"], "train#epochz", "does not exist"),
        (["--image", "{missing}"], "nowhere.png", "file not found"),
        (["--datalist", "{no_image}"], "no_image.json", "record 1 has no 'image'"),
        (["--image", "{one_pixel}", *_BUNDLE_NETWORK], "one_pixel.png", "too small"),
        (["--image", "{empty}"], "best.pt", "does not fit the bundle's network_def"),  # the default network
    ],
    ids=["config_key", "missing_image", "datalist_key", "one_pixel", "other_network"],
)
def test_bundle_runs_name_the_file_or_key(
    overrides: list[str],
    name: str,
    reason: str,
    small_cohort: Path,
    untrained_run: Path,
    bad_files: dict,
    tmp_path: Path,
    capfd: pytest.CaptureFixture,
    caplog: pytest.LogCaptureFixture,
) -> None:
    no_image = _datalist_with(small_cohort, tmp_path, "no_image.json", lambda d: d["test"][1].pop("image"))
    values = {
        "missing": bad_files["missing"][0],
        "no_image": no_image,
        "one_pixel": bad_files["one_pixel"][0],
        "empty": bad_files["empty"][0],
    }
    out = tmp_path / "predictions"
    config = "train" if overrides[0].startswith("--train#") else "inference"
    argv = ["run", "glassbox_classification", "--config", config, "--output_dir", str(untrained_run)]
    argv += ["--prediction_dir", str(out)] if config == "inference" else []
    code, output = _run(capfd, argv + [o.format(**values) for o in overrides])
    _check(code, output, name, reason)
    _no_echo(caplog)
    _no_partial_output(out, finished=("predictions.csv",))


# --- through the real entry point -------------------------------------------------------------


def _subprocess(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def test_the_entry_point_prints_one_line_for_a_truncated_image(
    bad_files: dict, untrained_run: Path, tmp_path: Path
) -> None:
    path = bad_files["truncated_png"][0]
    out = tmp_path / "explain"
    argv = ["explain", "--model", str(untrained_run), "--image", str(path), "--out", str(out), "--no-mlflow"]
    proc = _subprocess(argv, tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"medglass explain: error: {path}: unreadable image file ("
    ), lines
    _check(proc.returncode, proc.stdout + proc.stderr, path.name, "unreadable image file")
    _no_partial_output(out)


def test_a_bundle_engine_that_fails_logs_no_traceback(
    bad_files: dict, untrained_run: Path, tmp_path: Path
) -> None:
    """The bundle's logging.conf prints to stdout; ignite and StatsHandler would echo the error there."""
    path = bad_files["empty"][0]
    out = tmp_path / "predictions"
    argv = ["run", "glassbox_classification", "--config", "inference", "--output_dir", str(untrained_run)]
    proc = _subprocess(
        [*argv, "--prediction_dir", str(out), "--image", str(path), *_BUNDLE_NETWORK], tmp_path
    )
    output = proc.stdout + proc.stderr
    assert "Restored all variables" in output  # the engine ran and failed inside
    _check(proc.returncode, output, path.name, "empty file (0 bytes)")
    assert output.count("empty file (0 bytes)") == 1  # said once
    _no_partial_output(out, finished=("predictions.csv",))


def test_debug_shows_the_error_itself(bad_files: dict, untrained_run: Path, tmp_path: Path) -> None:
    """``--debug`` lets the exception through (Python prints its traceback), with the file in its chain."""
    from pipelines.user_errors import user_error

    path = bad_files["empty"][0]
    argv = [
        "--debug",
        "explain",
        "--model",
        str(untrained_run),
        "--image",
        str(path),
        "--out",
        str(tmp_path / "o"),
    ]
    with pytest.raises(Exception) as caught:  # noqa: PT011 - whatever MONAI wraps it in
        main([*argv, "--no-mlflow"])
    assert str(user_error(caught.value)) == f"{path}: empty file (0 bytes)"
