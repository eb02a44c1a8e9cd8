"""Tests of pipelines/trained_model.py: run folders, checkpoints, MLflow references, bad refs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from networks.glassbox import GlassBoxNet
from networks.spatial_glassbox import SpatialGlassBoxNet
from pipelines.trained_model import load_trained_model


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_run_folder_and_checkpoint_load_the_saved_weights(untrained_run: Path) -> None:
    saved = torch.load(untrained_run / "best.pt", weights_only=True)["model"]
    for ref in (untrained_run, untrained_run / "best.pt"):
        trained = load_trained_model(ref)
        assert isinstance(trained.network, SpatialGlassBoxNet)  # the default core
        assert not trained.network.training
        assert trained.spatial_size == (32, 32)
        assert trained.network.latent_dim == 8
        assert trained.checkpoint == untrained_run / "best.pt"
        state = trained.network.state_dict()
        assert all(torch.equal(state[k], saved[k]) for k in saved)


def test_run_folder_rebuilds_the_pooling_it_was_trained_with(untrained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "mean_pool"
    run.mkdir()
    config = json.loads((untrained_run / "config.json").read_text()) | {
        "latent_pool": "mean",
        "latent": "vector",
    }
    (run / "config.json").write_text(json.dumps(config))
    torch.manual_seed(1)
    net = GlassBoxNet(
        spatial_dims=2, img_size=(32, 32), latent_dim=8, latent_pool="mean", size=config["size"]
    )
    torch.save({"model": net.state_dict()}, run / "best.pt")
    trained = load_trained_model(run)
    assert trained.network.latent_pool == "mean" and trained.config.latent_pool == "mean"
    assert _same_weights(trained.network, net)
    (run / "config.json").write_text(json.dumps(config | {"latent_pool": "attention"}))
    with pytest.raises(ValueError, match=r"does not fit the network of its config.json"):
        load_trained_model(run)  # the mean-pool checkpoint under an attention-pool config


def test_run_folder_rebuilds_the_pooled_logits_setting_it_was_trained_with(
    untrained_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "both_branches"
    shutil.copytree(untrained_run, run)
    config = json.loads((run / "config.json").read_text()) | {"latent": "vector"}
    torch.manual_seed(0)
    torch.save(
        {
            "model": GlassBoxNet(
                spatial_dims=2, img_size=(32, 32), latent_dim=8, size=config["size"]
            ).state_dict()
        },
        run / "best.pt",
    )
    (run / "config.json").write_text(json.dumps(config))
    assert load_trained_model(run).network.pooled_logits  # default: on
    (run / "config.json").write_text(json.dumps(config | {"pooled_logits": False}))
    trained = load_trained_model(run)
    assert trained.config.pooled_logits is False and not trained.network.pooled_logits
    common = {"spatial_dims": 2, "img_size": (32, 32), "latent_dim": 8, "size": config["size"]}
    reference = GlassBoxNet(pooled_logits=False, **common).eval()
    reference.load_state_dict(trained.network.state_dict())
    image = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(trained.network(image)["logits"], reference(image)["logits"], atol=1e-6)
        protected = GlassBoxNet(**common).eval()
        protected.load_state_dict(trained.network.state_dict())
        assert not torch.allclose(protected(image)["logits"], reference(image)["logits"], atol=1e-4)


def test_folder_prefers_best_over_last_and_reads_run_id(untrained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(untrained_run, run)
    zeros = {
        k: torch.zeros_like(v) for k, v in torch.load(run / "best.pt", weights_only=True)["model"].items()
    }
    torch.save({"model": zeros}, run / "last.pt")
    (run / "mlflow_run_id.txt").write_text("0123456789abcdef0123456789abcdef\n")
    trained = load_trained_model(run)
    assert trained.checkpoint.name == "best.pt"
    assert trained.run_id == "0123456789abcdef0123456789abcdef"
    (run / "best.pt").unlink()
    assert load_trained_model(run).checkpoint.name == "last.pt"


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("missing", r"not an existing run folder or checkpoint"),
        ("no_checkpoint", r"folder has no checkpoint \(looked for best.pt, last.pt\)"),
        ("no_config", r"no config.json at"),
        ("bad_config", r"not a readable JSON file"),
        ("bad_checkpoint", r"not a readable checkpoint"),
        ("wrong_shape", r"does not fit the network of its config.json"),
    ],
)
def test_bad_references_name_the_problem(untrained_run: Path, tmp_path: Path, setup: str, match: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(untrained_run, run)
    ref: Path = run
    if setup == "missing":
        ref = tmp_path / "nowhere"
    elif setup == "no_checkpoint":
        (run / "best.pt").unlink()
    elif setup == "no_config":
        (run / "config.json").unlink()
    elif setup == "bad_config":
        (run / "config.json").write_text("{not json")
    elif setup == "bad_checkpoint":
        (run / "best.pt").write_bytes(b"garbage")
    elif setup == "wrong_shape":
        config = json.loads((run / "config.json").read_text())
        config["latent_dim"] = 12  # the grid keeps its 8 channels, the global code grows
        (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=match):
        load_trained_model(ref)


def test_unknown_mlflow_run_is_a_clear_error(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    with pytest.raises(ValueError, match=r"could not load it from MLflow"):
        load_trained_model("0123456789abcdef0123456789abcdef", tracking_uri=uri)


@pytest.mark.integration
def test_mlflow_run_reference_loads_the_logged_model(small_cohort: Path, tmp_path: Path, monkeypatch) -> None:
    from pipelines.training import train
    from pipelines.training_config import TrainConfig

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    out = tmp_path / "run"
    train(
        TrainConfig(
            datalist=small_cohort,
            out_dir=out,
            epochs=1,
            batch_size=8,
            spatial_size=(32, 32),
            tracking_uri=uri,
        )
    )
    run_id = (out / "mlflow_run_id.txt").read_text().strip()
    from_files = load_trained_model(out)
    for ref in (run_id, f"runs:/{run_id}/model"):
        trained = load_trained_model(ref, tracking_uri=uri)
        assert trained.run_id == run_id
        assert trained.spatial_size == (32, 32)
        assert _same_weights(trained.network, from_files.network)


def test_runs_written_before_the_spatial_core_load_as_the_vector_core(
    untrained_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "old_run"
    run.mkdir()
    config = json.loads((untrained_run / "config.json").read_text())
    for key in ("latent", "spatial_channels", "spatial_beta"):  # an old config.json has none of them
        config.pop(key)
    (run / "config.json").write_text(json.dumps(config))
    torch.manual_seed(2)
    old = GlassBoxNet(spatial_dims=2, img_size=(32, 32), latent_dim=8, size=config["size"])
    torch.save({"model": old.state_dict()}, run / "best.pt")
    trained = load_trained_model(run)
    assert isinstance(trained.network, GlassBoxNet) and trained.config.latent == "vector"
    assert _same_weights(trained.network, old)


def test_a_checkpoint_of_the_other_core_is_refused_naming_the_change(
    untrained_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "mixed"
    shutil.copytree(untrained_run, run)
    config = json.loads((run / "config.json").read_text())
    assert config["latent"] == "spatial"  # the default core wrote this checkpoint
    (run / "config.json").write_text(json.dumps(config | {"latent": "vector"}))
    with pytest.raises(
        ValueError,
        match=r"holds the spatial-latent core but its config.json describes the vector-latent core",
    ):
        load_trained_model(run)


def test_a_moved_run_tree_loads_from_any_directory(untrained_run: Path, tmp_path: Path, monkeypatch) -> None:
    """config.json written as training writes it (paths relative to the run folder) survives a move."""
    from pipelines.training_config import TrainConfig

    tree = tmp_path / "tree"
    cohort = tree / "cohort"
    shutil.copytree(Path(json.loads((untrained_run / "config.json").read_text())["datalist"]).parent, cohort)
    run = tree / "runs" / "cls"
    run.mkdir(parents=True)
    shutil.copy(untrained_run / "best.pt", run / "best.pt")
    (tree / "runs" / "pre.pt").write_bytes(b"")  # the pretraining checkpoint, gone after the move
    config = TrainConfig.from_json(json.loads((untrained_run / "config.json").read_text()))
    config.datalist, config.out_dir = cohort / "datalist.json", run
    data = config.to_json(relative_to=run)
    data["pretrained"] = "../pre.pt"
    assert data["datalist"] == "../../cohort/datalist.json" and data["out_dir"] == "."
    (run / "config.json").write_text(json.dumps(data))
    moved = tmp_path / "elsewhere" / "tree"
    shutil.move(str(tree), moved)
    (moved / "runs" / "pre.pt").unlink()
    monkeypatch.chdir(tmp_path)
    trained = load_trained_model(moved / "runs" / "cls")
    assert trained.config.datalist == moved / "cohort" / "datalist.json"
    assert trained.config.datalist.is_file()
    assert trained.config.pretrained is None  # only the training needed it
