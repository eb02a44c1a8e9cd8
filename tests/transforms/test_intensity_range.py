"""Tests of transforms/intensity_range.py and the fixed-range branch of the preprocessing chain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from monai.transforms import Compose

from transforms.intensity_range import check_intensity_range, dataset_intensity_range
from transforms.preprocessing import preprocessing_transforms


def _write_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(array.astype(np.uint16)).save(path)
    return path


def _brain(spot: bool) -> np.ndarray:
    """A 32×32 'head' at 30000 with a 9-pixel spot at 50000 when ``spot`` (0.9 % of the pixels)."""
    image = np.zeros((32, 32))
    image[4:28, 4:28] = 30000.0
    image[8:24, 8:24] += np.linspace(0, 8000, 16)[None, :]  # some tissue contrast
    if spot:
        image[15:18, 15:18] = 50000.0
    return image


def test_pooled_percentiles_of_all_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 60000, size=(20, 30)) for _ in range(3)]
    files = [_write_png(tmp_path / f"{i}.png", a) for i, a in enumerate(arrays)]
    lo, hi = dataset_intensity_range(files, percentiles=(1, 99))
    pooled = np.concatenate([a.ravel() for a in arrays]).astype(float)
    assert (lo, hi) == pytest.approx(tuple(np.percentile(pooled, [1, 99])))


def test_sampling_is_seeded_and_bounded(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    files = [_write_png(tmp_path / f"{i}.png", rng.integers(0, 60000, size=(40, 40))) for i in range(6)]
    first = dataset_intensity_range(files, max_images=3, max_values_per_image=100, seed=5)
    assert first == dataset_intensity_range(files, max_images=3, max_values_per_image=100, seed=5)
    assert first != dataset_intensity_range(files, max_images=3, max_values_per_image=100, seed=6)
    missing = files[:1] + [tmp_path / "missing.png"] * 10
    with pytest.raises(Exception, match="missing.png"):
        dataset_intensity_range(missing)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": []}, "images must list at least one image file"),
        ({"percentiles": (50, 10)}, r"percentiles must be \(lower, upper\)"),
        ({"max_images": 0}, "max_images must be an int >= 1, got 0"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, message: str, tmp_path: Path) -> None:
    args = {"images": [_write_png(tmp_path / "a.png", _brain(False))], **kwargs}
    with pytest.raises(ValueError, match=message):
        dataset_intensity_range(**args)


def test_constant_images_have_no_range(tmp_path: Path) -> None:
    files = [_write_png(tmp_path / "flat.png", np.full((8, 8), 7))]
    with pytest.raises(ValueError, match="no intensity range to scale by"):
        dataset_intensity_range(files)


@pytest.mark.parametrize("value", [(1, 0), (0, float("nan")), (0,), "ab", (True, 2)])
def test_check_intensity_range_refuses(value) -> None:
    with pytest.raises(ValueError, match=r"intensity_range must be \(a_min, a_max\)"):
        check_intensity_range(value)


def _scaled(image: np.ndarray, **kwargs) -> np.ndarray:
    chain = Compose(preprocessing_transforms(spatial_size=(32, 32), **kwargs))
    return chain({"image": image[None].astype(np.float32)})["image"][0].numpy()


def test_one_range_scales_a_small_bright_spot_without_touching_the_rest() -> None:
    healthy, lesion = _brain(False), _brain(True)
    outside = np.ones((32, 32), bool)
    outside[15:18, 15:18] = False
    # per-image percentiles: the spot is the image's top 0.5 %, so the whole image is rescaled
    per_image = _scaled(lesion)[outside] - _scaled(healthy)[outside]
    assert np.abs(per_image).max() > 0.05
    # one dataset range: identical outside the spot, and the spot keeps its contrast (no clipping)
    fixed = {"intensity_range": (0.0, 38000.0)}
    a, b = _scaled(healthy, **fixed), _scaled(lesion, **fixed)
    np.testing.assert_allclose(a[outside], b[outside], atol=1e-6)
    assert b[15:18, 15:18].min() == pytest.approx(50000 / 38000, rel=1e-5)


def test_window_and_range_together_are_refused() -> None:
    with pytest.raises(ValueError, match="give window or intensity_range, not both"):
        preprocessing_transforms(window="brain", intensity_range=(0, 1))
