"""The demo command end to end on a small cohort."""

from __future__ import annotations

import json

import pytest

from pipelines.demo import run_demo


def test_demo_generates_ingests_and_summarises(tmp_path, capsys):
    summary = run_demo(tmp_path / "demo", n=40, seed=1, progress=False)
    assert summary["images"] == 40 == summary["ingested_images"]
    assert summary["ingest_rejects"] == 0
    assert sum(summary["splits"].values()) == 40
    assert json.loads((tmp_path / "demo" / "demo_summary.json").read_text()) == summary
    assert (tmp_path / "demo" / "cohort_montage.png").stat().st_size > 1000
    assert "medglass demo summary" in capsys.readouterr().out
    with pytest.raises(ValueError, match="n must be >= 10"):
        run_demo(tmp_path / "x", n=3)
