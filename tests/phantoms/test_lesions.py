"""Tests for phantoms/lesions.py: exact masks, tight boxes, soft blobs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phantoms.lesions import Lesion, add_lesion, lesion_mask, mask_box


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
