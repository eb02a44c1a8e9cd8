"""``medglass detect``: train (resume, label fraction, pretrained frozen encoder), evaluate, infer; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from phantoms import PhantomConfig, generate_cohort
from pipelines.cli import main
from pipelines.detection_config import DetectionConfig
from pipelines.detection_data import load_detection_datalist
from pipelines.detection_inference import infer_detection
from pipelines.detection_training import select_label_fraction, train_detection

FAST = ["--epochs", "1", "--batch-size", "4", "--figures", "1"]


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow store for the module (a new SQLite store takes seconds to set up)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlruns.db'}"


@pytest.fixture(scope="module")
def cohort2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 brain2d phantoms at 32×32, most with 1–2 lesions, a lesion in every section."""
    out = tmp_path_factory.mktemp("det2d")
    config = PhantomConfig(
        kind="brain2d",
        n=12,
        seed=5,
        size=32,
        lesion_prevalence=0.75,
        lesions_per_image=(1, 2),
        split_fractions=(0.5, 0.25, 0.25),
    )
    generate_cohort(config, out, progress=False)
    return out / "datalist.json"


@pytest.fixture(scope="module")
def trained2d(cohort2d: Path, tracking: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run2d")
    args = ["detect", "train", "--datalist", str(cohort2d), "--out", str(out), "--spatial-size", "32", "32"]
    assert main([*args, *FAST, "--tracking-uri", tracking, "--no-progress"]) == 0
    return out


def test_train_writes_checkpoints_metrics_and_figures(trained2d: Path):
    metrics = json.loads((trained2d / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 1 and metrics["train_images"] == 6
    for key in ("val_map_0.1", "val_map_0.1_0.5", "val_cpm", "val_froc_0.125", "val_froc_8", "test_cpm"):
        assert key in metrics
    assert (trained2d / "last.pt").is_file() and (trained2d / "figures" / "epoch_001_0.png").is_file()
    assert set(torch.load(trained2d / "last.pt", weights_only=True)) >= {"network", "optimizer", "trainer"}


def test_mlflow_holds_params_epoch_metrics_and_figures(trained2d: Path, tracking: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking)
    run = client.get_run((trained2d / "mlflow_run_id.txt").read_text().strip())
    assert run.data.params["spatial_size"] == "(32, 32)" and run.data.params["label_fraction"] == "1.0"
    assert {"loss", "loss_cls", "val_fp_per_image", "test_fp_per_image"} <= set(run.data.metrics)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1]
    assert "epoch_001_0.png" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_resume_continues_to_more_epochs(trained2d: Path, tracking: str, tmp_path: Path):
    import shutil

    run = tmp_path / "resumed"
    shutil.copytree(trained2d, run)
    config = DetectionConfig.from_json(json.loads((trained2d / "config.json").read_text()), base=trained2d)
    config.out_dir, config.epochs, config.tracking_uri = run, 2, tracking
    metrics = train_detection(config)
    assert metrics["start_epoch"] == 1 and metrics["epochs_completed"] == 2


def test_evaluate_and_infer_write_metrics_and_world_boxes(
    trained2d: Path, cohort2d: Path, tmp_path: Path, capsys
):
    assert main(["detect", "evaluate", "--model", str(trained2d), "--out", str(tmp_path / "ev")]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["images"] == 3 and "cpm" in metrics and "map_0.1" in metrics
    assert (
        main(
            [
                "detect",
                "infer",
                "--model",
                str(trained2d),
                "--datalist",
                str(cohort2d),
                "--out",
                str(tmp_path / "inf"),
            ]
        )
        == 0
    )
    files = sorted((tmp_path / "inf").glob("*_boxes.json"))
    assert len(files) == 3
    doc = json.loads(files[0].read_text())
    assert doc["coordinate_system"] == "RAS" and doc["image_shape"] == [32, 32]
    for box in doc["boxes"]:  # inside the image, world corners from the affine
        assert 0 <= min(box["index_box"]) and max(box["index_box"]) <= 32
        assert all(lo <= hi for lo, hi in zip(box["world_min"], box["world_max"], strict=True))


def test_infer_on_a_larger_nifti_maps_boxes_back_into_its_extent(trained2d: Path, tmp_path: Path):
    # a 2D NIfTI of 48x40 with 2 mm pixels and an offset: predictions on the 32x32 grid come back in its extent
    affine = np.diag([2.0, 2.0, 1.0, 1.0])
    affine[:3, 3] = [-40.0, 10.0, 0.0]
    image = np.random.default_rng(0).random((48, 40)).astype(np.float32)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), path)
    [out] = infer_detection(trained2d, path, tmp_path / "inf")
    doc = json.loads(out.read_text())
    assert doc["image_shape"] == [48, 40] and len(doc["boxes"]) > 0
    for box in doc["boxes"]:
        lo, hi = np.array(box["index_box"][:2]), np.array(box["index_box"][2:])
        assert (lo >= 0).all() and (hi <= [48, 40]).all() and (lo <= hi).all()
        assert np.allclose(box["world_min"][:2], lo * 2.0 + [-40.0, 10.0], atol=1e-3)


def test_label_fraction_keeps_a_stratified_share(cohort2d: Path):
    records = load_detection_datalist(cohort2d, "training")
    kept = select_label_fraction(records, 0.5, seed=0)
    positives = sum(len(r["boxes"]) > 0 for r in records)
    assert len(kept) == round(len(records) / 2)
    assert sum(len(r["boxes"]) > 0 for r in kept) == round(positives / 2)
    assert select_label_fraction(records, 1.0, seed=0) == records


def test_label_fraction_that_keeps_nothing_is_refused(cohort2d: Path, tmp_path: Path):
    config = DetectionConfig(
        datalist=cohort2d, out_dir=tmp_path / "r", spatial_size=(32, 32), label_fraction=0.01
    )
    with pytest.raises(ValueError, match=r"label_fraction 0.01 keeps none of the 6 training images"):
        train_detection(config)


def test_pretrained_frozen_encoder_is_loaded_and_kept(
    cohort2d: Path, untrained_run: Path, tracking: str, tmp_path: Path
):
    source = torch.load(untrained_run / "best.pt", weights_only=True)["model"]
    config = DetectionConfig(
        datalist=cohort2d,
        out_dir=tmp_path / "run",
        spatial_size=(32, 32),
        size="tiny_fine",
        epochs=1,
        batch_size=4,
        pretrained=str(untrained_run),
        freeze_encoder=True,
        label_fraction=0.5,
        tracking_uri=tracking,
        figures=0,
    )
    metrics = train_detection(config)
    assert metrics["train_images"] == 3
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["network"]
    encoder = {
        k[len("feature_extractor.body.") :]: v
        for k, v in state.items()
        if k.startswith("feature_extractor.body.")
    }
    assert encoder and all(torch.equal(v, source[f"encoder.{k}"]) for k, v in encoder.items())


def test_pretrained_run_of_another_size_is_refused(
    cohort2d: Path, untrained_run: Path, tracking: str, tmp_path: Path
):
    config = DetectionConfig(
        datalist=cohort2d,
        out_dir=tmp_path / "r",
        spatial_size=(32, 32),
        size="tiny",
        pretrained=str(untrained_run),
        tracking_uri=tracking,
    )
    with pytest.raises(ValueError, match="does not fit the encoder"):
        train_detection(config)


def _datalist_with(cohort2d: Path, tmp_path: Path, **changes) -> Path:
    data = json.loads(cohort2d.read_text())
    for section, value in changes.items():
        data[section] = value
    for section in ("training", "validation", "test"):
        for record in data.get(section, []):
            record["image"] = str(cohort2d.parent / record["image"])
            record.pop("mask", None)
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(data))
    return path


