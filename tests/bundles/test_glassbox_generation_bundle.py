"""The glassbox_generation bundle: metadata, fit the prior (train), sample (inference), quality report (evaluate)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from monai.bundle import verify_metadata

from pipelines.bundle_runner import BUNDLES_DIR, run_bundle
from pipelines.cli import main

CONFIGS = BUNDLES_DIR / "glassbox_generation" / "configs"
ROOT = Path(__file__).resolve().parents[2]


def test_metadata_verifies() -> None:
    verify_metadata(
        meta_file=str(CONFIGS / "metadata.json"),
        filepath=str(BUNDLES_DIR / "schema" / "metadata_schema.json"),
    )


def test_train_sample_and_evaluate(untrained_run: Path, tmp_path: Path) -> None:
    common = {"model": str(untrained_run), "output_dir": str(tmp_path)}
    fitted = run_bundle("glassbox_generation", "train", common)
    assert fitted["classes"] == [0, 1] and fitted["images"] > 0
    assert (untrained_run / "latent_prior.npz").is_file()
    sampled = run_bundle("glassbox_generation", "inference", {**common, "n": 6, "class": 1})
    data = json.loads(Path(sampled["datalist"]).read_text())
    records = [r for section in data.values() for r in section]
    assert len(records) == 6 and all(r["synthetic"] is True and r["label"] == 1 for r in records)
    metrics = run_bundle("glassbox_generation", "evaluate", {**common, "track": False})
    assert {"fid", "fid_floor", "precision", "memorisation_flagged", "class_fidelity_1"} <= set(metrics)
    assert (tmp_path / "eval" / "report.html").is_file()


def test_medglass_run_and_monai_bundle_run(untrained_run: Path, tmp_path: Path) -> None:
    argv = ["run", "glassbox_generation", "--config", "inference", "--model", str(untrained_run)]
    assert main([*argv, "--output_dir", str(tmp_path / "a"), "--n", "3"]) == 0
    assert (tmp_path / "a" / "samples" / "datalist.json").is_file()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json"]
    command += [
        "--bundle_root",
        ".",
        "--model",
        str(untrained_run),
        "--output_dir",
        str(tmp_path / "b"),
        "--n",
        "3",
    ]
    proc = subprocess.run(command, cwd=CONFIGS.parent, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((tmp_path / "b" / "samples" / "images").glob("*.png"))) == 3


def test_train_refines_the_decoder_and_inference_samples_the_refined_run(
    untrained_run: Path, tmp_path: Path
) -> None:
    from pipelines.ood_reference import file_sha256

    common = {"model": str(untrained_run), "output_dir": str(tmp_path)}
    refine = {
        "refine_decoder": True,
        "refine#epochs": 1,
        "refine#batch_size": 8,
        "refine#max_images": 16,
        "refine#val_samples": 8,
        "refine#disc_channels": 8,
        "refine#disc_layers": 2,
        "refine#tracking_uri": f"sqlite:///{tmp_path / 'mlruns.db'}",
        "prior#n_components": 8,
    }
    fitted = run_bundle("glassbox_generation", "train", {**common, **refine})
    refined = tmp_path / "refined"
    assert fitted["model"] == str(refined) and fitted["classes"] == [0, 1]
    assert (
        fitted["refinement"]["epochs_completed"] == 1 and fitted["refinement"]["frozen_tensors_changed"] == 0
    )
    assert (refined / "latent_prior.npz").is_file() and (refined / "grids" / "epoch_001.png").is_file()
    sampled = run_bundle("glassbox_generation", "inference", {**common, "n": 2})
    settings = json.loads((Path(sampled["datalist"]).parent / "generation.json").read_text())["settings"]
    assert settings["model"] == file_sha256(refined / "best.pt")  # drawn by the refined decoder
