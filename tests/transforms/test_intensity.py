"""Tests for transforms/intensity.py with hand-computed values (and Pillow as the luma reference)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRange
from PIL import Image

from transforms.intensity import CT_WINDOW_PRESETS, CTWindow, CTWindowd, ToGrey, ToGreyd

# (center, width) as published for each preset, written out here rather than read from the module
PRESETS = {
    "brain": (40, 80),
    "subdural": (75, 215),
    "lung": (-600, 1500),
    "mediastinum": (50, 350),
    "abdomen": (40, 400),
    "bone": (400, 1800),
    "liver": (30, 150),
}


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# ---------------------------------------------------------------- CTWindow


def test_ct_window_center_width_by_hand():
    # window 40/80 -> [0, 80] HU maps to [0, 1]
    hu = np.array([[[-100.0, 0.0, 20.0, 40.0, 60.0, 80.0, 200.0]]])
    out = CTWindow(center=40, width=80)(hu)
    np.testing.assert_allclose(_np(out), [[[0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]]], atol=1e-6)
    assert out.dtype == torch.float32
    assert isinstance(CTWindow(center=0, width=1), ScaleIntensityRange)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_ct_window_presets(name):
    center, width = PRESETS[name]
    assert CT_WINDOW_PRESETS[name] == (center, width)
    low, high = center - width / 2, center + width / 2
    hu = np.array([[[low - 10, low, low + width / 4, center, high, high + 10]]], dtype=np.float32)
    out = CTWindow(preset=name)(hu)
    np.testing.assert_allclose(_np(out), [[[0.0, 0.0, 0.25, 0.5, 1.0, 1.0]]], atol=1e-6)


def test_ct_window_lung_by_hand_on_torch_3d():
    # lung: [-1350, 150] HU; -975 HU is a quarter of the way
    hu = torch.full((1, 2, 2, 2), -975.0)
    np.testing.assert_allclose(_np(CTWindow(preset="lung")(hu)), np.full((1, 2, 2, 2), 0.25), atol=1e-6)


def test_ct_window_dict():
    data = {"image": np.array([[[0.0, 400.0, 1300.0]]]), "label": 3}
    out = CTWindowd("image", preset="bone")(data)  # bone: [-500, 1300]
    np.testing.assert_allclose(_np(out["image"]), [[[500 / 1800, 900 / 1800, 1.0]]], atol=1e-6)
    assert out["label"] == 3


def test_ct_window_unknown_preset_lists_presets():
    with pytest.raises(ValueError, match=r"preset must be one of \['abdomen', 'bone', 'brain'.*got 'spine'"):
        CTWindow(preset="spine")
    with pytest.raises(ValueError, match="one of"):
        CTWindowd("image", preset="spine")


@pytest.mark.parametrize("width", [0, -80, float("nan"), None])
def test_ct_window_rejects_bad_width(width):
    with pytest.raises(ValueError, match=r"width must be a finite number of HU > 0, got"):
        CTWindow(center=40, width=width)


def test_ct_window_rejects_preset_and_center_together():
    with pytest.raises(ValueError, match="not both"):
        CTWindow(center=40, width=80, preset="brain")


# ---------------------------------------------------------------- ToGrey

# (R, G, B) -> 0.299 R + 0.587 G + 0.114 B, worked out by hand
LUMA_CASES = [
    ((255, 0, 0), 76.245),
    ((0, 255, 0), 149.685),
    ((0, 0, 255), 29.07),
    ((10, 20, 30), 18.15),  # 2.99 + 11.74 + 3.42
    ((100, 100, 100), 100.0),
]


def _rgb_image(channels: int = 3) -> np.ndarray:
    pixels = np.array([rgb for rgb, _ in LUMA_CASES], dtype=np.float32).T  # (3, 5)
    if channels == 4:
        pixels = np.concatenate([pixels, np.full((1, 5), 77.0, dtype=np.float32)])  # alpha
    return pixels.reshape(channels, 1, 5)


def _as(kind: str, array: np.ndarray):
    if kind == "numpy":
        return array
    if kind == "torch":
        return torch.as_tensor(array)
    return MetaTensor(torch.as_tensor(array), affine=torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0])))


@pytest.mark.parametrize("kind", ["numpy", "torch", "metatensor"])
@pytest.mark.parametrize("channels", [3, 4])
def test_to_grey_luma_by_hand(kind, channels):
    img = _as(kind, _rgb_image(channels))
    out = ToGrey()(img)
    assert type(out) is type(img)
    assert tuple(out.shape) == (1, 1, 5)
    np.testing.assert_allclose(_np(out).ravel(), [v for _, v in LUMA_CASES], rtol=1e-5)
    if kind == "metatensor":
        np.testing.assert_array_equal(_np(out.affine), np.diag([2.0, 3.0, 1.0, 1.0]))


@pytest.mark.parametrize("kind", ["numpy", "torch", "metatensor"])
def test_to_grey_single_channel_unchanged(kind):
    img = _as(kind, np.arange(12, dtype=np.float32).reshape(1, 3, 4))
    out = ToGrey()(img)
    assert type(out) is type(img)
    np.testing.assert_array_equal(_np(out), np.arange(12, dtype=np.float32).reshape(1, 3, 4))


def test_to_grey_matches_pillow_on_uint8():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    reference = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)  # rounded luma
    out = ToGrey()(np.moveaxis(rgb, -1, 0))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], reference, atol=0.6)


def test_to_grey_3d_volume():
    vol = np.stack([np.full((2, 3, 4), v, dtype=np.float64) for v in (10.0, 20.0, 30.0)])
    out = ToGrey()(vol)
    assert out.shape == (1, 2, 3, 4) and out.dtype == np.float64
    np.testing.assert_allclose(out, 18.15)


@pytest.mark.parametrize("channels", [2, 5])
def test_to_grey_rejects_other_channel_counts(channels):
    with pytest.raises(
        ValueError, match=rf"1 \(grey\), 3 \(RGB\) or 4 \(RGBA\) channels, got {channels} channels"
    ):
        ToGrey()(np.zeros((channels, 4, 4)))


def test_to_grey_dict():
    data = {"image": _rgb_image(3), "mask": np.ones((1, 1, 5))}
    out = ToGreyd("image")(data)
    np.testing.assert_allclose(out["image"].ravel(), [v for _, v in LUMA_CASES], rtol=1e-5)
    assert out["mask"] is data["mask"]
