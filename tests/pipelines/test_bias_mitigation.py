"""Tests of pipelines/bias_mitigation.py: eraser artifact, before/after figures, weights untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from evaluation.attribute_overlap import attribute_overlap
from evaluation.concept_erasure import ErasedClassifier, LatentEraser
from pipelines.bias_mitigation import _overlap, mitigate
from pipelines.latent_codes import encode_datalist
from pipelines.trained_model import load_trained_model


def test_mitigation_erases_without_touching_the_model(
    shortcut_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run, datalist = shortcut_run
    checkpoint_hash = hashlib.sha256((run / "best.pt").read_bytes()).hexdigest()
    result = mitigate(
        run,
        "shortcut",
        datalist,
        tmp_path,
        calibration_section="validation",
        sections=["validation", "test"],
        track=False,
        progress=False,
    )
    assert hashlib.sha256((run / "best.pt").read_bytes()).hexdigest() == checkpoint_hash
    m = result["metrics"]
    assert m["weights_unchanged"] == 1.0
    # fitted on 'validation': in-sample, LEACE leaves no linear trace of the attribute
    assert m["validation/before/probe_auc"] > 0.9 and m["validation/erased/probe_auc"] <= 0.6
    # the head read only the erased direction: its decisions no longer split by the attribute
    assert m["test/erased/equalized_odds_difference"] < m["test/before/equalized_odds_difference"]
    eraser = LatentEraser.load(result["eraser"], latent_dim=8)
    assert result["eraser"].stat().st_size < 50_000
    trained = load_trained_model(run)
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        expected = trained.network.classify(eraser(trained.network.encode(x)["mu"].double()).float())
        got = ErasedClassifier(trained.network, eraser)(x)
    torch.testing.assert_close(got.float(), expected, rtol=1e-5, atol=1e-5)
    assert json.loads((tmp_path / "metrics.json").read_text())["weights_unchanged"] == 1.0
    assert (tmp_path / "report.html").read_text().count("<table>") == 2
    sidecar = json.loads((tmp_path / "eraser.json").read_text())
    assert sidecar["attribute"] == "shortcut" and 0.0 <= sidecar["decision_threshold"] <= 1.0
    assert m["test/erased_recalibrated/threshold"] == sidecar["decision_threshold"]
    assert (tmp_path / "before_after_test.png").read_bytes()[:4] == b"\x89PNG"
    # the calibration codes' overlap of the attribute's effects with the disease direction
    calib = encode_datalist(trained, datalist, "validation", progress=False)
    overlap = attribute_overlap(calib.mu, np.asarray(calib.attribute("shortcut"), dtype=object), calib.labels)
    assert m["calibration/effect_difference_disease_cosine"] == pytest.approx(
        overlap.difference_disease_cosine
    )
    assert m["calibration/effect_difference_ratio"] == pytest.approx(overlap.difference_ratio)


def test_eraser_attaches_to_the_model_run_and_registered_version(
    shortcut_run: tuple[Path, Path], tmp_path: Path, monkeypatch
) -> None:
    import shutil

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run, datalist = shortcut_run
    model = tmp_path / "run"
    shutil.copytree(run, model)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    config = json.loads((model / "config.json").read_text())
    config["tracking_uri"] = uri
    (model / "config.json").write_text(json.dumps(config))
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("models", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(exp).info.run_id
    (model / "mlflow_run_id.txt").write_text(parent)
    client.create_registered_model("glassbox")
    client.create_model_version("glassbox", source=f"runs:/{parent}/model", run_id=parent)
    result = mitigate(
        model, "shortcut", datalist, tmp_path / "out", sections=["test"], track=True, progress=False
    )
    child = client.get_run(result["run_id"])
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert "eraser.pt" in {a.path for a in client.list_artifacts(result["run_id"])}
    assert [a.path for a in client.list_artifacts(parent, "erasers/shortcut")] == [
        "erasers/shortcut/eraser.pt"
    ]
    version = client.get_model_version("glassbox", "1")
    assert version.tags["medglass.eraser.shortcut"] == f"runs:/{parent}/erasers/shortcut/eraser.pt"


def test_unknown_attribute_is_named(shortcut_run: tuple[Path, Path], tmp_path: Path) -> None:
    run, datalist = shortcut_run
    with pytest.raises(ValueError, match=r"attribute 'nope' is not in the 'validation' records"):
        mitigate(run, "nope", datalist, tmp_path, track=False, progress=False)


def test_balanced_threshold_maximises_mean_of_tpr_and_tnr() -> None:
    import numpy as np

    from pipelines.bias_mitigation import balanced_threshold

    labels = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.01, 0.02, 0.03, 0.20, 0.04, 0.30])
    # by hand: threshold 0.04 -> TPR 1, TNR 3/4 (balanced 0.875); 0.30 -> TPR 1/2, TNR 1 (0.75)
    assert balanced_threshold(labels, scores) == 0.04
    with pytest.raises(ValueError, match="needs both classes"):
        balanced_threshold(np.array([1, 1]), np.array([0.2, 0.4]))


def test_cli_conditional_erasure_on_several_sections_warns_about_training_images(
    shortcut_run: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pipelines.cli import main

    run, datalist = shortcut_run
    args = ["mitigate", "--model", str(run), "--attribute", "shortcut", "--datalist", str(datalist)]
    args += ["--calibration-section", "training", "validation", "--conditional", "--sections", "test"]
    with caplog.at_level("WARNING", logger="medglass.mitigate"):
        code = main([*args, "--out", str(tmp_path), "--no-mlflow", "--no-progress"])
    assert code == 0
    sidecar = json.loads((tmp_path / "eraser.json").read_text())
    assert sidecar["conditional_on_label"] is True
    assert sidecar["calibration_sections"] == ["training", "validation"]
    assert any("'training' section" in r.getMessage() for r in caplog.records)
    with caplog.at_level("WARNING", logger="medglass.mitigate"):
        caplog.clear()
        mitigate(
            run, "shortcut", datalist, tmp_path / "held_out", sections=["test"], track=False, progress=False
        )
    assert not any("'training' section" in r.getMessage() for r in caplog.records)


def test_cli_per_label_erasure_removes_more_directions_than_the_pooled_one(
    shortcut_run: tuple[Path, Path], tmp_path: Path
) -> None:
    from pipelines.cli import main

    run, datalist = shortcut_run
    ranks = {}
    for flag in ("--conditional", "--per-label"):
        out = tmp_path / flag.strip("-")
        args = ["mitigate", "--model", str(run), "--attribute", "shortcut", "--datalist", str(datalist)]
        code = main([*args, flag, "--sections", "test", "--out", str(out), "--no-mlflow", "--no-progress"])
        assert code == 0
        sidecar = json.loads((out / "eraser.json").read_text())
        assert sidecar["conditional_on_label"] is True
        assert sidecar["per_label"] is (flag == "--per-label")
        eraser = LatentEraser.load(out / "eraser.pt")
        ranks[flag] = int(torch.linalg.matrix_rank(eraser.proj_left @ eraser.proj_right))
    # the pooled fit removes one direction for a two-valued attribute; one per label removes two
    assert ranks == {"--conditional": 1, "--per-label": 2}


def _codes(halving: float, groups: int = 2, n: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y, g = rng.integers(0, 2, n), rng.integers(0, groups, n)
    mu = 0.05 * rng.normal(size=(n, 6))
    mu[:, 0] += y * (1 - halving * (g == 1))
    mu[:, 1] += g
    return mu, g, y


def test_overlap_sentence_explains_why_per_label_erasure_costs_disease_signal() -> None:
    metrics: dict[str, float] = {}
    sentence = _overlap(*_codes(0.5), "marker", metrics)
    assert metrics["calibration/effect_difference_disease_cosine"] < -0.99
    assert sentence is not None and "weakens the disease direction" in sentence and "67 %" in sentence
    # an attribute acting alike in both labels: the metrics, no sentence
    metrics = {}
    assert _overlap(*_codes(0.0), "marker", metrics) is None
    assert metrics["calibration/effect_difference_ratio"] < 0.05
    # three groups: not measured
    metrics = {}
    assert _overlap(*_codes(0.5, groups=3), "site", metrics) is None and metrics == {}
