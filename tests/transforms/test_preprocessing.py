"""Tests for transforms/preprocessing.py: fixed output size, [0, 1] intensities, aspect, binary masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from transforms.keys import Keys
from transforms.preprocessing import preprocessing_transforms


def _run(chain, data):
    for transform in chain:  # step by step, so errors surface unwrapped
        data = transform(data)
    return data


def _extent(binary: np.ndarray) -> list[int]:
    """Bounding-box edge length along each axis of the True pixels."""
    idx = np.nonzero(binary)
    return [int(i.max() - i.min() + 1) for i in idx]


@pytest.mark.parametrize(
    ("shape", "spatial_size"),
    [
        ((3, 50, 80), (64, 64)),
        ((1, 80, 50), (64, 64)),
        ((4, 20, 30), (64, 64)),  # upsampled RGBA
        ((1, 20, 30, 12), (32, 32, 32)),
        ((1, 40, 16, 24), (24, 24, 24)),
    ],
)
def test_output_shape_and_range(shape, spatial_size):
    rng = np.random.default_rng(0)
    image = rng.uniform(-500, 2000, size=shape).astype(np.float32)
    out = Compose(preprocessing_transforms(spatial_size=spatial_size))({Keys.IMAGE: image})[Keys.IMAGE]
    assert isinstance(out, torch.Tensor)
    assert tuple(out.shape) == (1, *spatial_size)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_channels_3_keeps_rgb():
    image = np.random.default_rng(1).uniform(0, 255, size=(3, 50, 80))
    out = Compose(preprocessing_transforms(channels=3))({"image": image})["image"]
    assert tuple(out.shape) == (3, 64, 64)


def test_aspect_preserved_and_mask_binary_2d():
    # 50 x 80 with a 20 x 20 square; 64 / 80 = 0.8 -> 40 x 64 image, 16 x 16 square, padded 12 + 12
    image = np.zeros((1, 50, 80), dtype=np.float32)
    image[0, 10:30, 30:50] = 1000.0
    mask = (image > 0).astype(np.uint8)
    chain = preprocessing_transforms(spatial_size=(64, 64), mask_keys=(Keys.MASK,))
    out = _run(chain, {Keys.IMAGE: image, Keys.MASK: mask})
    img, msk = out[Keys.IMAGE][0].numpy(), out[Keys.MASK][0].numpy()

    height, width = _extent(img > 0.5)
    assert abs(height - 16) <= 1 and abs(width - 16) <= 1 and abs(height - width) <= 1
    assert set(np.unique(msk).tolist()) <= {0.0, 1.0}
    m_height, m_width = _extent(msk > 0)
    assert abs(m_height - 16) <= 1 and abs(m_width - 16) <= 1
    # padding is centred: the 40-row resized image sits in rows 12..51, the square at rows 20..35
    rows = np.nonzero(msk.any(axis=1))[0]
    assert abs(rows.min() - 20) <= 1 and abs(rows.max() - 35) <= 1
    # image and mask stay aligned
    assert np.abs((img > 0.5).astype(int) - msk.astype(int)).sum() <= 2 * 16


def test_aspect_preserved_and_mask_binary_3d():
    # 20 x 40 x 30 with a 10^3 cube; 32 / 40 = 0.8 -> cube of 8
    image = np.zeros((1, 20, 40, 30), dtype=np.float32)
    image[0, 5:15, 10:20, 10:20] = 1.0
    chain = preprocessing_transforms(spatial_size=(32, 32, 32), mask_keys="label")
    out = _run(chain, {"image": image, "label": image.copy()})
    assert tuple(out["image"].shape) == (1, 32, 32, 32)
    for edge in _extent(out["image"][0].numpy() > 0.5):
        assert abs(edge - 8) <= 1
    label = out["label"][0].numpy()
    assert set(np.unique(label).tolist()) <= {0.0, 1.0}
    for edge in _extent(label > 0):
        assert abs(edge - 8) <= 1


@pytest.mark.parametrize("window", ["brain", (40, 80)])
def test_ct_window_instead_of_percentiles(window):
    # 40 HU is the centre of the brain window -> 0.5; -1000 HU (air) -> 0
    image = np.full((1, 32, 32), 40.0, dtype=np.float32)
    image[0, :, :8] = -1000.0
    out = Compose(preprocessing_transforms(window=window))({"image": image})["image"][0].numpy()
    assert out.shape == (64, 64)
    np.testing.assert_allclose(out[:, 40:], 0.5, atol=1e-5)
    np.testing.assert_allclose(out[:, :12], 0.0, atol=1e-5)


def test_wrong_dimensionality_is_rejected():
    chain = preprocessing_transforms(spatial_size=(64, 64))
    with pytest.raises(
        ValueError, match=r"image: expected a channel-first image with 2 spatial axes.*\(1, 8, 8, 8\)"
    ):
        _run(chain, {"image": np.zeros((1, 8, 8, 8), dtype=np.float32)})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spatial_size": (64,)}, r"spatial_size must be 2 or 3 positive ints"),
        ({"spatial_size": (64, 0)}, r"spatial_size must be 2 or 3 positive ints"),
        ({"channels": 2}, r"channels must be 1 .* or 3 .*, got 2"),
        ({"percentiles": (99, 1)}, r"percentiles must be \(lower, upper\) with 0 <= lower < upper <= 100"),
        ({"percentiles": (0, 101)}, r"percentiles must be"),
        ({"window": "spine"}, r"preset must be one of"),
        ({"window": (40, 0)}, r"width must be"),
        ({"mask_keys": ("image",)}, r"keys and mask_keys must not overlap"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        preprocessing_transforms(**kwargs)
