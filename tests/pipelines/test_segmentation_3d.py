"""3D segmentation end to end on brain3d phantoms: train, evaluate and infer with the same metrics as 2D."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from phantoms import PhantomConfig, generate_cohort
from pipelines.segmentation_config import SegmentationConfig
from pipelines.segmentation_engines import evaluate_segmentation
from pipelines.segmentation_inference import infer_segmentation
from pipelines.segmentation_training import train_segmentation

METRICS = ("mean_dice", "dice", "hd95", "nsd", "nsd_tolerance", "lesion_sensitivity", "lesion_precision")


@pytest.fixture(scope="module")
def run_3d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    root = tmp_path_factory.mktemp("seg3d")
    generate_cohort(
        PhantomConfig(kind="brain3d", n=10, seed=2, size=32, image_format="nifti"),
        root / "cohort",
        progress=False,
    )
    datalist = root / "cohort" / "datalist.json"
    config = SegmentationConfig(
        datalist=datalist,
        out_dir=root / "run",
        patch_size=(32, 32, 32),
        epochs=1,
        batch_size=2,
        sw_batch_size=1,
        figures=1,
        device="cpu",
        tracking_uri=f"sqlite:///{root}/mlruns.db",
    )
    return root / "run", datalist, train_segmentation(config)


def test_3d_training_reports_the_2d_metrics(run_3d: tuple[Path, Path, dict]) -> None:
    run, datalist, metrics = run_3d
    for name in METRICS:
        assert f"val_{name}" in metrics and f"test_{name}" in metrics, name
    assert metrics["test_images"] == len(json.loads(datalist.read_text())["test"])
    assert list((run / "figures").glob("epoch_001_*.png"))


def test_3d_evaluate_and_infer_keep_the_volume_geometry(
    run_3d: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    run, datalist, metrics = run_3d
    scores = evaluate_segmentation(run, section="test", out_dir=tmp_path / "eval")
    assert scores["test_dice"] == pytest.approx(metrics["test_dice"], abs=1e-6)
    record = json.loads(datalist.read_text())["test"][0]
    source = nib.load(datalist.parent / record["image"])
    case = infer_segmentation(run, [datalist.parent / record["image"]], tmp_path / "pred")["cases"][0]
    mask = nib.load(case["nifti_mask"])
    assert mask.shape == source.shape
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-4)


def test_3d_infer_on_a_dicom_series_writes_nifti_and_a_seg_referencing_it(
    run_3d: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    import pydicom

    from transforms.dicom_sources import load_dicom_with_sources

    generate_cohort(
        PhantomConfig(kind="brain3d", n=2, seed=7, size=32, image_format="dicom"),
        tmp_path / "c",
        progress=False,
    )
    record = json.loads((tmp_path / "c" / "datalist.json").read_text())["training"][0]
    series = tmp_path / "c" / record["image"]  # a folder of single-slice DICOM files
    assert series.is_dir()
    case = infer_segmentation(run_3d[0], [series], tmp_path / "pred")["cases"][0]
    image, affine, datasets = load_dicom_with_sources(series)
    mask = nib.load(case["nifti_mask"])
    assert mask.shape == tuple(image.shape[1:])
    np.testing.assert_allclose(mask.affine, affine, atol=1e-4)
    seg = pydicom.dcmread(case["dicom_seg"])
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == datasets[0].SeriesInstanceUID