def _train_cli(datalist: Path, out: Path) -> int:
    """``medglass detect train`` at 32×32 for one epoch; returns the exit status."""
    args = ["detect", "train", "--datalist", str(datalist), "--out", str(out), "--spatial-size", "32", "32"]
    return main([*args, *FAST, "--no-progress"])


def test_box_outside_the_image_names_file_box_and_shape(cohort2d: Path, tmp_path: Path, capsys):
    data = json.loads(cohort2d.read_text())
    record = dict(data["training"][0], boxes=[[20, 20, 40, 30]], box_labels=[0])
    datalist = _datalist_with(cohort2d, tmp_path, training=[record])
    code = _train_cli(datalist, tmp_path / "r")
    err = capsys.readouterr().err
    assert code == 2
    assert Path(record["image"]).name in err and "[20.0, 20.0, 40.0, 30.0]" in err and "[32, 32]" in err


def test_empty_section_is_named(cohort2d: Path, tmp_path: Path, capsys):
    datalist = _datalist_with(cohort2d, tmp_path, validation=[])
    code = _train_cli(datalist, tmp_path / "r")
    assert code == 2 and "section 'validation' is empty" in capsys.readouterr().err


def test_2d_model_given_a_3d_image_is_refused(trained2d: Path, tmp_path: Path, capsys):
    path = tmp_path / "volume.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.float32), np.eye(4)), path)
    code = main(
        ["detect", "infer", "--model", str(trained2d), "--image", str(path), "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "volume.nii.gz" in err and "2D detector cannot read this image" in err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_malformed_boxes_in_the_datalist_are_named(cohort2d: Path, tmp_path: Path):
    data = json.loads(cohort2d.read_text())
    record = dict(data["training"][0], boxes=[[1, 2, 3]])
    datalist = _datalist_with(cohort2d, tmp_path, training=[record])
    with pytest.raises(ValueError, match=r"record '.*': boxes must be a list of"):
        load_detection_datalist(datalist, "training")
