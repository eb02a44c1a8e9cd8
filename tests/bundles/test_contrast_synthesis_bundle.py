"""The contrast_synthesis bundle: metadata, network I/O, train → evaluate → infer, on a generated dce2d cohort."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from monai.bundle import ConfigParser, verify_metadata, verify_net_in_out
from PIL import Image

from pipelines.bundle_runner import BUNDLES_DIR, run_bundle
from pipelines.cli import main
from pipelines.synthesis_config import SynthesisConfig
from tests.conftest import pydicom_data_dir

CONFIGS = BUNDLES_DIR / "contrast_synthesis" / "configs"
ROOT = Path(__file__).resolve().parents[2]
SIZE = 32


def _overrides(out: Path) -> dict:
    return {
        "output_dir": str(out),
        "dataset#cohort_n": 24,
        "train#spatial_size": [SIZE, SIZE],
        "train#epochs": 1,
        "train#batch_size": 4,
        "train#device": "cpu",
        "train#tracking_uri": f"sqlite:///{out.parent}/mlruns.db",
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("synthesis") / "run"
    overrides = _overrides(out)
    metrics = run_bundle("contrast_synthesis", "train", overrides)
    return {"out": out, "overrides": overrides, "metrics": metrics}


def test_metadata_and_network_io() -> None:
    verify_metadata(
        meta_file=str(CONFIGS / "metadata.json"),
        filepath=str(BUNDLES_DIR / "schema" / "metadata_schema.json"),
    )
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "inference.json"),
        device="cpu",
    )
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["intended_use"].startswith("research, not for diagnosis")


def test_train_section_keeps_the_config_defaults(tmp_path: Path) -> None:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser["output_dir"] = str(tmp_path)
    parser["datalist"] = str(tmp_path / "d.json")
    parser["train#adversarial_weight"] = 0.0  # not declared by the bundle: still an override
    config = parser.get_parsed_content("train_config")
    assert isinstance(config, SynthesisConfig)
    assert config.adversarial_weight == 0.0 and config.l1_weight == SynthesisConfig.l1_weight
    assert config.spatial_size == (64, 64) and config.channels == (16, 32, 64, 128)


def test_train_evaluate_and_infer(trained: dict, tmp_path: Path) -> None:
    out = trained["out"]
    for name in ("best.pt", "last.pt", "config.json", "metrics.json"):
        assert (out / name).is_file(), name
    assert trained["metrics"]["epochs_completed"] == 1
    evaluation = run_bundle("contrast_synthesis", "evaluate", trained["overrides"])
    # whole-image and in-lesion figures apart, for the model and the unchanged source
    for key in (
        "test_ssim",
        "test_lesion_ssim",
        "test_enhancement_dice",
        "baseline_ssim",
        "baseline_lesion_ssim",
    ):
        assert key in evaluation, key
    stored = json.loads((out / "eval" / "metrics.json").read_text())
    assert stored["summary"]["model"]["ssim"] == pytest.approx(evaluation["test_ssim"])
    assert (out / "eval" / "report.html").is_file()

    datalist = out / "cohort" / "datalist.json"
    test = json.loads(datalist.read_text())["test"]
    result = run_bundle(
        "contrast_synthesis",
        "inference",
        {"output_dir": str(out), "spatial_size": [SIZE, SIZE], "prediction_dir": str(tmp_path / "pred")},
    )
    assert len(result["cases"]) == len(test) > 0
    for case, record in zip(result["cases"], test, strict=True):
        assert Path(case["panel"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        synthetic = nib.load(case["synthetic"])
        source = np.asarray(Image.open(datalist.parent / record["source"]))
        assert synthetic.shape[:2] == source.shape[::-1]  # on the source's grid (x, y)


def test_inference_on_a_real_dicom_writes_a_synthetic_series(trained: dict, tmp_path: Path) -> None:
    source = pydicom_data_dir() / "MR2_UNCR.dcm"
    result = run_bundle(
        "contrast_synthesis",
        "inference",
        {
            "output_dir": str(trained["out"]),
            "spatial_size": [SIZE, SIZE],
            "image": str(source),
            "prediction_dir": str(tmp_path),
        },
    )
    series = sorted(Path(result["cases"][0]["synthetic_dicom"]).glob("*.dcm"))
    written, original = pydicom.dcmread(series[0]), pydicom.dcmread(source, stop_before_pixels=True)
    assert "SYNTHETIC" in written.ImageType and written.SeriesDescription.startswith("SYNTHETIC")
    assert written.ImagePositionPatient == original.ImagePositionPatient
    assert written.PixelSpacing == original.PixelSpacing and written.Rows == original.Rows
    assert written.SeriesInstanceUID != original.SeriesInstanceUID


def test_medglass_run_and_monai_bundle_run(trained: dict, tmp_path: Path) -> None:
    overrides = ["--output_dir", str(trained["out"]), "--train#spatial_size", f"[{SIZE}, {SIZE}]"]
    assert main(["run", "contrast_synthesis", "--config", "evaluate", *overrides]) == 0
    # MONAI's own runner, from the bundle folder, as a MONAI user would start it
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        "configs/inference.json",
        "--bundle_root",
        ".",
        "--output_dir",
        str(trained["out"]),
        "--spatial_size",
        f"[{SIZE}, {SIZE}]",
        "--prediction_dir",
        str(tmp_path / "monai"),
    ]
    proc = subprocess.run(command, cwd=CONFIGS.parent, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "monai" / "panels").glob("*.png"))


def test_multi_gpu_overlay_sets_distributed(tmp_path: Path) -> None:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "multi_gpu_train.json")])
    parser["output_dir"] = str(tmp_path)
    parser["datalist"] = str(tmp_path / "d.json")
    config = parser.get_parsed_content("train_config")
    assert config.distributed is True and config.epochs == parser["train#epochs"]
