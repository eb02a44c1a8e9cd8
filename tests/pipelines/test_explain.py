"""Tests of pipelines/explain.py: one image (a real DICOM), figures, report and MLflow."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import mlflow
import pytest
from PIL import Image

from pipelines.explain import METHODS, ExplainSettings, explain_image

PNG = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.src: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.tags.append(tag)
        if tag == "img":
            self.src.append(dict(attrs)["src"])


def _check_report(out: Path) -> _Page:
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert page.tags[:2] == ["html", "head"] and "body" in page.tags and "table" in page.tags
    assert page.src, "the report shows figures"
    for src in page.src:
        data = (out / src).read_bytes()
        assert data[:8] == PNG
        with Image.open(out / src) as im:
            im.verify()
    return page


def test_explain_a_real_dicom(shortcut_run: tuple[Path, Path], tmp_path: Path) -> None:
    import pydicom

    run, _ = shortcut_run
    dicom = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    explain_image(
        run, dicom, tmp_path, settings=ExplainSettings(traversal_dims=3), track=False, progress=False
    )
    page = _check_report(tmp_path)
    assert sorted(Path(s).name for s in page.src) == [
        "counterfactual.png",
        "infill_counterfactual.png",
        "maps.png",
        "traversal.png",
    ]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["prob"] <= 1.0
    assert metrics["cf_flipped"] == 1.0  # the linear head makes the decision reachable
    assert (metrics["cf_final_prob"] >= 0.5) != (metrics["prob"] >= 0.5)
    assert (metrics["infill_final_prob"] >= 0.5) != (metrics["prob"] >= 0.5) or metrics[
        "infill_flipped"
    ] == 0.0
    assert 0.0 < metrics["infill_region_fraction"] <= 1.0
    assert {f"{m}_deletion_auc" for m in METHODS} <= set(metrics)
    assert "pointing_game" not in " ".join(metrics)  # no mask given: no localisation scores


@pytest.mark.integration
def test_explain_logs_a_child_run_of_the_model(
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
    record = next(r for r in json.loads(datalist.read_text())["test"] if r["label"] == 1)
    result = explain_image(
        model,
        datalist.parent / record["image"],
        tmp_path / "out",
        mask=datalist.parent / record["mask"],
        settings=ExplainSettings(traversal_dims=2),
        progress=False,
    )
    child = client.get_run(result["run_id"])
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert {"report.html", "metrics.json", "maps.png"} <= {
        a.path for a in client.list_artifacts(result["run_id"])
    }
    assert "attention_pointing_game" in child.data.metrics  # a mask was given


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="max_images must be an int >= 1, got 0"):
        ExplainSettings(max_images=0)
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\)"):
        ExplainSettings(threshold=1.0)
    with pytest.raises(ValueError, match=r"pointing_tolerance must be in \[0, 1\), got -0.1"):
        ExplainSettings(pointing_tolerance=-0.1)
    with pytest.raises(ValueError, match="infill_window must be an int >= 1, got 0"):
        ExplainSettings(infill_window=0)
    with pytest.raises(ValueError, match="infill_stride must be None or an int >= 1, got 0"):
        ExplainSettings(infill_stride=0)


def test_explain_a_3d_volume_shows_mid_slices(tmp_path: Path) -> None:
    import torch

    from phantoms import PhantomConfig, generate_cohort
    from pipelines.training import build_network
    from pipelines.training_config import TrainConfig

    cohort = tmp_path / "cohort"
    generate_cohort(
        PhantomConfig(kind="brain3d", n=6, seed=2, size=16, image_format="nifti"), cohort, progress=False
    )
    config = TrainConfig(
        datalist=cohort / "datalist.json", out_dir=tmp_path / "run", spatial_size=(16, 16, 16), latent_dim=4
    )
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(config.to_json()))
    torch.manual_seed(0)
    torch.save({"model": build_network(config).state_dict()}, tmp_path / "run" / "best.pt")
    record = next(
        r for r in json.loads((cohort / "datalist.json").read_text())["training"] if r["label"] == 1
    )
    result = explain_image(
        tmp_path / "run",
        cohort / record["image"],
        tmp_path / "out",
        mask=cohort / record["mask"],
        settings=ExplainSettings(traversal_dims=2, cf_max_steps=10),
        track=False,
        progress=False,
    )
    _check_report(tmp_path / "out")
    assert {f"{m}_topk_iou" for m in METHODS} <= set(result["metrics"])
    with Image.open(tmp_path / "out" / "maps.png") as im:  # three mid-slices per panel: wider than tall
        assert im.width > im.height


def test_the_latent_scale_is_cached_for_the_checkpoint(
    shortcut_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import pipelines.latent_codes as latent_codes
    from pipelines.explain import LATENT_SCALE_FILE

    run = tmp_path / "run"
    shutil.copytree(shortcut_run[0], run)
    (run / LATENT_SCALE_FILE).unlink(missing_ok=True)
    image = next((shortcut_run[1].parent / "images").iterdir())
    settings = ExplainSettings(traversal_dims=2)
    explain_image(run, image, tmp_path / "first", settings=settings, track=False, progress=False)
    cached = json.loads((run / LATENT_SCALE_FILE).read_text())
    assert cached["stamp"]["checkpoint"] == "best.pt" and len(cached["sigma"]) == 8

    def no_encoding(*args, **kwargs):
        raise AssertionError("the training images were encoded again")

    monkeypatch.setattr(latent_codes, "encode_records", no_encoding)
    explain_image(run, image, tmp_path / "second", settings=settings, track=False, progress=False)
    assert json.loads((tmp_path / "second" / "metrics.json").read_text())["prob"] == pytest.approx(
        json.loads((tmp_path / "first" / "metrics.json").read_text())["prob"]
    )
    (run / "best.pt").touch()  # a newer checkpoint: the cache no longer applies
    with pytest.raises(AssertionError, match="encoded again"):
        explain_image(run, image, tmp_path / "third", settings=settings, track=False, progress=False)
