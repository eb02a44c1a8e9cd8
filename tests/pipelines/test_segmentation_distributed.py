"""``distributed=True`` segmentation under torchrun: two gloo ranks on the CPU, metrics over the whole splits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from phantoms import PhantomConfig, generate_cohort

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # two processes; tests/bundles/test_glassbox_segmentation_bundle.py checks the overlay's setting
def test_two_ranks_train_validate_and_test_every_image(tmp_path: Path) -> None:
    generate_cohort(PhantomConfig(kind="brain2d", n=20, seed=4, size=32), tmp_path / "cohort", progress=False)
    datalist = tmp_path / "cohort" / "datalist.json"
    sections = json.loads(datalist.read_text())
    config = {
        "datalist": str(datalist),
        "out_dir": str(tmp_path / "run"),
        "patch_size": [32, 32],
        "epochs": 1,
        "batch_size": 2,
        "device": "cpu",
        "figures": 0,
        "tracking_uri": f"sqlite:///{tmp_path}/mlruns.db",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "pipelines.segmentation_training",
        str(tmp_path / "config.json"),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_completed"] == 1
    # each rank scored its share: the gathered counts cover every image once
    assert metrics["val_images"] == len(sections["validation"])
    assert metrics["test_images"] == len(sections["test"])
