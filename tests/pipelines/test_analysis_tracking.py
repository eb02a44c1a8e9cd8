"""Tests of pipelines/analysis_tracking.py: child run under the model's run, files and metrics logged."""

from __future__ import annotations

from pathlib import Path

import mlflow

from pipelines.analysis_tracking import log_analysis


def test_analysis_is_a_child_run_with_metrics_and_artifacts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("models", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(exp).info.run_id
    out = tmp_path / "explain"
    (out / "figures").mkdir(parents=True)
    (out / "report.html").write_text("<html></html>")
    (out / "figures" / "a.png").write_bytes(b"png")
    run_id = log_analysis("explain", out, {"pointing_attention": 0.9}, parent_run_id=parent, tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.experiment_id == exp
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.metrics == {"pointing_attention": 0.9}
    names = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "figures")
    }
    assert {"report.html", "figures", "figures/a.png"} <= names


def test_unreachable_server_warns_and_returns_none(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    (tmp_path / "report.html").write_text("x")
    with caplog.at_level("WARNING"):
        assert log_analysis("audit", tmp_path, {"a": 1.0}, tracking_uri="http://127.0.0.1:9") is None
    assert "unavailable" in caplog.text and str(tmp_path) in caplog.text
