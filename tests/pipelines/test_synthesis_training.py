"""Tests of pipelines/synthesis_training.py and pipelines/synthesis_inference.py on tiny generated pairs.

The pairs are 32×32 PNGs: a noisy disc (the body) as source, the same image plus a bright disc
inside the lesion mask as target, written here (no phantom generator needed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.synthesis_config import SynthesisConfig
from pipelines.synthesis_inference import synthesize
from pipelines.synthesis_training import train_synthesis

SIZE = 32


def write_pairs(root: Path, n: int = 12, size: int = SIZE, seed: int = 0) -> Path:
    """``n`` source/target/mask PNG triples and a datalist (8 training, 2 validation, rest test)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    body = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2
    records = []
    for i in range(n):
        source = np.where(body, 100 + rng.normal(0, 5, (size, size)), 0).clip(0, 255)
        cy, cx = rng.integers(11, size - 11, 2)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < 9
        target = (source + 80 * mask).clip(0, 255)
        for name, array in (("source", source), ("target", target), ("mask", 255 * mask)):
            Image.fromarray(array.astype(np.uint8)).save(root / f"{name}_{i:02d}.png")
        records.append(
            {"id": f"case{i:02d}", "source": f"source_{i:02d}.png", "target": f"target_{i:02d}.png",
             "mask": f"mask_{i:02d}.png"}
        )  # fmt: skip
    datalist = root / "datalist.json"
    datalist.write_text(
        json.dumps({"training": records[:8], "validation": records[8:10], "test": records[10:]})
    )
    return datalist


def tiny_config(datalist: Path, out_dir: Path, tracking: Path, **overrides) -> SynthesisConfig:
    values = dict(
        datalist=datalist,
        out_dir=out_dir,
        spatial_size=(SIZE, SIZE),
        channels=(8, 16, 32),
        disc_channels=8,
        disc_layers=2,
        epochs=1,
        batch_size=4,
        lr=1e-3,
        adversarial_weight=1.0,  # the pix2pix path (critic and all); the default is L1 alone
        tracking_uri=f"sqlite:///{tracking}",
    )
    values.update(overrides)
    return SynthesisConfig(**values)


def _saved_epoch(checkpoint: Path) -> int:
    """The epoch an Ignite trainer state in ``checkpoint`` stands at (Ignite saves iterations)."""
    state = torch.load(checkpoint, weights_only=True)["trainer"]
    return state["iteration"] // state["epoch_length"]


