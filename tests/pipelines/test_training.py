"""Tests of pipelines/training.py (and its config, steps and MLflow modules) on a tiny phantom cohort."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import mlflow
import pytest
import torch

from phantoms.brain_cohort import PhantomConfig, generate_cohort
from pipelines.cli import main
from pipelines.mlflow_tracking import RUN_ID_FILE
from pipelines.training import ENCODER_MODULES, build_transforms, train
from pipelines.training_config import TrainConfig
from pipelines.transfer_learning import CLASSIFIER_POOLING

TINY = {"spatial_size": (32, 32), "batch_size": 8, "size": "tiny", "latent_dim": 8}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(PhantomConfig(kind="brain2d", n=40, seed=0, size=32), out, progress=False)
    return out / "datalist.json"


@pytest.fixture(scope="module")
def runs(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Pretrain (2 epochs, patch erasing), then classify from its best checkpoint with 25% of labels."""
    root = tmp_path_factory.mktemp("runs")
    uri = f"sqlite:///{root}/mlruns.db"
    pre = TrainConfig(
        datalist=cohort,
        out_dir=root / "pre",
        mode="pretrain",
        epochs=2,
        erase_prob=0.5,
        tracking_uri=uri,
        **TINY,
    )
    pre_metrics = train(pre)
    cls = TrainConfig(
        datalist=cohort,
        out_dir=root / "cls",
        mode="classify",
        epochs=2,
        label_fraction=0.25,
        pretrained=root / "pre" / "best.pt",
        early_stop_patience=5,
        tracking_uri=uri,
        **TINY,
    )
    cls_metrics = train(cls)
    return {"root": root, "uri": uri, "pre": pre_metrics, "cls": cls_metrics}


def _history(uri: str, out_dir: Path, name: str) -> list[tuple[int, float]]:
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    run_id = (out_dir / RUN_ID_FILE).read_text().strip()
    return [(m.step, m.value) for m in client.get_metric_history(run_id, name)]


def test_pretrain_then_classify_writes_checkpoints_and_metrics(runs: dict) -> None:
    root = runs["root"]
    for name in ("pre", "cls"):
        assert (root / name / "best.pt").is_file() and (root / name / "last.pt").is_file()
        written = json.loads((root / name / "metrics.json").read_text())
        assert written == pytest.approx(runs[name])
        assert all(isinstance(v, float) and math.isfinite(v) for v in written.values())
    pre, cls = runs["pre"], runs["cls"]
    assert pre["epochs_completed"] == 2 and pre["train_ce"] == 0.0  # pretrain: no cross-entropy
    assert {"val_loss", "val_recon_mse", "test_loss", "test_recon_mse", "best_val_loss"} <= set(pre)
    expected = {
        "test_auc",
        "test_accuracy",
        "test_sensitivity",
        "test_specificity",
        "val_auc",
        "best_val_auc",
    }
    assert expected <= set(cls)
    assert 0.0 <= cls["test_auc"] <= 1.0
    assert cls["pretrained_tensors_loaded"] > 0


def test_classify_masks_three_quarters_of_training_labels(runs: dict, cohort: Path) -> None:
    training = json.loads(cohort.read_text())["training"]
    per_class = [sum(r["label"] == c for r in training) for c in (0, 1)]
    kept = sum(math.floor(0.25 * n + 0.5) for n in per_class)  # stratified rounding, by hand
    assert runs["cls"]["train_images"] == len(training)
    assert runs["cls"]["train_labelled"] == kept
    assert kept / len(training) == pytest.approx(0.25, abs=0.05)


