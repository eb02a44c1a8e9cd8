"""Tests for phantoms/lesions.py: exact masks, tight boxes, soft blobs, several separated lesions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from phantoms.lesions import (
    Lesion,
    add_lesion,
    box_columns,
    instance_mask,
    lesion_mask,
    lesions_separated,
    mask_box,
    sample_lesion,
    sample_lesions,
)


@pytest.mark.parametrize(
    "centre, radius",
    [
        ((10.0, 12.0), 1.0),
        ((20.3, 7.8), 2.6),
        ((15.5, 15.5), 6.2),
        ((8.1, 9.9, 10.4), 2.2),
        ((12.0, 12.0, 12.0), 4.7),
    ],
)
def test_mask_is_pixels_within_radius(centre: tuple[float, ...], radius: float) -> None:
    shape = (32,) * len(centre)
    mask = lesion_mask(shape, Lesion(centre, radius, 0.2))
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    expected = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= radius**2
    np.testing.assert_array_equal(mask.astype(bool), expected)
    # every pixel square lies in the ball of radius r + h and covers the ball of radius r - h
    h = math.sqrt(len(shape)) / 2
    ball = (lambda r: math.pi * r * r) if len(shape) == 2 else (lambda r: 4 / 3 * math.pi * r**3)
    assert ball(max(radius - h, 0.0)) <= mask.sum() <= ball(radius + h)


def test_mask_box_is_tight_and_exclusive() -> None:
    mask = np.zeros((10, 12), np.uint8)
    mask[3:6, 4:9] = 1
    assert mask_box(mask) == [3, 4, 6, 9]
    vol = np.zeros((5, 6, 7), np.uint8)
    vol[1, 2, 3] = 1
    assert mask_box(vol) == [1, 2, 3, 2, 3, 4]
    with pytest.raises(ValueError, match="non-empty mask"):
        mask_box(np.zeros((4, 4)))


def test_add_lesion_profile() -> None:
    image = np.zeros((20, 20), np.float32)
    lesion = Lesion((10.0, 10.0), 3.0, 0.25)
    add_lesion(image, lesion, softness=1.0)
    assert image[10, 10] == pytest.approx(0.25)
    assert image[10, 13] == pytest.approx(0.125)  # at the nominal radius: half way down the ramp
    assert image[10, 14] == 0.0 and image[0, 0] == 0.0
    hard = np.zeros((20, 20), np.float32)
    add_lesion(hard, lesion, softness=0.0)
    np.testing.assert_array_equal(hard > 0, lesion_mask(hard.shape, lesion) > 0)


def test_separation_is_radii_plus_softness_plus_one_pixel() -> None:
    a = Lesion((10.0, 10.0), 2.0, 0.1)
    assert lesions_separated(a, Lesion((10.0, 16.6), 3.0, 0.1), softness=0.5)  # 6.6 > 2 + 3 + 0.5 + 1
    assert not lesions_separated(a, Lesion((10.0, 16.5), 3.0, 0.1), softness=0.5)  # 6.5 is not
    assert lesions_separated(a, Lesion((13.0, 14.0), 1.0, 0.1), softness=0.0)  # distance 5 > 2 + 1 + 0 + 1
    assert not lesions_separated(a, Lesion((12.0, 13.0), 1.0, 0.1), softness=0.0)  # sqrt(13) < 4


def test_instance_mask_numbers_lesions_in_order() -> None:
    lesions = [Lesion((8.0, 8.0), 2.0, 0.1), Lesion((20.2, 9.7), 3.1, 0.1), Lesion((14.0, 24.0), 1.0, 0.1)]
    mask = instance_mask((32, 32), lesions)
    assert mask.dtype == np.uint8
    for i, lesion in enumerate(lesions, start=1):
        np.testing.assert_array_equal(mask == i, lesion_mask(mask.shape, lesion) > 0)
    np.testing.assert_array_equal(instance_mask((32, 32), lesions[:1]), lesion_mask((32, 32), lesions[0]))
    np.testing.assert_array_equal(instance_mask((8, 8, 8), []), np.zeros((8, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="at most 255 lesions"):
        instance_mask((4, 4), [lesions[0]] * 256)


@pytest.mark.parametrize("kind, size", [("brain2d", 64), ("brain3d", 32)])
def test_sample_lesions_count_and_separation(kind: str, size: int) -> None:
    from phantoms.phantom_config import PhantomConfig

    fmt = "png" if kind == "brain2d" else "nifti"
    cfg = PhantomConfig(
        kind=kind, size=size, image_format=fmt, lesions_per_image=(2, 6), lesion_radius_range=(1.0, 10.0)
    )
    wm = np.zeros((size,) * cfg.spatial_dims)
    wm[(slice(size // 4, 3 * size // 4),) * cfg.spatial_dims] = 1.0  # a white-matter cube in the middle
    drawn_counts = set()
    for seed in range(6):
        lesions, drawn = sample_lesions(np.random.default_rng(seed), wm, cfg)
        assert 2 <= drawn <= 6 and 1 <= len(lesions) <= drawn
        drawn_counts.add(drawn)
        for a, b in itertools.combinations(lesions, 2):
            assert (
                math.dist(a.centre, b.centre) > a.radius + b.radius + cfg.lesion_edge_softness * cfg.scale + 1
            )
        for lesion in lesions:
            assert 1.0 <= lesion.radius <= 10.0 * cfg.scale
    assert len(drawn_counts) >= 2
    # the first lesion and the stream use match the single-lesion draw when min == max == 1
    single = PhantomConfig(kind=kind, size=size, image_format=fmt, lesion_radius_range=(1.0, 10.0))
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    lesions, drawn = sample_lesions(rng_a, wm, single)
    assert lesions == [sample_lesion(rng_b, wm, single)] and drawn == 1
    assert rng_a.random() == rng_b.random()


def test_box_columns() -> None:
    assert box_columns(2) == ["x0", "y0", "x1", "y1"]
    assert box_columns(3) == ["x0", "y0", "z0", "x1", "y1", "z1"]
