"""The demo command end to end on a small cohort."""

from __future__ import annotations

import csv
import json
import math

import pytest

from pipelines.demo import DEMO_LESION_RADIUS, run_demo


def test_demo_generates_ingests_and_summarises(tmp_path, capsys):
    summary = run_demo(
        tmp_path / "demo",
        n=40,
        seed=1,
        progress=False,
        pretrain_epochs=1,
        classify_epochs=1,
        lesion_contrast=(0.3, 0.4),
    )
    # the cohort's lesions follow the demo's settings (contrast given here, radius the demo default)
    with open(tmp_path / "demo" / "cohort" / "factors.csv", newline="") as f:
        lesions = [r for r in csv.DictReader(f) if not math.isnan(float(r["lesion_contrast"]))]
    assert lesions and all(0.3 <= float(r["lesion_contrast"]) <= 0.4 for r in lesions)
    assert all(DEMO_LESION_RADIUS[0] <= float(r["lesion_radius"]) <= DEMO_LESION_RADIUS[1] for r in lesions)
    assert summary["lesion_contrast"] == [0.3, 0.4] and summary["lesion_radius"] == list(DEMO_LESION_RADIUS)
    assert summary["train_labelled"] == round(0.1 * summary["splits"]["training"])
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
    # the AUC is put in words with its interval, and a weak result comes with advice
    verdict = summary["test_auc_verdict"]
    assert verdict.startswith(f"test AUC {summary['test_auc']:.3f} (95% CI ") and verdict in out
    assert ("were not enough to learn the lesions" in out) != verdict.endswith("better than chance")
    with pytest.raises(ValueError, match=r"label_fraction must be in \(0, 1\], got 0.0"):
        run_demo(tmp_path / "y", n=40, label_fraction=0.0)
    assert not (tmp_path / "y").exists()  # refused before generating anything
    with pytest.raises(ValueError, match="n must be >= 10"):
        run_demo(tmp_path / "x", n=3)
