"""The MONAI Label app's modules that need no MONAI Label: bundle discovery, explanation labels,
the torchvision stand-in and the pydicom 2 shim (run in the project's venv)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from pipelines.bundle_runner import BUNDLES_DIR

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "apps" / "monailabel"))
from lib.bundle_discovery import bundle_checkpoint, served_bundles, task_type  # noqa: E402
from lib.explanation_labels import LABELS, explain_for_viewer, explanation_labels, top_fraction_mask  # noqa: E402
from lib.torchvision_free import import_without_torchvision  # noqa: E402


def _bundle(root: Path, name: str, configs: tuple[str, ...] = ("metadata", "inference", "train")) -> Path:
    folder = root / name / "configs"
    folder.mkdir(parents=True)
    for config in configs:
        source = BUNDLES_DIR / "glassbox_classification" / "configs" / f"{config}.json"
        shutil.copy(source, folder / f"{config}.json")
    return root / name


def test_served_bundles_are_found_from_their_files(tmp_path: Path) -> None:
    _bundle(tmp_path, "glassbox_classification")
    _bundle(tmp_path, "my_segmentation", configs=("metadata", "inference"))  # no train.json
    _bundle(tmp_path, "glassbox_pretrain")  # a name that selects no task type
    _bundle(tmp_path, "lesion_detection", configs=("metadata", "train"))  # no inference.json
    (tmp_path / "notes").mkdir()
    served = {b.name: b for b in served_bundles(tmp_path)}
    assert sorted(served) == ["glassbox_classification", "my_segmentation"]
    assert served["glassbox_classification"].task_type == "classification"
    assert served["glassbox_classification"].trainable and not served["my_segmentation"].trainable
    assert served["my_segmentation"].task_type == "segmentation"
    # the inference config's checkpoint id, resolved in the bundle folder
    expected = (tmp_path / "glassbox_classification" / "runs" / "classification" / "best.pt").resolve()
    assert served["glassbox_classification"].checkpoint == expected


def test_packaged_weights_win_over_the_run_checkpoint(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, "glassbox_classification")
    (bundle / "models").mkdir()
    (bundle / "models" / "model.pt").write_bytes(b"weights")
    assert bundle_checkpoint(bundle) == (bundle / "models" / "model.pt").resolve()


def test_a_config_without_checkpoint_is_left_out_and_a_missing_folder_refused(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, "x_classification")
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    del config["checkpoint"]
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"inference.json: no usable 'checkpoint' id"):
        bundle_checkpoint(bundle)
    assert served_bundles(tmp_path) == []
    with pytest.raises(ValueError, match=r"bundles folder .*: not a folder"):
        served_bundles(tmp_path / "missing")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("glassbox_classification", "classification"),
        ("Liver_Segmentation", "segmentation"),
        ("glassbox_detection", "detection"),
        ("glassbox_generation", ""),
    ],
)
def test_task_type_follows_monai_labels_name_rule(name: str, expected: str) -> None:
    assert task_type(name) == expected


def test_top_fraction_mask_keeps_positive_top_pixels_only() -> None:
    values = torch.tensor([[0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # fraction 0.5 of 8 pixels = 4, but only one pixel is positive
    assert top_fraction_mask(values, 0.5).sum().item() == 1
    assert top_fraction_mask(torch.arange(8.0), 0.25).tolist() == [False] * 6 + [True] * 2
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        top_fraction_mask(values, 0.0)
    with pytest.raises(ValueError, match="map must be finite"):
        top_fraction_mask(torch.tensor([float("nan"), 1.0]), 0.5)


def test_explanation_labels_mark_evidence_change_and_both() -> None:
    evidence = torch.zeros(4, 4)
    evidence[0, 0], evidence[1, 1] = 2.0, 1.0
    change = torch.zeros(4, 4)
    change[1, 1], change[3, 3] = 5.0, 4.0
    labels = explanation_labels(evidence, change, fraction=2 / 16)
    expected = torch.zeros(4, 4, dtype=torch.uint8)
    expected[0, 0] = LABELS["evidence"]
    expected[3, 3] = LABELS["change"]
    expected[1, 1] = LABELS["evidence and change"]
    assert torch.equal(labels, expected)
    with pytest.raises(ValueError, match="same shape"):
        explanation_labels(evidence, change[:2], fraction=0.1)


def test_explain_for_viewer_on_an_untrained_network(untrained_run: Path) -> None:
    from pipelines.explain import ExplainSettings
    from pipelines.trained_model import load_trained_model

    trained = load_trained_model(untrained_run)
    image = torch.rand(1, *trained.spatial_size)
    settings = ExplainSettings(cf_readout="latent", cf_max_steps=5, cf_frames=5)
    result = explain_for_viewer(trained.network, image, settings, evidence_map="attention", fraction=0.1)
    assert result.labels.shape == tuple(trained.spatial_size)
    assert torch.equal(result.labels, explanation_labels(result.evidence, result.change, 0.1))
    assert result.summary["evidence_map"] == "attention" and result.summary["labels"] == LABELS
    json.dumps(result.summary)
    with pytest.raises(ValueError, match="evidence_map must be one of"):
        explain_for_viewer(trained.network, image, settings, evidence_map="gradcam")


def test_import_without_torchvision_lends_a_stand_in_and_takes_it_back(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "uses_torchvision.py").write_text("from torchvision.utils import make_grid\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib.util

    if importlib.util.find_spec("torchvision") is not None:
        pytest.fail("this check needs an environment without torchvision, as the project's venv is")
    module = import_without_torchvision("uses_torchvision")
    assert "torchvision" not in sys.modules and "torchvision.utils" not in sys.modules
    with pytest.raises(RuntimeError, match="torchvision is not installed"):
        module.make_grid(torch.zeros(1))
