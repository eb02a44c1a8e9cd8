"""evaluate-generation on fake "generators": one copying training images, one drawing noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.cli import main
from pipelines.generation_report import evaluate_generation
from pipelines.training import train
from pipelines.training_config import TrainConfig


@pytest.fixture(scope="module")
def pretrained_run(small_cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly pretrained autoencoder: an untrained encoder's features are near zero for any input."""
    out = tmp_path_factory.mktemp("pretrained")
    config = TrainConfig(
        datalist=small_cohort,
        out_dir=out,
        mode="pretrain",
        spatial_size=(32, 32),
        latent_dim=8,
        epochs=3,
        batch_size=8,
        device="cpu",
        tracking_uri=f"sqlite:///{out}/mlruns.db",
    )
    train(config)
    return out


def _datalist(folder: Path, paths: list[str], labels: list[int], synthetic: bool = True) -> Path:
    records = [{"image": p, "label": y, "synthetic": synthetic} for p, y in zip(paths, labels, strict=True)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "datalist.json").write_text(json.dumps({"training": records}))
    return folder / "datalist.json"


def _training(small_cohort: Path) -> tuple[list[str], list[int]]:
    records = json.loads(small_cohort.read_text())["training"]
    return [str(small_cohort.parent / r["image"]) for r in records], [r["label"] for r in records]


def test_a_copying_generator_is_flagged_by_memorisation(
    untrained_run: Path, small_cohort: Path, tmp_path: Path
) -> None:
    paths, labels = _training(small_cohort)
    generated = _datalist(tmp_path / "copies", paths, labels)
    result = evaluate_generation(untrained_run, generated, tmp_path / "out", track=False, progress=False)
    m = result["metrics"]
    assert m["memorisation_flagged"] == 1.0 and m["memorisation_share_ssim"] == 1.0
    assert m["n_fake"] == len(paths) and {"class_fidelity_0", "class_fidelity_1"} <= set(m)
    stored = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert stored["memorisation_flagged"] == 1.0
    page = (tmp_path / "out" / "report.html").read_text()
    assert "FLAGGED" in page and "floor" in page
    for name in ("synthetic.png", "real.png", "nearest.png"):
        assert (tmp_path / "out" / "figures" / name).read_bytes()[:4] == b"\x89PNG"


def test_a_noise_generator_is_flagged_by_fid_and_precision(pretrained_run: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(24):
        path = tmp_path / "noise" / f"n{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((32, 32)) * 65535).astype(np.uint16)).save(path)
        paths.append(str(path))
    generated = _datalist(tmp_path / "noise", paths, [1] * len(paths))
    m = evaluate_generation(pretrained_run, generated, tmp_path / "out", track=False, progress=False)[
        "metrics"
    ]
    assert m["fid"] > 5 * m["fid_floor"] and m["precision"] < 0.2
    assert m["auc_real_vs_fake"] > 0.9 and m["memorisation_flagged"] == 0.0


def test_records_not_marked_synthetic_are_refused(
    untrained_run: Path, small_cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    paths, labels = _training(small_cohort)
    real = _datalist(tmp_path / "real", paths, labels, synthetic=False)
    code = main(
        [
            "evaluate-generation",
            "--model",
            str(untrained_run),
            "--generated",
            str(real),
            "--out",
            str(tmp_path / "o"),
            "--no-mlflow",
        ]
    )
    assert code == 2
    assert "every record must be marked synthetic" in capsys.readouterr().err
