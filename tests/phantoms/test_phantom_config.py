"""Tests for phantoms/phantom_config.py: defaults, validation messages, JSON round trip."""

from __future__ import annotations

import json

import pytest

from phantoms import PhantomConfig


def test_defaults_are_valid() -> None:
    cfg = PhantomConfig()
    assert cfg.kind == "brain2d" and cfg.size == 64 and cfg.scale == 1.0 and cfg.spatial_dims == 2
    assert PhantomConfig(kind="brain3d", image_format="nifti").spatial_dims == 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"marker_correlation": 1.5}, r"marker_correlation must be in \[0.0, 1.0\], got 1.5"),
        ({"marker_correlation": float("nan")}, r"marker_correlation must be in"),
        ({"kind": "brain4d"}, r"kind must be one of .*got 'brain4d'"),
        ({"n": 0}, r"n must be an integer >= 1, got 0"),
        ({"n": 2.5}, r"n must be an integer >= 1, got 2.5"),
        ({"seed": -1}, r"seed must be an integer >= 0, got -1"),
        ({"size": 8}, r"size must be an integer \[16, 512\], got 8"),
        ({"image_format": "jpeg"}, r"image_format must be one of .*got 'jpeg'"),
        (
            {"kind": "brain3d", "image_format": "png"},
            r"image_format must be one of \('nifti', 'dicom'\) for kind",
        ),
        (
            {"split_fractions": (0.5, 0.5, 0.5)},
            r"split_fractions must be three non-negative numbers summing to 1",
        ),
        ({"split_fractions": (0.5, 0.5)}, r"split_fractions must be three"),
        ({"lesion_prevalence": -0.1}, r"lesion_prevalence must be in \[0.0, 1.0\], got -0.1"),
        ({"lesion_radius_range": (3.0, 2.0)}, r"lesion_radius_range must be a pair \(low, high\)"),
        ({"lesion_contrast_range": (0.1,)}, r"lesion_contrast_range must be a pair"),
        (
            {"lesions_per_image": (0, 2)},
            r"lesions_per_image must be a pair \(min, max\) of integers with 1 <= min <= max <= 255, got \(0, 2\)",
        ),
        ({"lesions_per_image": (3, 2)}, r"lesions_per_image must be a pair .*got \(3, 2\)"),
        ({"lesions_per_image": (1, 256)}, r"lesions_per_image must be a pair .*got \(1, 256\)"),
        ({"lesions_per_image": (1.0, 2)}, r"lesions_per_image must be a pair .*got \(1.0, 2\)"),
        ({"lesions_per_image": (True, 2)}, r"lesions_per_image must be a pair .*got \(True, 2\)"),
        ({"lesions_per_image": 3}, r"lesions_per_image must be a pair .*got 3"),
        ({"lesion_radius_range": (1.0, 30.0)}, r"lesion_radius_range high end 30.0 .* no room .* at size 64"),
        ({"site_noise_range": (-0.1, 0.1)}, r"site_noise_range must be a pair"),
        ({"n_sites": 0}, r"n_sites must be an integer \[1, 26\], got 0"),
        ({"n_sites": 27}, r"n_sites must be an integer \[1, 26\], got 27"),
        ({"marker_corner": "middle"}, r"marker_corner must be one of .*got 'middle'"),
        ({"marker_size": 0.0}, r"marker_size must be in \(0.0, 16.0\], got 0.0"),
        ({"tissue_intensity": 0.0}, r"tissue_intensity must be in \(0.0, 1.0\]"),
        ({"female_fraction": True}, r"female_fraction must be in"),
        ({"ventricle_age_slope": 0.015}, r"ventricle_age_slope \* \(age_range span\) .* must be < 0.8"),
    ],
)
def test_invalid_fields_raise(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PhantomConfig(**kwargs)


def test_round_trip_through_json() -> None:
    cfg = PhantomConfig(kind="brain3d", image_format="dicom", size=32, split_fractions=(0.6, 0.2, 0.2))
    back = PhantomConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg


def test_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match=r"unknown PhantomConfig fields: \['colour'\]"):
        PhantomConfig.from_dict({"colour": "red"})


def test_lesions_per_image_round_trips_and_large_radii_fit() -> None:
    cfg = PhantomConfig(lesions_per_image=[2, 5], lesion_radius_range=(1.0, 29.0))
    assert cfg.lesions_per_image == (2, 5)
    assert PhantomConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert PhantomConfig().lesions_per_image == (1, 1)
