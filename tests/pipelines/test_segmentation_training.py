"""Tests for the segmentation workflow: pipelines/segmentation_{config,data,training,inference,cli}.py.

One 1-epoch run (through ``medglass segment train``, from the conftest's pretraining run with a
frozen encoder and half the masks) is shared by the evaluate, infer and resume cases.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file

from phantoms import PhantomConfig, generate_cohort
from pipelines.cli import main
from pipelines.segmentation_config import SegmentationConfig
from pipelines.segmentation_data import choose_label_fraction, load_segmentation_records
from pipelines.segmentation_engines import build_segmenter, load_segmentation_run
from pipelines.segmentation_training import train_segmentation
from pipelines.trained_model import load_trained_model
from transforms.dicom_sources import load_dicom_with_sources

METRICS = ("mean_dice", "dice", "hd95", "nsd", "lesion_sensitivity", "lesion_precision")


@pytest.fixture(scope="module")
def seg_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 brain2d phantoms at 32×32 (training, validation and test sections); returns the datalist."""
    out = tmp_path_factory.mktemp("seg_cohort")
    generate_cohort(PhantomConfig(kind="brain2d", n=12, seed=5, size=32), out, progress=False)
    return out / "datalist.json"


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory: pytest.TempPathFactory, seg_cohort: Path, untrained_run: Path) -> Path:
    out = tmp_path_factory.mktemp("seg") / "run"
    code = main(
        [
            "segment",
            "train",
            "--datalist",
            str(seg_cohort),
            "--out",
            str(out),
            "--patch-size",
            "32",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--figures",
            "1",
            "--label-fraction",
            "0.5",
            "--pretrained",
            str(untrained_run),
            "--freeze-encoder",
            "--tracking-uri",
            f"sqlite:///{out.parent}/mlruns.db",
            "--no-progress",
        ]
    )
    assert code == 0
    return out


def test_train_writes_checkpoints_metrics_figures_and_an_mlflow_run(seg_run: Path, seg_cohort: Path) -> None:
    metrics = json.loads((seg_run / "metrics.json").read_text())
    sections = json.loads(seg_cohort.read_text())
    for prefix in ("val_", "test_"):
        for name in METRICS[:4]:
            assert metrics[prefix + name] is not None and metrics[prefix + name] >= 0
    assert metrics["test_images"] == len(sections["test"]) and metrics["test_nsd_tolerance"] == 1.0
    assert metrics["epochs_completed"] == 1 and metrics["train_img_s"] > 0
    # label fraction 0.5 of the training records, per image class
    labels = [r["label"] for r in sections["training"]]
    assert metrics["train_records"] == len(labels)
    assert metrics["train_images"] == sum(int(np.floor(0.5 * labels.count(c) + 0.5)) for c in (0, 1))
    assert {"best.pt", "last.pt", "config.json", "mlflow_run_id.txt"} <= {p.name for p in seg_run.iterdir()}
    assert len(list((seg_run / "figures").glob("epoch_001_*.png"))) == 1
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{seg_run.parent}/mlruns.db")
    run = client.get_run((seg_run / "mlflow_run_id.txt").read_text().strip())
    assert run.data.params["label_fraction"] == "0.5" and "val_dice" in run.data.metrics
    assert any(a.path.endswith(".png") for a in client.list_artifacts(run.info.run_id))


def test_pretrained_encoder_is_loaded_and_stays_frozen(seg_run: Path, untrained_run: Path) -> None:
    network, config = load_segmentation_run(seg_run)
    pretrained = load_trained_model(untrained_run).network
    assert config.size == "tiny_fine"  # the pretraining run's preset replaced the default
    state, source = network.encoder.state_dict(), pretrained.encoder.state_dict()
    assert state.keys() == source.keys()
    assert all(torch.equal(state[k], source[k]) for k in state)  # frozen: weights and BN statistics


