"""Fixtures for analysis tests: a small phantom cohort and a run folder of an (untrained) network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from phantoms import PhantomConfig, generate_cohort
from pipelines.training import build_network
from pipelines.training_config import TrainConfig


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-image brain2d cohort at 32×32 (png); returns its datalist path."""
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(PhantomConfig(kind="brain2d", n=40, seed=3, size=32), out, progress=False)
    return out / "datalist.json"


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory: pytest.TempPathFactory, small_cohort: Path) -> Path:
    """A run folder as training writes it (config.json, best.pt) holding a seeded, untrained tiny net."""
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(datalist=small_cohort, out_dir=out, spatial_size=(32, 32), latent_dim=8)
    (out / "config.json").write_text(json.dumps(config.to_json()))
    torch.manual_seed(0)
    torch.save({"model": build_network(config).state_dict()}, out / "best.pt")
    return out
