"""A finished run tree can be copied elsewhere, the original deleted, and analysed from any directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from phantoms import PhantomConfig, generate_cohort
from pipelines.bias_audit import audit
from pipelines.explain import LATENT_SCALE_FILE, explain_image
from pipelines.training import train
from pipelines.training_config import TrainConfig


@pytest.mark.integration
def test_explain_and_audit_a_copied_run_after_the_original_is_gone(tmp_path: Path, monkeypatch) -> None:
    original = tmp_path / "original"
    generate_cohort(
        PhantomConfig(kind="brain2d", n=150, seed=4, size=32), original / "cohort", progress=False
    )
    monkeypatch.chdir(tmp_path)  # relative paths, as a user types them
    common = {
        "spatial_size": (32, 32),
        "size": "tiny",
        "latent_dim": 8,
        "batch_size": 8,
        "tracking_uri": None,
    }
    train(
        TrainConfig(
            datalist="original/cohort/datalist.json",
            out_dir="original/pre",
            mode="pretrain",
            epochs=1,
            **common,
        )
    )
    train(
        TrainConfig(
            datalist="original/cohort/datalist.json",
            out_dir="original/cls",
            epochs=1,
            pretrained="original/pre/best.pt",
            **common,
        )
    )
    saved = json.loads((original / "cls" / "config.json").read_text())
    assert saved["datalist"] == "../cohort/datalist.json" and saved["pretrained"] == "../pre/best.pt"

    copy = tmp_path / "archive" / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    image = next((copy / "cohort" / "images").iterdir())
    explain_image(copy / "cls", image, elsewhere / "explain", track=False, progress=False)
    assert (elsewhere / "explain" / "report.html").is_file()
    # the training images were found through the moved config: the scale is theirs, not the prior
    assert "training images" in json.loads((copy / "cls" / LATENT_SCALE_FILE).read_text())["source"]
    audited = audit(
        copy / "cls",
        copy / "cohort" / "datalist.json",
        elsewhere / "audit",
        n_permutations=400,
        attributes=["sex", "site"],
        n_boot=20,
        track=False,
        progress=False,
    )
    assert (elsewhere / "audit" / "report.html").is_file() and "flags" in audited
