"""Fixtures for the analysis pipelines: a phantom cohort and a run folder whose head reads one latent.

The network is untrained (seeded), but its linear head is set to read latent ``SHORTCUT_DIM``
only, and the datalist gains an attribute ``shortcut`` = (that latent above its median): a
model that relies on an attribute by construction, which the audit must flag, while the
phantoms' ``random_group`` (drawn independently of image and label) must not be flagged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from phantoms import PhantomConfig, generate_cohort
from pipelines.training import build_network
from pipelines.training_config import TrainConfig

SHORTCUT_DIM = 2


@pytest.fixture(scope="session")
def shortcut_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(run folder, datalist)``: 200 brain2d phantoms at 32×32, sections validation and test of 100 each.

    100 per section keeps the single-split leakage permutation test (30 % held out) powerful
    enough that its outcome does not hang on the random network (60 per section held out 18).
    """
    root = tmp_path_factory.mktemp("shortcut")
    generate_cohort(PhantomConfig(kind="brain2d", n=200, seed=11, size=32), root / "cohort", progress=False)
    source = json.loads((root / "cohort" / "datalist.json").read_text())
    records = [r for s in ("training", "validation", "test") for r in source[s]]
    config = TrainConfig(
        datalist=root / "cohort" / "datalist.json", out_dir=root / "run", spatial_size=(32, 32), latent_dim=8
    )
    torch.manual_seed(0)
    net = build_network(config).eval()
    from pipelines.latent_codes import load_model_input

    with torch.no_grad():
        # the head reads SHORTCUT_DIM alone; set before encoding: with pooled_logits (the default)
        # mu depends on the head's row space, not on the scale set below
        net.head.weight.zero_()
        net.head.weight[1, SHORTCUT_DIM] = 1.0
        net.head.weight[0, SHORTCUT_DIM] = -1.0
        mus = torch.cat(
            [net.encode(load_model_input(root / "cohort" / r["image"], (32, 32))[0])["mu"] for r in records]
        )
        median = float(mus[:, SHORTCUT_DIM].median())
        scale = 4.0 / float(mus[:, SHORTCUT_DIM].std())
        net.head.weight[1, SHORTCUT_DIM] = scale
        net.head.weight[0, SHORTCUT_DIM] = -scale
        net.head.bias.copy_(torch.tensor([scale * median, -scale * median]))
    for record, mu in zip(records, mus, strict=True):
        record["attributes"]["shortcut"] = "high" if float(mu[SHORTCUT_DIM]) > median else "low"
    order = np.random.default_rng(0).permutation(len(records))
    half = len(records) // 2
    data = {
        "validation": [records[i] for i in order[:half]],
        "test": [records[i] for i in order[half:]],
        "training": [records[i] for i in order[:half]],
    }
    datalist = root / "cohort" / "shortcut_datalist.json"
    datalist.write_text(json.dumps(data))
    run = root / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(config.to_json()))
    torch.save({"model": net.state_dict()}, run / "best.pt")
    return run, datalist
