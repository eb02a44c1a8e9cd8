"""3D detection end to end on brain3d phantoms (32³): train, evaluate, infer (boxes in world mm)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from phantoms import PhantomConfig, generate_cohort
from pipelines.cli import main


@pytest.fixture(scope="module")
def cohort3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("det3d")
    config = PhantomConfig(
        kind="brain3d",
        image_format="nifti",
        n=4,
        seed=2,
        size=32,
        lesion_prevalence=1.0,
        lesions_per_image=(1, 2),
        split_fractions=(0.5, 0.25, 0.25),
    )
    generate_cohort(config, out, progress=False)
    return out / "datalist.json"


def test_3d_train_evaluate_infer(cohort3d: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    train = [
        "detect",
        "train",
        "--datalist",
        str(cohort3d),
        "--out",
        str(run),
        "--spatial-size",
        "32",
        "32",
        "32",
    ]
    fast = ["--epochs", "1", "--batch-size", "2", "--fpn-channels", "8", "--figures", "1", "--no-progress"]
    assert main([*train, *fast, "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns.db'}"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("val_map_0.1", "val_map_0.1_0.5", "val_cpm", "test_cpm", "test_froc_0.125"):
        assert metrics[key] is not None and 0.0 <= metrics[key] <= 1.0, key
    assert (run / "figures" / "epoch_001_0.png").is_file()

    assert main(["detect", "evaluate", "--model", str(run), "--out", str(tmp_path / "ev")]) == 0
    evaluation = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert evaluation["images"] == 1 and evaluation["cpm"] == pytest.approx(metrics["test_cpm"])

    assert (
        main(
            [
                "detect",
                "infer",
                "--model",
                str(run),
                "--datalist",
                str(cohort3d),
                "--out",
                str(tmp_path / "inf"),
            ]
        )
        == 0
    )
    [boxes_file] = sorted((tmp_path / "inf").glob("*_boxes.json"))
    doc = json.loads(boxes_file.read_text())
    affine = nib.load(doc["source"]).affine
    assert doc["image_shape"] == [32, 32, 32] and np.allclose(doc["affine"], affine)
    assert doc["boxes"], "an untrained detector still returns its best-scoring boxes"
    for box in doc["boxes"]:
        index = np.array(box["index_box"])
        assert (index >= 0).all() and (index <= 32).all()
        corners = affine @ np.array([[*index[:3], 1.0], [*index[3:], 1.0]]).T  # world corners of the box
        assert np.allclose(np.minimum(*corners[:3].T), box["world_min"], atol=1e-3)
        assert np.allclose(np.maximum(*corners[:3].T), box["world_max"], atol=1e-3)