def test_mlflow_run_holds_params_and_per_epoch_metrics(runs: dict) -> None:
    client = mlflow.tracking.MlflowClient(tracking_uri=runs["uri"])
    run_id = (runs["root"] / "cls" / RUN_ID_FILE).read_text().strip()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["mode"] == "classify" and run.data.params["label_fraction"] == "0.25"
    for name in ("train_loss", "val_auc", "val_loss", "val_sensitivity"):
        assert [step for step, _ in _history(runs["uri"], runs["root"] / "cls", name)] == [1, 2]
    assert "test_auc" in run.data.metrics
    pre_loss = _history(runs["uri"], runs["root"] / "pre", "train_loss")
    assert [step for step, _ in pre_loss] == [1, 2]
    assert pre_loss[-1][1] == pytest.approx(runs["pre"]["train_loss"])


def test_resume_continues_epoch_count(cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    config = {
        "datalist": cohort,
        "out_dir": tmp_path / "run",
        "mode": "classify",
        "tracking_uri": uri,
        **TINY,
    }
    first = train(TrainConfig(epochs=1, **config))
    assert first["epochs_completed"] == 1 and first["start_epoch"] == 0
    second = train(TrainConfig(epochs=2, **config))
    assert second["start_epoch"] == 1 and second["epochs_completed"] == 2
    assert "resuming" in capsys.readouterr().err
    assert [step for step, _ in _history(uri, tmp_path / "run", "train_loss")] == [1, 2]
    assert [step for step, _ in _history(uri, tmp_path / "run", "val_auc")] == [1, 2]


def test_a_run_resumed_after_a_crash_ends_with_the_uninterrupted_run_weights(
    cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.training as training

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    # patch erasing and a quarter of the labels: the augmentation RNG and the labelled-share sampler
    common = {"datalist": cohort, "mode": "classify", "epochs": 3, "tracking_uri": uri, **TINY}
    common |= {"erase_prob": 0.5, "label_fraction": 0.25}
    train(TrainConfig(out_dir=tmp_path / "straight", **common))

    saves = []
    real_save = training.save_last_checkpoint

    def crash_in_third_epoch(engine, save_dict, path):  # dies before epoch 3 is checkpointed
        saves.append(engine.state.epoch)
        if engine.state.epoch == 3:
            raise RuntimeError("simulated crash")
        real_save(engine, save_dict, path)

    monkeypatch.setattr(training, "save_last_checkpoint", crash_in_third_epoch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(TrainConfig(out_dir=tmp_path / "resumed", **common))
    monkeypatch.setattr(training, "save_last_checkpoint", real_save)
    assert saves == [1, 2, 3]
    resumed = train(TrainConfig(out_dir=tmp_path / "resumed", **common))
    assert resumed["start_epoch"] == 2 and resumed["epochs_completed"] == 3

    def weights(run: str) -> dict:
        return torch.load(tmp_path / run / "last.pt", weights_only=True)["model"]

    straight, again = weights("straight"), weights("resumed")
    assert straight.keys() == again.keys()
    different = [k for k in straight if not torch.equal(straight[k], again[k])]
    assert different == []


def test_freeze_encoder_keeps_pretrained_encoder(runs: dict, cohort: Path, tmp_path: Path) -> None:
    best = runs["root"] / "pre" / "best.pt"
    config = TrainConfig(
        datalist=cohort,
        out_dir=tmp_path / "frozen",
        epochs=1,
        pretrained=best,
        freeze_encoder=True,
        tracking_uri=f"sqlite:///{tmp_path}/mlruns.db",
        **TINY,
    )
    train(config)
    before = torch.load(best, weights_only=True)
    after = torch.load(tmp_path / "frozen" / "last.pt", weights_only=True)["model"]
    floats = [k for k in after if after[k].is_floating_point()]
    encoding = [
        k for k in floats if k.split(".")[0] in ENCODER_MODULES and not k.startswith(CLASSIFIER_POOLING)
    ]
    assert encoding and all(torch.equal(before[k], after[k]) for k in encoding)
    # the classifier's attention pooling is neither transferred nor frozen
    pooling = [k for k in floats if k.startswith(CLASSIFIER_POOLING)]
    assert pooling and all(not torch.equal(before[k], after[k]) for k in pooling if k.endswith("weight"))
    decoder = [k for k in after if k.startswith("decoder.") and after[k].is_floating_point()]
    assert any(not torch.equal(before[k], after[k]) for k in decoder)  # the decoder still trains


def test_unreachable_tracking_server_warns_once(
    cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    config = TrainConfig(
        datalist=cohort,
        out_dir=tmp_path / "run",
        mode="pretrain",
        epochs=1,
        tracking_uri="http://127.0.0.1:9",
        amp=True,  # bfloat16 autocast on the CPU too
        **TINY,
    )
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="amp: bfloat16 autocast on a CPU"):
        metrics = train(config)
    assert metrics["epochs_completed"] == 1
    assert (tmp_path / "run" / "metrics.json").is_file()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "MLflow" in r.getMessage()]
    assert len(warnings) == 1
    assert "training continues" in warnings[0].getMessage() and "\n" not in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "finetune"}, r"mode must be one of \('pretrain', 'classify'\), got 'finetune'"),
        ({"epochs": 0}, r"epochs must be an int >= 1, got 0"),
        ({"lr": 0.0}, r"lr must be a number > 0, got 0.0"),
        ({"label_fraction": 1.5}, r"label_fraction must be in \[0, 1\], got 1.5"),
        ({"erase_prob": -0.1}, r"erase_prob must be in \[0, 1\], got -0.1"),
        ({"flip_prob": 1.5}, r"flip_prob must be in \[0, 1\], got 1.5"),
        ({"cache_rate": -0.5}, r"cache_rate must be in \[0, 1\], got -0.5"),
        ({"labelled_share": 1.0}, r"labelled_share must be in \[0, 1\), got 1.0"),
        ({"latent_pool": "none"}, r"latent_pool must be one of \('attention', 'mean', 'max'\), got 'none'"),
        ({"pooled_logits": "yes"}, r"pooled_logits must be true, false or null, got 'yes'"),
        ({"attention_sparsity": -0.1}, r"attention_sparsity must be a number >= 0, got -0.1"),
        (
            {"spatial_size": (30, 30)},
            r"spatial_size must be 2 or 3 positive ints divisible by 4 \(the total stride of size 'tiny_fine'\), "
            r"got \(30, 30\)",
        ),
        (
            {"spatial_size": (36, 36), "size": "tiny"},
            r"divisible by 8 \(the total stride of size 'tiny'\), got \(36, 36\)",
        ),
        ({"size": "huge"}, r"size must be one of .*got 'huge'"),
        ({"beta": -1.0}, r"beta must be a number >= 0, got -1.0"),
        ({"freeze_encoder": True}, r"freeze_encoder needs a pretrained checkpoint"),
        ({"batch_size": True}, r"batch_size must be an int >= 1, got True"),
    ],
)
def test_config_rejects_bad_values(change: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(datalist=tmp_path / "d.json", out_dir=tmp_path / "out", **change)


def test_spatial_size_must_fit_the_chosen_presets_stride(tmp_path: Path) -> None:
    common = {"datalist": tmp_path / "d.json", "out_dir": tmp_path}
    assert TrainConfig(**common).size == "tiny_fine"  # the default preset: total stride 4
    assert TrainConfig(spatial_size=(36, 36), **common).spatial_size == (36, 36)
    assert TrainConfig(spatial_size=(40, 40), size="tiny", **common).spatial_size == (40, 40)


def test_beta_default_depends_on_the_mode_and_survives_the_json_round_trip(tmp_path: Path) -> None:
    common = {"datalist": tmp_path / "d.json", "out_dir": tmp_path}
    pretrain = TrainConfig(mode="pretrain", **common)
    classify = TrainConfig(mode="classify", **common)
    assert (pretrain.beta, classify.beta) == (1.0, 0.0)
    assert TrainConfig(mode="classify", beta=1.0, **common).beta == 1.0
    assert TrainConfig.from_json(classify.to_json()).beta == 0.0
    assert (
        TrainConfig.from_json({**pretrain.to_json(), "mode": "classify"}).beta == 1.0
    )  # written, not re-defaulted


def test_training_flips_reach_the_reconstruction_target_too(cohort: Path, tmp_path: Path) -> None:
    record = {"image": json.loads(cohort.read_text())["training"][0]["image"]}
    if not Path(record["image"]).is_absolute():
        record["image"] = str(cohort.parent / record["image"])
    common = {"datalist": cohort, "out_dir": tmp_path, "intensity_range": (0.0, 1000.0), **TINY}
    plain = build_transforms(TrainConfig(flip_prob=0.0, **common), training=True)(dict(record))
    flipped = build_transforms(TrainConfig(flip_prob=1.0, **common), training=True)(dict(record))
    evaluation = build_transforms(TrainConfig(flip_prob=1.0, **common), training=False)(dict(record))
    expected = torch.flip(torch.as_tensor(plain["image"]), dims=(1, 2))  # both spatial axes
    assert not torch.equal(expected, torch.as_tensor(plain["image"]))
    assert torch.allclose(torch.as_tensor(flipped["image"]), expected)
    assert torch.allclose(torch.as_tensor(flipped["target"]), expected)
    assert torch.allclose(torch.as_tensor(evaluation["image"]), torch.as_tensor(plain["image"]))  # no flips


def test_loader_caches_the_configured_share_and_still_augments_every_epoch(
    cohort: Path, tmp_path: Path
) -> None:
    from pipelines.distributed import DistContext
    from pipelines.training import _loader

    records = [
        {"image": str(cohort.parent / r["image"]) if not Path(r["image"]).is_absolute() else r["image"]}
        for r in json.loads(cohort.read_text())["training"]
    ]
    ctx = DistContext.single(torch.device("cpu"))
    common = {
        "datalist": cohort,
        "out_dir": tmp_path,
        "intensity_range": (0.0, 1000.0),
        "mode": "pretrain",
        **TINY,
    }
    half = _loader(TrainConfig(cache_rate=0.5, **common), records, True, ctx).dataset
    assert half.cache_num == len(records) // 2
    cached = _loader(TrainConfig(cache_rate=1.0, flip_prob=1.0, **common), records, True, ctx).dataset
    assert cached.cache_num == len(records)
    unflipped = build_transforms(TrainConfig(flip_prob=0.0, **common), training=False)(dict(records[0]))
    expected = torch.flip(torch.as_tensor(unflipped["image"]), dims=(1, 2))
    for _ in range(2):  # the flip runs on a copy of the cached image: each read flips once, not twice
        assert torch.allclose(torch.as_tensor(cached[0]["image"]), expected)
        assert torch.allclose(torch.as_tensor(cached[0]["target"]), expected)


def test_pretrain_mode_has_no_cross_entropy(tmp_path: Path) -> None:
    config = TrainConfig(datalist=tmp_path / "d.json", out_dir=tmp_path, mode="pretrain", ce_weight=2.0)
    assert config.effective_ce_weight == 0.0


def test_labels_out_of_range_raise(cohort: Path, tmp_path: Path) -> None:
    data = json.loads(cohort.read_text())
    data["training"][3]["label"] = 5
    bad_id = data["training"][3]["id"]
    bad = cohort.parent / "bad_labels.json"  # next to the images, so the relative paths resolve
    bad.write_text(json.dumps(data))
    config = TrainConfig(datalist=bad, out_dir=tmp_path / "run", epochs=1, **TINY)
    with pytest.raises(ValueError, match=rf"record '{bad_id}': label must be an int in \[0, 2\), got 5"):
        train(config)


def test_missing_pretrained_checkpoint_raises(cohort: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"pretrained checkpoint .*nope\.pt: file not found"):
        TrainConfig(datalist=cohort, out_dir=tmp_path / "run", pretrained=tmp_path / "nope.pt", **TINY)


def test_cli_pretrain_with_default_cohort_and_classify_error(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    common = ["--epochs", "1", "--spatial-size", "32", "32", "--batch-size", "8", "--no-progress"]
    out = tmp_path / "pre"
    status = main(["pretrain", "--out", str(out), "--cohort-n", "20", "--tracking-uri", uri, *common])
    assert status == 0
    assert (out / "cohort" / "datalist.json").is_file() and (out / "best.pt").is_file()
    status = main(
        ["classify", "--out", str(tmp_path / "cls"), "--pretrained", str(tmp_path / "x.pt"), *common]
    )
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("medglass classify: error: pretrained checkpoint") and "x.pt" in err[-1]


_KILLABLE_RUN = """
import sys, torch
torch.set_num_threads(1)
from pipelines.training import train
from pipelines.training_config import TrainConfig
train(TrainConfig(datalist=sys.argv[1], out_dir=sys.argv[2], mode="classify", epochs=int(sys.argv[3]),
                  tracking_uri=sys.argv[4], spatial_size=(32, 32), batch_size=8, size="tiny", latent_dim=8))
"""


def test_sigkill_mid_run_resumes_from_last_checkpoint(cohort: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    out, epochs = tmp_path / "killed", 6
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    args = [sys.executable, "-c", _KILLABLE_RUN, str(cohort), str(out), str(epochs), uri]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (out / "last.pt").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)  # mid-run, after at least one finished epoch
    proc.wait(timeout=30)
    state = torch.load(out / "last.pt", weights_only=True)["trainer"]
    done_before = state["iteration"] // state["epoch_length"]
    assert 1 <= done_before < epochs

    metrics = train(
        TrainConfig(datalist=cohort, out_dir=out, mode="classify", epochs=epochs, tracking_uri=uri, **TINY)
    )
    assert metrics["start_epoch"] == done_before
    assert metrics["epochs_completed"] == epochs
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    run_id = (out / RUN_ID_FILE).read_text().strip()
    steps = [m.step for m in client.get_metric_history(run_id, "train_loss")]
    assert sorted(steps) == list(range(1, epochs + 1))  # every epoch logged exactly once


def test_kl_per_dimension_and_ssim_reach_mlflow_every_epoch(runs: dict) -> None:
    uri, out, cls = runs["uri"], runs["root"] / "cls", runs["cls"]
    dims = [f"train_kl_dim_{i:02d}" for i in range(TINY["latent_dim"])]
    for name in [*dims, "val_recon_ssim", "val_recon_mse", "val_accuracy", "val_specificity"]:
        assert [step for step, _ in _history(uri, out, name)] == [1, 2], name
    # the spatial core: the first latent_dim // 2 dimensions are the grid channels (each channel's KL
    # summed over cells), the rest the global code; each part adds up to its total's epoch average
    grid = TINY["latent_dim"] // 2
    assert sum(cls[name] for name in dims[:grid]) == pytest.approx(cls["train_kl_grid"], rel=1e-4)
    assert sum(cls[name] for name in dims[grid:]) == pytest.approx(cls["train_kl"], rel=1e-4)
    assert cls["train_kl_grid"] > 0
    assert all(cls[name] >= 0 for name in dims)
    assert -1.0 <= cls["val_recon_ssim"] <= 1.0 and -1.0 <= cls["test_recon_ssim"] <= 1.0


def _tamper_best(last: Path, score: float) -> None:
    """Set the best validation score remembered in last.pt (epoch 1) to ``score``."""
    state = torch.load(last, weights_only=True)
    state["best"] = {"best_metric": score, "best_metric_epoch": 1, "saved": [[score, "best.pt"]]}
    torch.save(state, last)


@pytest.mark.parametrize(("remembered", "replaced"), [(1.5, False), (-0.5, True)])
def test_resume_replaces_best_only_with_a_better_score(
    cohort: Path, tmp_path: Path, remembered: float, replaced: bool
) -> None:
    config = {
        "datalist": cohort,
        "out_dir": tmp_path / "run",
        "tracking_uri": f"sqlite:///{tmp_path}/m.db",
        **TINY,
    }
    first = train(TrainConfig(epochs=1, **config))
    assert first["best_epoch"] == 1
    run = tmp_path / "run"
    before = torch.load(run / "best.pt", weights_only=True)
    # AUC is at most 1, so 1.5 cannot be beaten after the resume, and any AUC beats -0.5
    _tamper_best(run / "last.pt", remembered)
    second = train(TrainConfig(epochs=2, **config))
    assert second["start_epoch"] == 1
    after = torch.load(run / "best.pt", weights_only=True)
    epoch2 = torch.load(run / "last.pt", weights_only=True)["model"]
    same_as_before = all(torch.equal(before[k], after[k]) for k in before)
    same_as_epoch2 = all(torch.equal(epoch2[k], after[k]) for k in epoch2)
    if replaced:
        assert same_as_epoch2 and not same_as_before
        assert second["best_epoch"] == 2 and second["best_val_auc"] == pytest.approx(second["val_auc"])
    else:
        assert same_as_before and not same_as_epoch2
        assert second["best_epoch"] == 1 and second["best_val_auc"] == remembered
    saved = torch.load(run / "last.pt", weights_only=True)["best"]
    assert saved["best_metric_epoch"] == second["best_epoch"]


def test_model_logging_failure_warns_and_training_goes_on(
    cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("registry down")

    monkeypatch.setattr(mlflow.pytorch, "log_model", broken)
    config = TrainConfig(
        datalist=cohort,
        out_dir=tmp_path / "run",
        mode="pretrain",
        epochs=1,
        tracking_uri=f"sqlite:///{tmp_path}/m.db",
        registered_model_name="medglass-broken",
        **TINY,
    )
    with caplog.at_level(logging.WARNING):
        metrics = train(config)
    assert metrics["epochs_completed"] == 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == pytest.approx(metrics)
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and "MLflow" in r.getMessage()
    ]
    assert len(warnings) == 1 and "registry down" in warnings[0]
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/m.db")
    assert client.search_registered_models() == []


def test_logged_model_matches_best_checkpoint(runs: dict) -> None:
    client = mlflow.tracking.MlflowClient(tracking_uri=runs["uri"])
    run_id = (runs["root"] / "pre" / RUN_ID_FILE).read_text().strip()
    experiment = client.get_run(run_id).info.experiment_id
    models = client.search_logged_models([experiment], filter_string=f"source_run_id = '{run_id}'")
    assert len(models) == 1 and models[0].name == "model"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", runs["uri"])
        model = mlflow.pytorch.load_model(f"models:/{models[0].model_id}")
    best = torch.load(runs["root"] / "pre" / "best.pt", weights_only=True)
    assert all(torch.equal(model.state_dict()[k], best[k]) for k in best)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"registered_model_name": ""}, r"registered_model_name must be a non-empty string or None, got ''"),
        ({"registered_model_name": 3}, r"registered_model_name must be a non-empty string or None, got 3"),
    ],
)
def test_config_rejects_bad_registered_model_name(change: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(datalist=tmp_path / "d.json", out_dir=tmp_path / "out", **change)


def test_config_json_round_trip(tmp_path: Path) -> None:
    config = TrainConfig(
        datalist=tmp_path / "d.json", out_dir=tmp_path / "out", spatial_size=(32, 48), distributed=True
    )
    again = TrainConfig.from_json(json.loads(json.dumps(config.to_json())))
    assert again == config and again.spatial_size == (32, 48)
    with pytest.raises(ValueError, match=r"unknown TrainConfig fields: \['epoch'\]"):
        TrainConfig.from_json({**config.to_json(), "epoch": 3})


def test_training_throughput_counts_every_training_image(runs: dict, cohort: Path) -> None:
    metrics = runs["cls"]
    n_train = len(json.loads(cohort.read_text())["training"])  # counted from the datalist itself
    epochs_run = metrics["epochs_completed"] - metrics["start_epoch"]
    assert 0 < metrics["train_seconds"]
    assert metrics["train_img_s"] * metrics["train_seconds"] == pytest.approx(n_train * epochs_run)


def test_training_stores_the_dataset_intensity_range_and_fine_tuning_inherits_it(
    runs: dict, cohort: Path
) -> None:
    from pipelines.datalists import load_datalist
    from transforms.intensity_range import dataset_intensity_range

    images = [r["image"] for r in load_datalist(cohort, "training")]
    expected = dataset_intensity_range(images, seed=0)
    pre = json.loads((runs["root"] / "pre" / "config.json").read_text())
    cls = json.loads((runs["root"] / "cls" / "config.json").read_text())
    assert pre["intensity"] == "dataset" and pre["intensity_range"] == pytest.approx(expected)
    assert cls["intensity_range"] == pre["intensity_range"]  # taken from the pretraining run
    assert TrainConfig.from_json(cls, base=runs["root"] / "cls").intensity_range == pytest.approx(expected)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"intensity": "volume"}, r"intensity must be one of \('dataset', 'image'\), got 'volume'"),
        ({"intensity_range": (1.0, 1.0)}, r"intensity_range must be \(a_min, a_max\).*got \(1.0, 1.0\)"),
        ({"intensity_range": "0,1"}, r"intensity_range must be \(a_min, a_max\)"),
        (
            {"intensity": "image", "intensity_range": (0, 1)},
            r"intensity_range needs intensity='dataset', got intensity='image'",
        ),
    ],
)
def test_config_rejects_bad_intensity_settings(change: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(datalist=tmp_path / "d.json", out_dir=tmp_path / "out", **change)


def test_config_written_before_the_dataset_range_reads_as_per_image(tmp_path: Path) -> None:
    old = TrainConfig(datalist=tmp_path / "d.json", out_dir=tmp_path / "out").to_json()
    del old["intensity"], old["intensity_range"]
    again = TrainConfig.from_json(old)
    assert again.intensity == "image" and again.intensity_range is None


def test_config_written_before_the_attention_term_trains_without_it(tmp_path: Path) -> None:
    current = TrainConfig(datalist=tmp_path / "d.json", out_dir=tmp_path / "out").to_json()
    assert TrainConfig.from_json(current).attention_sparsity == TrainConfig.attention_sparsity > 0
    del current["attention_sparsity"]
    assert TrainConfig.from_json(current).attention_sparsity == 0.0  # a resumed old run keeps its loss


def test_training_runs_without_metadata_tracking_and_restores_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from monai.data import get_track_meta

    import pipelines.training as training

    seen = []

    def fake_train(config: TrainConfig, ctx: object) -> dict:
        seen.append(get_track_meta())
        raise RuntimeError("crash inside training")

    monkeypatch.setattr(training, "_train", fake_train)
    assert get_track_meta()
    with pytest.raises(RuntimeError, match="crash inside training"):
        training.train(TrainConfig(datalist=tmp_path / "d.json", out_dir=tmp_path / "out", device="cpu"))
    assert seen == [False]
    assert get_track_meta()  # restored after the crash


@pytest.mark.parametrize(("mode", "expected"), [("classify", 0.1 * 500.0), ("pretrain", 0.0)])
def test_attention_sparsity_is_a_fraction_of_the_effective_ce_weight(
    mode: str, expected: float, cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.training as training

    seen = {}

    def capture(**kwargs: float) -> None:
        seen.update(kwargs)
        raise RuntimeError("stop after building the loss")

    monkeypatch.setattr(training, "GlassBoxLoss", capture)
    config = TrainConfig(
        datalist=cohort,
        out_dir=tmp_path / "run",
        mode=mode,
        spatial_size=(32, 32),
        ce_weight=500.0,
        attention_sparsity=0.1,
        device="cpu",
        tracking_uri=f"sqlite:///{tmp_path / 'mlruns.db'}",
    )
    with pytest.raises(RuntimeError, match="stop after building the loss"):
        training.train(config)
    assert seen["attention_weight"] == pytest.approx(expected)
