"""Tests of ``pipelines/decoder_refinement.py``: a 1-epoch refinement, its run folder and MLflow run, resume, bad input.

One module fixture refines the shared untrained run (``untrained_run``: 40 brain2d phantoms at
32×32) for one epoch on 16 images; the other tests read it or resume a copy of it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
import torch

from pipelines.cli import main
from pipelines.decoder_refinement import refine_decoder
from pipelines.decoder_refinement_config import REFINE_SETTINGS_FILE, RefineConfig
from pipelines.generation import generate
from pipelines.mlflow_tracking import RUN_ID_FILE
from pipelines.trained_model import TrainedModel, load_trained_model


def _config(model: Path, out: Path, tracking: Path, **changes) -> RefineConfig:
    settings = {
        "epochs": 1,
        "batch_size": 8,
        "max_images": 16,
        "val_samples": 8,
        "disc_channels": 8,
        "disc_layers": 2,
        "n_components": 8,
        "feature_weight": 1.0,
        "device": "cpu",
        "tracking_uri": f"sqlite:///{tracking}",
    }
    return RefineConfig(model=str(model), out_dir=out, **{**settings, **changes})


@pytest.fixture(scope="module")
def refined(untrained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Path]:
    """``(refined folder, its metrics, MLflow database)`` of a 1-epoch refinement."""
    root = tmp_path_factory.mktemp("refine")
    tracking = root / "mlruns.db"
    out = root / "refined"
    return out, refine_decoder(_config(untrained_run, out, tracking)), tracking


def _state(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("model", state)


def test_frozen_parts_are_bitwise_unchanged(refined: tuple[Path, dict, Path], untrained_run: Path) -> None:
    out, metrics, _ = refined
    before, after = _state(untrained_run / "best.pt"), _state(out / "best.pt")
    assert set(before) == set(after)
    frozen = [k for k in before if not k.startswith("decoder.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    # the run measures the same on the test split
    assert metrics["frozen_tensors_changed"] == 0 and metrics["decoder_tensors_changed"] > 0
    assert metrics["latent_drift_max"] == 0.0 and metrics["mu_drift_max"] == 0.0
    assert metrics["test_auc_before"] == metrics["test_auc_after"]
    assert metrics["epochs_completed"] == 1 and metrics["best_epoch"] == 1


def test_refined_folder_loads_and_generates(refined: tuple[Path, dict, Path], tmp_path: Path) -> None:
    out, _, _ = refined
    trained = load_trained_model(out)
    state = _state(out / "best.pt")
    assert all(torch.equal(v, state[k]) for k, v in trained.network.state_dict().items())
    settings = json.loads((out / REFINE_SETTINGS_FILE).read_text())
    assert settings["source"]["sha256"] and settings["settings"]["epochs"] == 1
    summary = generate(out, tmp_path / "samples", n=3, cls=1, seed=0)
    records = json.loads(Path(summary["datalist"]).read_text())["training"]
    assert len(records) >= 2 and all(r["synthetic"] is True for r in records)
    assert (out / "grids" / "epoch_001.png").is_file()


def test_mlflow_run_holds_losses_grid_and_model(refined: tuple[Path, dict, Path]) -> None:
    out, metrics, tracking = refined
    run_id = (out / RUN_ID_FILE).read_text().strip()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tracking}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["refine_epochs"] == "1"
    for name in ("loss_recon", "loss_feature", "loss_adv", "loss_d", "val_fid"):
        history = client.get_metric_history(run_id, name)
        assert [m.step for m in history] == [1] and history[0].value == pytest.approx(metrics[name])
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"epoch_001.png", "config.json", "metrics.json", REFINE_SETTINGS_FILE} <= artifacts
    logged = load_trained_model(run_id, tracking_uri=f"sqlite:///{tracking}")
    refined_state = _state(out / "best.pt")
    assert all(torch.equal(v.cpu(), refined_state[k]) for k, v in logged.network.state_dict().items())


def test_resume_continues_as_an_uninterrupted_run(
    refined: tuple[Path, dict, Path], untrained_run: Path, tmp_path: Path
) -> None:
    out, _, tracking = refined
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    metrics = refine_decoder(_config(untrained_run, resumed, tracking, epochs=2))
    assert metrics["start_epoch"] == 1 and metrics["epochs_completed"] == 2
    assert (resumed / RUN_ID_FILE).read_text() == (out / RUN_ID_FILE).read_text()  # the same MLflow run
    straight = refine_decoder(_config(untrained_run, tmp_path / "straight", tracking, epochs=2))
    a, b = _state(resumed / "last.pt"), _state(tmp_path / "straight" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics["loss_recon"] == straight["loss_recon"]


def test_bad_input_is_refused_and_nothing_is_written(
    untrained_run: Path, tmp_path: Path, monkeypatch
) -> None:
    tracking = tmp_path / "mlruns.db"
    with pytest.raises(ValueError, match=r"is the original run's folder"):
        refine_decoder(_config(untrained_run, untrained_run, tracking))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("not a refinement")
    with pytest.raises(ValueError, match=r"already holds files of another run \(notes.txt\)"):
        refine_decoder(_config(untrained_run, other, tracking))
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / REFINE_SETTINGS_FILE).write_text(json.dumps({"source": {"model": "x", "sha256": "0" * 64}}))
    with pytest.raises(ValueError, match=r"holds the refinement of another model"):
        refine_decoder(_config(untrained_run, foreign, tracking))

    real = load_trained_model(untrained_run)
    no_decoder = TrainedModel(network=torch.nn.Linear(2, 2), config=real.config, source="linear-run")
    monkeypatch.setattr("pipelines.decoder_refinement.load_trained_model", lambda *a, **k: no_decoder)
    with pytest.raises(ValueError, match=r"model linear-run: Linear has no decoder to refine"):
        refine_decoder(_config(untrained_run, tmp_path / "x", tracking))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"epochs": 0}, r"epochs must be an int >= 1, got 0"),
        ({"prior_share": 1.0}, r"prior_share must be in \[0, 1\), got 1.0"),
        ({"recon_weight": 0.0, "feature_weight": 0.0}, r"must not both be 0"),
        ({"adversarial_weight": -1.0}, r"adversarial_weight must be a number >= 0, got -1.0"),
        ({"max_images": 1}, r"max_images must be None or an int >= 2, got 1"),
        ({"device": "tpu"}, r"device must be 'auto', 'cpu' or 'cuda', got 'tpu'"),
    ],
)
def test_settings_are_checked(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RefineConfig(model="run", out_dir="out", **changes)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(
        [
            "refine-decoder",
            "--model",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "r"),
            "--epochs",
            "2",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an existing run folder" in err[0]
    assert not (tmp_path / "r").exists()
