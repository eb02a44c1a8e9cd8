"""The out-of-distribution flag of a trained run: written by training, cached, used by explain.

A brain-phantom model trained for two epochs flags pydicom's real CT and MR slices and at most
5 % of its held-out phantoms. Two epochs at the default learning rate leave the decoder
untrained (reconstruction SSIM about 0), which is no model of anything; at ``lr=0.01`` it
reconstructs (SSIM about 0.6). Over cohort/training seeds 1–8 of this setting, CT_small and
MR_small were flagged every time (unexplained variance 190–500 times its threshold) and 0–3 %
of the held-out phantoms were.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from phantoms import PhantomConfig, generate_cohort
from pipelines.explain import ExplainSettings, explain_image
from pipelines.latent_codes import load_model_input
from pipelines.ood_reference import OOD_FILE, image_ood, input_scores, ood_reference
from pipelines.trained_model import load_trained_model
from pipelines.training import train
from pipelines.training_config import TrainConfig
from tests.conftest import pydicom_test_dir

REAL_SCANS = ("CT_small.dcm", "MR_small.dcm")


@pytest.fixture(scope="module")
def phantom_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(run folder, cohort folder)``: 500 brain2d phantoms at 32×32 (350 training, 100 test), two epochs."""
    root = tmp_path_factory.mktemp("ood")
    generate_cohort(PhantomConfig(kind="brain2d", n=500, seed=8, size=32), root / "cohort", progress=False)
    config = TrainConfig(
        datalist=root / "cohort" / "datalist.json",
        out_dir=root / "run",
        spatial_size=(32, 32),
        size="tiny",
        latent_dim=8,
        epochs=2,
        batch_size=16,
        lr=0.01,
        seed=8,
        tracking_uri=None,
        progress=False,
    )
    train(config)
    return root / "run", root / "cohort"


def _flag(trained, reference, path: Path) -> dict:
    x, _ = load_model_input(path, trained.spatial_size, intensity_range=trained.intensity_range)
    return image_ood(trained, x, reference)


@pytest.mark.integration
def test_real_ct_and_mr_are_flagged_and_held_out_phantoms_are_not(phantom_run: tuple[Path, Path]) -> None:
    run, cohort = phantom_run
    assert (run / OOD_FILE).is_file()  # training wrote it
    written = (run / OOD_FILE).read_bytes()
    trained = load_trained_model(run)
    reference = ood_reference(trained)
    assert reference is not None and (run / OOD_FILE).read_bytes() == written  # read from the cache
    assert reference.n_images == len(json.loads((cohort / "datalist.json").read_text())["training"])
    for name in REAL_SCANS:
        assert _flag(trained, reference, pydicom_test_dir() / name)["flagged"], name
    test = json.loads((cohort / "datalist.json").read_text())["test"]
    flags = [_flag(trained, reference, cohort / r["image"])["flagged"] for r in test]
    assert len(flags) >= 100
    assert np.mean(flags) <= 0.05, f"{sum(flags)} of {len(flags)} held-out phantoms flagged"


@pytest.mark.integration
def test_a_moved_run_keeps_its_reference_without_its_training_images(
    phantom_run: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, _ = phantom_run
    moved = tmp_path / "archive" / "run"
    shutil.copytree(run, moved, copy_function=shutil.copy)  # new modification times, as `cp -r` gives
    trained = load_trained_model(moved)

    def gone(path, section):
        raise ValueError(f"datalist {path}: file not found")

    monkeypatch.setattr("pipelines.ood_reference.load_datalist", gone)  # the training images are elsewhere
    reference = ood_reference(trained)
    assert reference is not None
    assert _flag(trained, reference, pydicom_test_dir() / "CT_small.dcm")["flagged"]


@pytest.mark.integration
def test_explain_warns_for_a_real_ct_and_not_for_a_phantom(
    phantom_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run, cohort = phantom_run
    settings = ExplainSettings(traversal_dims=2, cf_max_steps=5)
    for name, image, flagged in [
        ("CT_small.dcm", pydicom_test_dir() / "CT_small.dcm", True),
        ("phantom", cohort / json.loads((cohort / "datalist.json").read_text())["test"][0]["image"], False),
    ]:
        out = tmp_path / name
        explain_image(run, image, out, settings=settings, track=False, progress=False)
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["ood_flagged"] == float(flagged), name
        for key in ("recon_error", "unexplained_variance", "latent_distance"):
            assert np.isfinite(metrics[f"ood_{key}"]) and metrics[f"ood_{key}"] >= 0.0
        html = (out / "report.html").read_text()
        body = html[html.index("<body") :]
        if flagged:
            warning = f"Warning: {image.name} is unlike the model&#x27;s training images: "
            assert warning in body.replace("'", "&#x27;"), body[:600]
            assert body.index("Warning:") < body.index("predicts class")  # at the top of the report
        else:
            assert "is within the range of the model" in body and "Warning:" not in body


def test_an_older_run_gets_its_reference_when_first_used(untrained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(untrained_run, run)
    (run / OOD_FILE).unlink(missing_ok=True)
    trained = load_trained_model(run)
    reference = ood_reference(trained)
    assert reference is not None and (run / OOD_FILE).is_file()
    # scores in batches equal scores one image at a time (the reference encodes in batches)
    records = json.loads(Path(trained.config.datalist).read_text())["training"][:3]
    root = Path(trained.config.datalist).parent
    xs = [load_model_input(root / r["image"], trained.spatial_size)[0] for r in records]
    batched = input_scores(trained, torch.cat(xs))
    single = [input_scores(trained, x) for x in xs]
    for i, part in enumerate(batched):
        assert np.allclose(part, np.concatenate([s[i] for s in single]), rtol=1e-4, atol=1e-6)
    # an unreadable cache or other weights: computed again
    (run / OOD_FILE).write_text("{not json")
    assert ood_reference(trained) is not None
    assert json.loads((run / OOD_FILE).read_text())["reference"]["format"] == 2
    stamp = json.loads((run / OOD_FILE).read_text())["stamp"]
    state = torch.load(run / "best.pt", weights_only=True)
    state["model"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, run / "best.pt")
    assert ood_reference(load_trained_model(run)) is not None
    assert json.loads((run / OOD_FILE).read_text())["stamp"]["sha256"] != stamp["sha256"]
