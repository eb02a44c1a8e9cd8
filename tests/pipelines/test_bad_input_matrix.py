"""Bad input through the command line: one line naming the file and the reason, exit code 2, no traceback.

Runs ``pipelines.cli.main`` in-process (the same handler as the ``medglass`` entry point) over
the cases of issue 26's matrix, and checks that no half-written output is left behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from pipelines.cli import main


def _files(tmp: Path, sample_png: Path) -> dict[str, tuple[Path, str]]:
    """Each bad file, with a word its error message must hold."""
    (tmp / "empty.png").write_bytes(b"")
    (tmp / "truncated.png").write_bytes(sample_png.read_bytes()[:200])
    (tmp / "text.dcm").write_text("not a DICOM file\n")
    nib.save(nib.Nifti1Image(np.full((16, 16, 4), np.nan, np.float32), np.eye(4)), tmp / "nan.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((16, 16, 4, 3), np.float32), np.eye(4)), tmp / "four_d.nii.gz")
    good = nib.Nifti1Image(np.ones((16, 16, 4), np.float32), np.eye(4))
    nib.save(good, tmp / "whole.nii.gz")
    (tmp / "truncated.nii.gz").write_bytes((tmp / "whole.nii.gz").read_bytes()[:60])
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp / "one_pixel.png")
    return {
        "empty": (tmp / "empty.png", "empty file"),
        "truncated_png": (tmp / "truncated.png", "unreadable"),
        "text_dcm": (tmp / "text.dcm", "not a DICOM file"),
        "nan_nifti": (tmp / "nan.nii.gz", "NaN"),
        "four_d_nifti": (tmp / "four_d.nii.gz", "3-D image"),
        "truncated_nifti": (tmp / "truncated.nii.gz", "unreadable"),
        "one_pixel": (tmp / "one_pixel.png", "too small"),
        "missing": (tmp / "nowhere.png", "no such file"),
    }


def _run(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _check(code: int, output: str, name: str, reason: str) -> None:
    assert code != 0
    last = output.strip().splitlines()[-1]
    assert name in last and reason in last, last
    assert "object at 0x" not in output and "Traceback" not in output


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "truncated_png",
        "text_dcm",
        "nan_nifti",
        "four_d_nifti",
        "truncated_nifti",
        "one_pixel",
        "missing",
    ],
)
def test_explain_image_names_the_file_and_the_reason(
    case: str, untrained_run: Path, small_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sample = next((small_cohort.parent / "images").iterdir())
    path, reason = _files(tmp_path, sample)[case]
    out = tmp_path / "explain"
    code, output = _run(
        capsys,
        ["explain", "--model", str(untrained_run), "--image", str(path), "--out", str(out), "--no-mlflow"],
    )
    _check(code, output, path.name, reason)
    assert not (out / "metrics.json").exists() and not (out / "report.html").exists()


def test_a_datalist_entry_without_its_image_key(
    untrained_run: Path, small_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = json.loads(small_cohort.read_text())
    del data["test"][0]["image"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(data))
    out = tmp_path / "audit"
    code, output = _run(
        capsys, ["audit", "--model", str(untrained_run), "--datalist", str(broken), "--out", str(out)]
    )
    _check(code, output, "broken.json", "image")
    assert not (out / "metrics.json").exists()


def test_a_checkpoint_of_the_other_core(
    untrained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    shutil.copytree(untrained_run, run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"latent": "vector"}))
    image = tmp_path / "scan.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    code, output = _run(
        capsys,
        ["explain", "--model", str(run), "--image", str(image), "--out", str(tmp_path / "o"), "--no-mlflow"],
    )
    _check(code, output, "best.pt", "architecture changed")


def test_a_folder_where_a_model_checkpoint_is_expected(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty_run").mkdir()
    image = tmp_path / "scan.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(image)
    code, output = _run(
        capsys,
        [
            "explain",
            "--model",
            str(tmp_path / "empty_run"),
            "--image",
            str(image),
            "--out",
            str(tmp_path / "o"),
            "--no-mlflow",
        ],
    )
    _check(code, output, "empty_run", "no checkpoint")
