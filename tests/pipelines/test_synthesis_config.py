"""Tests of pipelines/synthesis_config.py: defaults, validation messages, JSON round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.synthesis_config import SynthesisConfig
from pipelines.training_config import DEFAULT_TRACKING_URI


def test_defaults_l1_alone_as_the_bench_measured() -> None:
    cfg = SynthesisConfig(datalist="d.json", out_dir="run")
    assert cfg.l1_weight == 100.0 and cfg.adversarial_weight == 0.0 and not cfg.use_discriminator
    assert SynthesisConfig(datalist="d.json", out_dir="run", adversarial_weight=1.0).use_discriminator
    assert cfg.tracking_uri == DEFAULT_TRACKING_URI
    assert cfg.spatial_dims == 2 and isinstance(cfg.datalist, Path)
    assert not SynthesisConfig(datalist="d.json", out_dir="run", adversarial_weight=0).use_discriminator


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        (
            "spatial_size",
            (30, 32),
            r"spatial_size must be 2 or 3 positive ints divisible by 8 .* got \(30, 32\)",
        ),
        ("spatial_size", (32,), r"spatial_size must be 2 or 3 positive ints"),
        ("channels", (8,), r"channels must be at least 2 positive ints, got \(8,\)"),
        ("epochs", 0, r"epochs must be an int >= 1, got 0"),
        ("batch_size", 2.5, r"batch_size must be an int >= 1, got 2.5"),
        ("lr", 0, r"lr must be a number > 0, got 0"),
        ("l1_weight", -1, r"l1_weight must be a number >= 0, got -1"),
        ("adversarial_weight", True, r"adversarial_weight must be a number >= 0, got True"),
        ("flip_prob", 1.5, r"flip_prob must be in \[0, 1\], got 1.5"),
        ("cache_rate", -0.1, r"cache_rate must be in \[0, 1\], got -0.1"),
        ("enhancement_threshold", 0, r"enhancement_threshold must be a number > 0, got 0"),
        ("device", "tpu", r"device must be 'auto', 'cpu' or 'cuda', got 'tpu'"),
    ],
)
def test_invalid_fields_are_named(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SynthesisConfig(datalist="d.json", out_dir="run", **{field: value})


def test_nothing_to_train_is_refused() -> None:
    with pytest.raises(ValueError, match=r"l1_weight and adversarial_weight must not both be 0"):
        SynthesisConfig(datalist="d.json", out_dir="run", l1_weight=0, adversarial_weight=0)


def test_json_round_trip_with_relative_paths(tmp_path: Path) -> None:
    cfg = SynthesisConfig(datalist=tmp_path / "pairs" / "d.json", out_dir=tmp_path / "runs" / "s",
                          spatial_size=(16, 16, 16), channels=(4, 8), l1_weight=50.0)  # fmt: skip
    saved = cfg.to_json(relative_to=cfg.out_dir)
    assert saved["datalist"] == "../../pairs/d.json" and saved["out_dir"] == "."
    loaded = SynthesisConfig.from_json(saved, base=cfg.out_dir)
    assert loaded == cfg


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown SynthesisConfig fields: \['lambda_l1'\]"):
        SynthesisConfig.from_json({"datalist": "d.json", "out_dir": ".", "lambda_l1": 10})