@pytest.fixture(autouse=True)
def _no_shared_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("pairs"))


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow SQLite file for the module (creating the tables costs a second or two each time)."""
    return tmp_path_factory.mktemp("mlflow") / "mlruns.db"


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, pairs: Path, tracking: Path
) -> tuple[Path, Path, dict, dict]:
    """A run trained for 1 epoch, then resumed to 2: ``(run folder, tracking db, first, second)``."""
    root = tmp_path_factory.mktemp("synthesis")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        config = tiny_config(pairs, root / "run", tracking)
        first = train_synthesis(config)
        assert _saved_epoch(root / "run" / "last.pt") == 1
        config.epochs = 2
        second = train_synthesis(config)
        again = train_synthesis(config)  # every epoch done: nothing trains, the stored numbers return
        assert again["epochs_completed"] == 2 and again["val_ssim"] == pytest.approx(second["val_ssim"])
        assert _saved_epoch(root / "run" / "last.pt") == 2
    return root / "run", tracking, first, second


def _strict_json(path: Path) -> dict:
    def refuse(name: str) -> None:
        raise AssertionError(f"{path} holds {name}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_one_epoch_writes_checkpoints_config_and_metrics(trained: tuple) -> None:
    run, _, first, _ = trained
    assert first["epochs_completed"] == 1 and first["start_epoch"] == 0
    for name in ("loss_g", "loss_l1", "loss_adv", "loss_d", "val_ssim", "val_psnr", "val_mae", "val_lesion_ssim",
                 "val_lesion_mae", "val_enhancement_correlation", "val_enhancement_dice", "best_score",
                 "test_ssim", "test_lesion_mae"):  # fmt: skip
        assert name in first, name
    assert 0.0 < first["val_ssim"] <= 1.0 and math.isfinite(first["loss_g"])
    for name in ("config.json", "last.pt", "best.pt", "metrics.json", "panels/epoch_001.png"):
        assert (run / name).is_file(), name
    assert set(torch.load(run / "last.pt", weights_only=True)) == {
        "generator", "critic", "opt_g", "opt_d", "trainer", "best"
    }  # fmt: skip
    assert set(torch.load(run / "best.pt", weights_only=True)) == {"generator"}
    saved = SynthesisConfig.from_json(json.loads((run / "config.json").read_text()), base=run)
    assert saved.out_dir == run and saved.channels == (8, 16, 32) and saved.l1_weight == 100.0


def test_second_call_resumes_from_last_checkpoint(trained: tuple) -> None:
    run, tracking, first, second = trained
    assert second["start_epoch"] == 1  # continued after the first call's epoch
    assert second["epochs_completed"] == 2
    assert _saved_epoch(run / "last.pt") == 2
    assert (run / "panels" / "epoch_002.png").is_file()
    assert second["best_score"] >= first["best_score"]
    stored = _strict_json(run / "metrics.json")
    assert stored["epochs_completed"] == 2
    # one MLflow run for the folder, with a value per epoch
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tracking}")
    run_id = (run / "mlflow_run_id.txt").read_text().strip()
    history = client.get_metric_history(run_id, "val_ssim")
    assert sorted(m.step for m in history) == [1, 2]
    assert {m.step for m in client.get_metric_history(run_id, "loss_l1")} == {1, 2}
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"epoch_001.png", "epoch_002.png", "metrics.json", "config.json"} <= artifacts


def test_l1_only_trains_without_a_critic(tmp_path: Path, pairs: Path, tracking: Path) -> None:
    config = tiny_config(pairs, tmp_path / "run", tracking, adversarial_weight=0.0, channels=(4, 8))
    result = train_synthesis(config)
    assert result["loss_adv"] == 0.0 and result["loss_d"] == 0.0
    assert "critic" not in torch.load(tmp_path / "run" / "last.pt", weights_only=True)


def test_mismatched_shapes_are_refused_naming_both_files(tmp_path: Path, pairs: Path) -> None:
    Image.fromarray(np.zeros((24, SIZE), np.uint8)).save(tmp_path / "small_target.png")
    data = json.loads(pairs.read_text())
    for records in data.values():  # absolute paths: the datalist is written elsewhere
        for record in records:
            record.update({k: str(pairs.parent / record[k]) for k in ("source", "target", "mask")})
    data["training"][3]["target"] = str(tmp_path / "small_target.png")
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"source_03\.png and .*small_target\.png: .*same spatial shape"):
        train_synthesis(tiny_config(datalist, tmp_path / "run", tmp_path / "mlruns.db"))


def test_mismatched_affines_are_refused_naming_both_files(tmp_path: Path) -> None:
    image = np.random.default_rng(0).random((SIZE, SIZE, 4)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(image, np.eye(4)), str(tmp_path / "pre.nii.gz"))
    nibabel.save(nibabel.Nifti1Image(image, np.diag([2.0, 2.0, 2.0, 1.0])), str(tmp_path / "post.nii.gz"))
    record = {"source": "pre.nii.gz", "target": "post.nii.gz"}
    (tmp_path / "d.json").write_text(json.dumps({"training": [record], "validation": [record]}))
    config = tiny_config(tmp_path / "d.json", tmp_path / "run", tmp_path / "mlruns.db", spatial_size=(16, 16, 16),
                         channels=(4, 8))  # fmt: skip
    with pytest.raises(ValueError, match=r"pre\.nii\.gz and .*post\.nii\.gz: .*same affine"):
        train_synthesis(config)


def test_inference_on_nifti_keeps_the_source_grid(trained: tuple, tmp_path: Path) -> None:
    run = trained[0]
    affine = np.array([[0.8, 0, 0, -12.0], [0, 0.9, 0, 7.5], [0, 0, 3.0, 1.0], [0, 0, 0, 1]])
    source = np.zeros((40, 36), np.float32)
    source[8:32, 6:30] = 900.0  # another size and intensity unit than training: resized and scaled back
    nibabel.save(nibabel.Nifti1Image(source, affine), str(tmp_path / "pre.nii.gz"))
    result = synthesize(run, tmp_path / "pre.nii.gz", tmp_path / "out")
    assert result["metrics"] is None and result["report"] is None  # no target
    (case,) = result["cases"]
    assert Path(case["panel"]).is_file() and Path(case["panel"]).suffix == ".png"
    written = nibabel.load(case["synthetic"])
    assert written.shape == (40, 36)
    np.testing.assert_allclose(written.affine, affine)
    synthetic = written.get_fdata()
    assert np.isfinite(synthetic).all()
    assert 300 < synthetic[12:28, 10:26].mean() < 1500  # back in the source's units (near 900)


def test_inference_on_datalist_writes_metrics_and_report(trained: tuple, pairs: Path, tmp_path: Path) -> None:
    run = trained[0]
    result = synthesize(run, pairs, tmp_path / "out")
    assert [c["id"] for c in result["cases"]] == ["case10", "case11"]  # the test section
    for case in result["cases"]:
        assert Path(case["panel"]).is_file() and Path(case["synthetic"]).is_file()
    summary = result["metrics"]
    assert set(summary) == {"model", "source_baseline"}
    assert summary["source_baseline"]["lesion_mae"] > 0.3  # the bright disc is missing from the source
    stored = _strict_json(tmp_path / "out" / "metrics.json")
    assert len(stored["cases"]) == 2 and "lesion_ssim" in stored["summary"]["model"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "whole image" in page and "lesion" in page and "panels/case10.png" in page


def test_inference_refuses_a_folder_without_a_model(tmp_path: Path, pairs: Path) -> None:
    with pytest.raises(ValueError, match=r"config\.json: file not found"):
        synthesize(tmp_path, pairs, tmp_path / "out")


def test_resumed_run_ends_with_the_uninterrupted_weights(
    trained: tuple, pairs: Path, tracking: Path, tmp_path: Path
) -> None:
    """Every epoch is seeded from (seed, epoch): the fixture's 1 + 1 epochs train exactly as 2 at once."""
    resumed_run = trained[0]
    train_synthesis(tiny_config(pairs, tmp_path / "straight", tracking, epochs=2))
    straight = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    resumed = torch.load(resumed_run / "last.pt", weights_only=True)
    for network in ("generator", "critic"):
        for name, tensor in straight[network].items():
            torch.testing.assert_close(resumed[network][name], tensor, msg=f"{network}.{name}")


def test_best_checkpoint_is_the_epoch_with_the_lowest_lesion_error(trained: tuple) -> None:
    """select_by="lesion_mae" (default): best.pt is the epoch whose validation in-lesion MAE is lowest."""
    import mlflow

    run, tracking, _, second = trained
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tracking}")
    run_id = (run / "mlflow_run_id.txt").read_text().strip()
    history = {m.step: m.value for m in client.get_metric_history(run_id, "val_lesion_mae")}
    best_step = min(history, key=history.get)
    assert second["best_epoch"] == best_step
    assert second["best_score"] == pytest.approx(-history[best_step], rel=1e-5)
    with pytest.raises(
        ValueError, match=r"select_by must be one of \('lesion_mae', 'enhancement_dice', 'ssim'\)"
    ):
        SynthesisConfig(datalist="d.json", out_dir="run", select_by="psnr")
