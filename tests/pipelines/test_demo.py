"""The demo command end to end on a small cohort."""

from __future__ import annotations

import json

import pytest

from pipelines.demo import run_demo


def test_demo_generates_ingests_and_summarises(tmp_path, capsys):
    summary = run_demo(tmp_path / "demo", n=40, seed=1, progress=False, pretrain_epochs=1, classify_epochs=1)
    assert summary["images"] == 40 == summary["ingested_images"]
    assert summary["ingest_rejects"] == 0
    assert sum(summary["splits"].values()) == 40
    assert json.loads((tmp_path / "demo" / "demo_summary.json").read_text()) == summary
    assert (tmp_path / "demo" / "cohort_montage.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "medglass demo summary" in out and "mlflow ui --backend-store-uri sqlite:///" in out
    assert 0.0 <= summary["test_auc"] <= 1.0
    assert (tmp_path / "demo" / "pretrain" / "best.pt").is_file()
    assert json.loads((tmp_path / "demo" / "classify" / "metrics.json").read_text())[
        "test_auc"
    ] == pytest.approx(summary["test_auc"], abs=1e-4)
    assert (tmp_path / "demo" / "explain" / "report.html").is_file()
    assert summary["explain_report"] == str(tmp_path / "demo" / "explain" / "report.html")
    assert (
        summary["audit_report"] is None
        and f"bias audit skipped: {summary['splits']['test']} test images" in out
    )
    with pytest.raises(ValueError, match="n must be >= 10"):
        run_demo(tmp_path / "x", n=3)
