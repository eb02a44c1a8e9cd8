"""Tests for transforms/patch_erasing.py (expected regions are rebuilt from the recorded boxes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from transforms.keys import Keys
from transforms.patch_erasing import RandPatchErase, RandPatchErased

TYPES = ["numpy", "torch", "metatensor"]
SHAPES = [(2, 40, 30), (1, 16, 20, 12)]  # 2D with two channels, 3D with one channel
FILL = -7.0  # a value the test images never contain


def _as(kind: str, array: np.ndarray):
    if kind == "numpy":
        return array
    if kind == "torch":
        return torch.as_tensor(array)
    return MetaTensor(torch.as_tensor(array), meta={"source": "phantom"})


def _np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _ramp(shape: tuple[int, ...]) -> np.ndarray:
    """Distinct positive values, so any changed pixel is visible."""
    return np.arange(1, int(np.prod(shape)) + 1, dtype=np.float32).reshape(shape)


def _box_mask(boxes, spatial: tuple[int, ...]) -> np.ndarray:
    """Union of the boxes ``[start..., end...]`` (end exclusive) as a boolean spatial mask."""
    mask = np.zeros(spatial, dtype=bool)
    ndim = len(spatial)
    for box in boxes:
        mask[tuple(slice(box[i], box[ndim + i]) for i in range(ndim))] = True
    return mask


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_erased_pixels_are_exactly_the_recorded_boxes(kind, shape):
    image = _ramp(shape)
    img = _as(kind, image.copy())
    eraser = RandPatchErase(num_patches=(2, 4), size_fraction=(0.1, 0.25), fill=FILL, prob=1.0)
    eraser.set_random_state(seed=3)
    out = eraser(img)

    assert type(out) is type(img)
    assert out.shape == img.shape and out.dtype == img.dtype
    np.testing.assert_array_equal(_np(img), image)  # the input is never modified
    if kind == "metatensor":
        assert out.meta["source"] == "phantom"

    spatial = shape[1:]
    ndim = len(spatial)
    boxes = eraser.erased_boxes
    assert 2 <= len(boxes) <= 4
    for box in boxes:
        assert len(box) == 2 * ndim
        for axis, n in enumerate(spatial):
            start, end = box[axis], box[ndim + axis]
            assert 0 <= start < end <= n
            # edge = round(f * n), f in [0.1, 0.25]
            assert round(0.1 * n) <= end - start <= round(0.25 * n)

    erased = _box_mask(boxes, spatial)
    result = _np(out)
    assert (result[:, erased] == FILL).all()
    np.testing.assert_array_equal(result[:, ~erased], image[:, ~erased])


@pytest.mark.parametrize("shape", SHAPES)
def test_same_seed_same_boxes_and_replay(shape):
    image = _ramp(shape)
    first = RandPatchErase(num_patches=(1, 5), fill="noise").set_random_state(seed=11)
    second = RandPatchErase(num_patches=(1, 5), fill="noise").set_random_state(seed=11)
    out_first, out_second = first(image), second(image)
    assert first.erased_boxes == second.erased_boxes
    np.testing.assert_array_equal(out_first, out_second)
    # randomize=False re-applies the last draw exactly
    np.testing.assert_array_equal(first(image, randomize=False), out_first)
    # another seed gives other boxes
    third = RandPatchErase(num_patches=(1, 5), fill="noise").set_random_state(seed=12)
    third(image)
    assert third.erased_boxes != first.erased_boxes


@pytest.mark.parametrize("kind", TYPES)
def test_prob_zero_leaves_image_unchanged(kind):
    image = _ramp((1, 20, 20))
    eraser = RandPatchErase(num_patches=3, fill=FILL, prob=0.0)
    out = eraser(_as(kind, image.copy()))
    assert type(out) is type(_as(kind, image))
    np.testing.assert_array_equal(_np(out), image)
    assert eraser.erased_boxes == []


def test_prob_is_the_application_rate():
    eraser = RandPatchErase(fill=FILL, prob=0.5).set_random_state(seed=0)
    image = np.ones((1, 8, 8), dtype=np.float32)
    applied = 0
    for _ in range(400):
        eraser(image)
        applied += bool(eraser.erased_boxes)
    assert 160 <= applied <= 240  # binomial(400, 0.5): mean 200, sd 10


def test_mean_fill_uses_each_channel_mean():
    image = _ramp((2, 30, 30))
    expected_mean = image.reshape(2, -1).mean(axis=1)  # numpy reference
    eraser = RandPatchErase(num_patches=2, fill="mean").set_random_state(seed=5)
    out = eraser(torch.as_tensor(image))
    erased = _box_mask(eraser.erased_boxes, (30, 30))
    result = out.numpy()
    for channel in range(2):
        np.testing.assert_allclose(result[channel][erased], expected_mean[channel], rtol=1e-6)
    np.testing.assert_array_equal(result[:, ~erased], image[:, ~erased])


def test_noise_fill_has_the_image_mean_and_std():
    rng = np.random.default_rng(0)
    image = rng.normal(5.0, 2.0, size=(1, 64, 64)).astype(np.float32)
    eraser = RandPatchErase(num_patches=1, size_fraction=0.5, fill="noise").set_random_state(seed=1)
    out = eraser(image)
    erased = _box_mask(eraser.erased_boxes, (64, 64))
    assert erased.sum() == 32 * 32
    noise = out[0][erased]
    assert not np.array_equal(noise, image[0][erased])
    assert abs(noise.mean() - image.mean()) < 0.3  # 1024 samples: sd of the mean ~0.06
    assert abs(noise.std() - image.std()) < 0.3
    np.testing.assert_array_equal(out[:, ~erased], image[:, ~erased])


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_dict_twin_aligns_image_and_mask(kind, shape):
    image = _ramp(shape)
    mask = np.ones((1, *shape[1:]), dtype=np.float32)
    data = {Keys.IMAGE: _as(kind, image.copy()), Keys.MASK: _as(kind, mask.copy()), Keys.LABEL: 1}
    eraser = RandPatchErased(keys=(Keys.IMAGE, Keys.MASK), num_patches=(1, 3), fill=(FILL, 0.0))
    eraser.set_random_state(seed=2)
    out = eraser(data)

    boxes = out[Keys.ERASED_BOXES]
    ndim = len(shape) - 1
    assert isinstance(boxes, np.ndarray) and np.issubdtype(boxes.dtype, np.integer)
    assert boxes.ndim == 2 and boxes.shape[1] == 2 * ndim and 1 <= len(boxes) <= 3
    assert boxes.tolist() == eraser.erased_boxes
    erased = _box_mask(boxes, shape[1:])

    image_out, mask_out = _np(out[Keys.IMAGE]), _np(out[Keys.MASK])
    assert type(out[Keys.IMAGE]) is type(data[Keys.IMAGE])
    assert (image_out[:, erased] == FILL).all()
    np.testing.assert_array_equal(image_out[:, ~erased], image[:, ~erased])
    np.testing.assert_array_equal(mask_out[0], (~erased).astype(np.float32))  # same boxes in the mask
    assert out[Keys.LABEL] == 1
    np.testing.assert_array_equal(_np(data[Keys.IMAGE]), image)  # input dict untouched


def test_dict_twin_not_applied_stores_empty_boxes():
    image = _ramp((1, 10, 12, 8))
    out = RandPatchErased(keys=Keys.IMAGE, fill=FILL, prob=0.0)({Keys.IMAGE: image})
    np.testing.assert_array_equal(out[Keys.IMAGE], image)
    assert out[Keys.ERASED_BOXES].shape == (0, 6)


def test_dict_twin_same_seed_same_boxes():
    data = {"image": _ramp((1, 32, 32))}
    a = RandPatchErased("image", num_patches=(1, 4)).set_random_state(seed=9)(data)
    b = RandPatchErased("image", num_patches=(1, 4)).set_random_state(seed=9)(data)
    np.testing.assert_array_equal(a["erased_boxes"], b["erased_boxes"])


def test_dict_twin_rejects_mismatched_shapes():
    data = {"image": np.ones((1, 20, 20)), "mask": np.ones((1, 10, 10))}
    with pytest.raises(ValueError, match="spatial shape must match"):
        RandPatchErased(("image", "mask"))(data)


def test_replay_on_another_shape_is_rejected():
    eraser = RandPatchErase()
    eraser(np.ones((1, 20, 20)))
    with pytest.raises(ValueError, match=r"must match the shape the boxes were drawn for, \(20, 20\)"):
        eraser(np.ones((1, 30, 30)), randomize=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prob": 1.5}, r"prob must be in \[0, 1\], got 1.5"),
        ({"prob": -0.1}, r"prob must be in \[0, 1\], got -0.1"),
        ({"num_patches": 0}, r"num_patches must be an int >= 1 .*got 0"),
        ({"num_patches": (3, 1)}, r"num_patches .*1 <= min <= max, got \(3, 1\)"),
        ({"num_patches": 2.5}, r"num_patches must be .*got 2.5"),
        ({"size_fraction": (0.3, 0.2)}, r"size_fraction .*min <= max, got \(0.3, 0.2\)"),
        ({"size_fraction": (0.0, 0.2)}, r"size_fraction must be a fraction in \(0, 1\].*got \(0.0, 0.2\)"),
        ({"size_fraction": 1.5}, r"size_fraction must be .*got 1.5"),
        ({"fill": "median"}, r"fill must be a number, 'mean' or 'noise', got 'median'"),
    ],
)
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandPatchErase(**kwargs)
    with pytest.raises(ValueError, match=message):
        RandPatchErased(keys="image", **kwargs)


def test_dict_fill_per_key_must_match_keys():
    with pytest.raises(ValueError):
        RandPatchErased(keys=("image", "mask"), fill=(0.0, 0.0, 0.0))
