"""The glassbox_segmentation bundle: metadata, network I/O, export, train → evaluate → infer through both runners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out
from PIL import Image

from networks.segmentation import GlassBoxSegmenter
from pipelines.bundle_runner import BUNDLES_DIR, run_bundle
from pipelines.cli import main
from pipelines.segmentation_config import SegmentationConfig

CONFIGS = BUNDLES_DIR / "glassbox_segmentation" / "configs"
ROOT = Path(__file__).resolve().parents[2]
SIZE = 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("segmentation") / "run"
    overrides = {
        "output_dir": str(out),
        "dataset#cohort_n": 12,
        "train#patch_size": [SIZE, SIZE],
        "train#epochs": 1,
        "train#batch_size": 4,
        "train#device": "cpu",
        "train#tracking_uri": f"sqlite:///{out.parent}/mlruns.db",
        "train#figures": 1,
    }
    metrics = run_bundle("glassbox_segmentation", "train", overrides)
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
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 2


def test_train_section_keeps_the_config_defaults(tmp_path: Path) -> None:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser["output_dir"] = str(tmp_path)
    parser["datalist"] = str(tmp_path / "d.json")
    parser["train#nsd_tolerance"] = 2.0  # not declared by the bundle: still an override
    config = parser.get_parsed_content("train_config")
    assert isinstance(config, SegmentationConfig)
    assert config.nsd_tolerance == 2.0 and config.lr == SegmentationConfig.lr
    assert config.patch_size == (64, 64) and config.size == "tiny" and config.distributed is False
    overlay = ConfigParser()
    overlay.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "multi_gpu_train.json")])
    overlay["output_dir"] = str(tmp_path)
    overlay["datalist"] = str(tmp_path / "d.json")
    assert overlay.get_parsed_content("train_config").distributed is True


def test_train_evaluate_infer_and_export(trained: dict, tmp_path: Path) -> None:
    out = trained["out"]
    for name in ("best.pt", "last.pt", "config.json", "metrics.json"):
        assert (out / name).is_file(), name
    assert trained["metrics"]["epochs_completed"] == 1
    evaluation = run_bundle("glassbox_segmentation", "evaluate", trained["overrides"])
    for key in ("test_dice", "test_mean_dice", "test_hd95", "test_nsd", "test_lesion_sensitivity"):
        assert key in evaluation, key
    stored = json.loads((out / "eval" / "metrics.json").read_text())
    assert stored["test_dice"] == pytest.approx(evaluation["test_dice"])

    datalist = out / "cohort" / "datalist.json"
    test = json.loads(datalist.read_text())["test"]
    result = run_bundle(
        "glassbox_segmentation",
        "inference",
        {"output_dir": str(out), "patch_size": [SIZE, SIZE], "prediction_dir": str(tmp_path / "pred")},
    )
    assert len(result["cases"]) == len(test) > 0
    for case, record in zip(result["cases"], test, strict=True):
        mask = nib.load(case["nifti_mask"])
        source = np.asarray(Image.open(datalist.parent / record["image"]))
        assert mask.shape == source.shape[::-1]  # on the image's grid (x, y)

    # TorchScript export of the trained weights gives the network's logits
    ts = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts),
        ckpt_file=str(out / "best.pt"),
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "inference.json"),
        patch_size=[SIZE, SIZE],
    )
    net = GlassBoxSegmenter(spatial_dims=2, size="tiny").eval()
    net.load_state_dict(
        torch.load(out / "best.pt", weights_only=True)
    )  # Ignite saves a one-item dict unwrapped
    x = torch.rand(1, 1, SIZE, SIZE)
    assert torch.allclose(torch.jit.load(str(ts))(x), net(x), atol=1e-5)


def test_medglass_run_and_monai_bundle_run(trained: dict, tmp_path: Path) -> None:
    overrides = ["--output_dir", str(trained["out"]), "--train#patch_size", f"[{SIZE}, {SIZE}]"]
    assert main(["run", "glassbox_segmentation", "--config", "evaluate", *overrides]) == 0
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
        "--patch_size",
        f"[{SIZE}, {SIZE}]",
        "--prediction_dir",
        str(tmp_path / "monai"),
    ]
    proc = subprocess.run(command, cwd=CONFIGS.parent, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "monai").glob("*_mask.nii.gz"))
