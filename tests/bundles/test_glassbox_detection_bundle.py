"""The glassbox_detection bundle: metadata, network I/O, ckpt_export, train → evaluate → infer on phantoms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, verify_metadata, verify_net_in_out

from pipelines.bundle_runner import BUNDLES_DIR, run_bundle
from pipelines.cli import main
from pipelines.detection_config import DetectionConfig

CONFIGS = BUNDLES_DIR / "glassbox_detection" / "configs"
ROOT = Path(__file__).resolve().parents[2]
SIZE = 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("detection") / "run"
    overrides = {
        "output_dir": str(out),
        "dataset#cohort_n": 16,
        "train#spatial_size": [SIZE, SIZE],
        "train#epochs": 1,
        "train#batch_size": 4,
        "train#device": "cpu",
        "train#tracking_uri": f"sqlite:///{out.parent}/mlruns.db",
    }
    metrics = run_bundle("glassbox_detection", "train", overrides)
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
    parser["train#label_fraction"] = 0.1  # not declared by the bundle: still an override
    config = parser.get_parsed_content("train_config")
    assert isinstance(config, DetectionConfig)
    assert config.label_fraction == 0.1 and config.score_thresh == DetectionConfig.score_thresh
    assert config.spatial_size == (64, 64) and config.size == "tiny"


def test_train_evaluate_infer_and_export(trained: dict, tmp_path: Path) -> None:
    out = trained["out"]
    for name in ("last.pt", "config.json", "metrics.json"):
        assert (out / name).is_file(), name
    assert trained["metrics"]["epochs_completed"] == 1
    evaluation = run_bundle("glassbox_detection", "evaluate", trained["overrides"])
    for key in ("map_0.1", "map_0.1_0.5", "cpm", "froc_0.125", "froc_8", "sensitivity", "fp_per_image"):
        assert key in evaluation, key
    stored = json.loads((out / "eval" / "metrics.json").read_text())
    assert (
        stored["images"]
        == evaluation["images"]
        == len(json.loads((out / "cohort" / "datalist.json").read_text())["test"])
    )

    # the exported network_def (traced: RetinaNet's heads take lists) equals the eager adapter with the run's weights
    exported = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(out / "last.pt"),
        key_in_ckpt="network",
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "inference.json"),
        use_trace=True,
        input_shape=[1, 1, SIZE, SIZE],
        **{"spatial_size": [SIZE, SIZE]},
    )
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser["spatial_size"] = [SIZE, SIZE]
    eager = parser.get_parsed_content("network_def").eval()
    eager.load_state_dict(torch.load(out / "last.pt", weights_only=True)["network"])
    x = torch.rand(2, 1, SIZE, SIZE)
    with torch.no_grad():
        maps = eager(x)
        torch.testing.assert_close(torch.jit.load(str(exported))(x), maps)
    assert maps.shape == (2, 15, SIZE // 2, SIZE // 2)


def test_medglass_run_and_monai_bundle_run(trained: dict, tmp_path: Path) -> None:
    out = str(trained["out"])
    overrides = [
        "--output_dir",
        out,
        "--spatial_size",
        f"[{SIZE}, {SIZE}]",
        "--prediction_dir",
        str(tmp_path / "a"),
    ]
    assert main(["run", "glassbox_detection", "--config", "inference", *overrides]) == 0
    test = json.loads((trained["out"] / "cohort" / "datalist.json").read_text())["test"]
    files = sorted((tmp_path / "a").glob("*_boxes.json"))
    assert len(files) == len(test)
    for path in files:
        doc = json.loads(path.read_text())
        assert doc["units"] == "mm" and doc["image_shape"] == [SIZE, SIZE]
        assert all(0 <= v <= SIZE for box in doc["boxes"] for v in box["index_box"])
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
        out,
        "--spatial_size",
        f"[{SIZE}, {SIZE}]",
        "--prediction_dir",
        str(tmp_path / "m"),
    ]
    proc = subprocess.run(command, cwd=CONFIGS.parent, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((tmp_path / "m").glob("*_boxes.json"))) == len(test)
