"""Bad input to ``medglass segment``: one line naming the file (or key) and the reason, nothing half-written.

The cases of issue 22 (a mask whose shape differs from its image, an empty datalist section, a
2D model given a 3D image), checked the way tests/pipelines/test_bad_input.py checks every command.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from phantoms import PhantomConfig, generate_cohort
from pipelines.segmentation_config import SegmentationConfig
from pipelines.segmentation_engines import build_segmenter
from tests.pipelines.test_bad_input import _check, _no_partial_output, _run


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seg_bad")
    generate_cohort(PhantomConfig(kind="brain2d", n=10, seed=1, size=32), out, progress=False)
    return out / "datalist.json"


def _datalist_with(cohort: Path, folder: Path, change) -> Path:  # noqa: ANN001
    data = json.loads(cohort.read_text())
    for section in ("training", "validation", "test"):
        for record in data[section]:
            record["image"], record["mask"] = (str(cohort.parent / record[k]) for k in ("image", "mask"))
    change(data)
    path = folder / "datalist.json"
    path.write_text(json.dumps(data))
    return path


def _train(datalist: Path, out: Path) -> list[str]:
    return [
        "segment",
        "train",
        "--datalist",
        str(datalist),
        "--out",
        str(out),
        "--patch-size",
        "32",
        "32",
        "--epochs",
        "1",
        "--tracking-uri",
        f"sqlite:///{out.parent}/mlruns.db",
        "--no-progress",
    ]


def test_a_mask_whose_shape_differs_from_its_image(
    cohort: Path, tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    small = tmp_path / "small_mask.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(small)
    datalist = _datalist_with(cohort, tmp_path, lambda d: d["training"][2].update(mask=str(small)))
    image = Path(json.loads(datalist.read_text())["training"][2]["image"]).name
    code, output = _run(capfd, _train(datalist, tmp_path / "run"))
    _check(code, output, "small_mask.png", "mask shape (1, 16, 16) differs from its image")
    assert image in output.strip().splitlines()[-1] and "(1, 32, 32)" in output
    _no_partial_output(tmp_path / "run")


def test_an_empty_datalist_section(
    cohort: Path, tmp_path: Path, capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    datalist = _datalist_with(cohort, tmp_path, lambda d: d.update(validation=[]))
    code, output = _run(capfd, _train(datalist, tmp_path / "run"))
    _check(code, output, "datalist.json", "section 'validation' is empty")
    assert not (tmp_path / "run").exists()


def test_a_2d_model_given_a_3d_image(cohort: Path, tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    run = tmp_path / "run2d"  # a run folder as training writes it, with seeded untrained weights
    run.mkdir()
    config = SegmentationConfig(datalist=cohort, out_dir=run, patch_size=(32, 32), intensity_range=(0.0, 1.0))
    (run / "config.json").write_text(json.dumps(config.to_json(relative_to=run)))
    torch.manual_seed(0)
    torch.save(build_segmenter(config).state_dict(), run / "best.pt")
    volume = tmp_path / "volume.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(32, 32, 8).astype(np.float32), np.eye(4)), volume)
    out = tmp_path / "pred"
    code, output = _run(
        capfd, ["segment", "infer", "--model", str(run), "--image", str(volume), "--out", str(out)]
    )
    _check(code, output, "volume.nii.gz", "a 3D image (shape (32, 32, 8)) given to a 2D segmentation model")
    _no_partial_output(out, finished=("predictions.json",))
    assert not out.exists() or not list(out.iterdir())