def test_evaluate_scores_a_section_and_writes_metrics(
    seg_run: Path, seg_cohort: Path, tmp_path: Path
) -> None:
    code = main(["segment", "evaluate", "--model", str(seg_run), "--section", "test", "--out", str(tmp_path)])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    stored = json.loads((seg_run / "metrics.json").read_text())
    # the same best model on the same section as at the end of training
    for name in METRICS[:4]:
        assert metrics[f"test_{name}"] == pytest.approx(stored[f"test_{name}"], abs=1e-6)


def test_infer_writes_a_nifti_mask_and_a_dicom_seg_for_a_real_ct(seg_run: Path, tmp_path: Path) -> None:
    ct = get_testdata_file("CT_small.dcm")  # 128 x 128, larger than the 32 x 32 training patch
    code = main(["segment", "infer", "--model", str(seg_run), "--image", ct, "--out", str(tmp_path)])
    assert code == 0
    case = json.loads((tmp_path / "predictions.json").read_text())["cases"][0]
    image, affine, _ = load_dicom_with_sources(ct)
    mask = nib.load(case["nifti_mask"])
    assert mask.shape == tuple(image.shape[1:])
    np.testing.assert_allclose(mask.affine, affine, atol=1e-4)
    assert int(np.asarray(mask.dataobj).sum()) == case["lesion_voxels"]
    seg = pydicom.dcmread(case["dicom_seg"])
    source = pydicom.dcmread(ct)
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert Path(case["overlay"]).is_file()


def test_a_resumed_run_continues_after_the_last_epoch(seg_run: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(seg_run, folder, ignore=shutil.ignore_patterns("mlflow_run_id.txt"))
    config = SegmentationConfig.from_json(json.loads((folder / "config.json").read_text()), base=folder)
    config.epochs, config.tracking_uri, config.figures = 2, f"sqlite:///{tmp_path}/mlruns.db", 0
    metrics = train_segmentation(config)
    assert metrics["start_epoch"] == 1 and metrics["epochs_completed"] == 2
    trainer = torch.load(folder / "last.pt", weights_only=True)["trainer"]
    assert trainer["iteration"] == 2 * trainer["epoch_length"]


def test_label_fraction_keeps_a_seeded_stratified_share(seg_cohort: Path) -> None:
    records = load_segmentation_records(seg_cohort, "training")
    kept = choose_label_fraction(records, 0.5, seed=0)
    assert kept == choose_label_fraction(records, 0.5, seed=0)
    for label in (0, 1):
        n = sum(r["label"] == label for r in records)
        assert sum(r["label"] == label for r in kept) == int(np.floor(0.5 * n + 0.5))
    unlabelled = [{**r, "label": -1} for r in records]
    assert len(choose_label_fraction(unlabelled, 0.1, seed=0)) == 1  # at least one record
    with pytest.raises(ValueError, match=r"label_fraction must be in \(0, 1\], got 0"):
        choose_label_fraction(records, 0)


def test_config_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="patch_size must be 2 or 3 positive ints divisible by 8"):
        SegmentationConfig(datalist="d.json", out_dir="o", patch_size=(30, 32))
    with pytest.raises(ValueError, match="freeze_encoder needs a pretrained run"):
        SegmentationConfig(datalist="d.json", out_dir="o", freeze_encoder=True)
    with pytest.raises(ValueError, match="overlap must be in"):
        SegmentationConfig(datalist="d.json", out_dir="o", overlap=1.0)
    with pytest.raises(ValueError, match="pretrained needs architecture='glassbox'"):
        SegmentationConfig(datalist="d.json", out_dir="o", architecture="unet", pretrained="runs/pre")


@pytest.mark.parametrize("architecture", ["glassbox", "unet", "segresnet"])
def test_every_architecture_gives_two_logits_per_pixel(architecture: str) -> None:
    config = SegmentationConfig(
        datalist="d.json", out_dir="o", patch_size=(16, 16, 16), architecture=architecture
    )
    network = build_segmenter(config).eval()
    with torch.no_grad():
        assert network(torch.rand(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)
