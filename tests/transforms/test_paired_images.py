"""Tests of transforms/paired_images.py: the same-grid check and the shared intensity scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from transforms.paired_images import CheckSameGridd, ScaleByReferenced, scale_range


def _image(shape: tuple[int, ...], name: str, affine: np.ndarray | None = None) -> MetaTensor:
    meta = {"filename_or_obj": name}
    return MetaTensor(
        torch.zeros(shape), affine=torch.as_tensor(affine if affine is not None else np.eye(4)), meta=meta
    )


def test_same_grid_passes_and_missing_keys_are_skipped() -> None:
    d = {"source": _image((1, 8, 8), "a.png"), "target": _image((1, 8, 8), "b.png")}
    out = CheckSameGridd(("source", "target", "mask"), allow_missing_keys=True)(d)
    assert set(out) == {"source", "target"}


def test_different_shapes_name_both_files() -> None:
    d = {"source": _image((1, 8, 8), "pre/a.png"), "target": _image((1, 8, 6), "post/b.png")}
    with pytest.raises(
        ValueError,
        match=r"pre/a\.png and post/b\.png: source and target must have the same spatial shape, got \(8, 8\) and \(8, 6\)",
    ):  # noqa: E501
        CheckSameGridd(("source", "target"))(d)


def test_different_affines_name_both_files() -> None:
    d = {
        "source": _image((1, 8, 8, 8), "a.nii"),
        "target": _image((1, 8, 8, 8), "b.nii", np.diag([2.0, 1, 1, 1])),
    }
    with pytest.raises(ValueError, match=r"a\.nii and b\.nii: .*share one voxel grid \(same affine\)"):
        CheckSameGridd(("source", "target"))(d)
    # channels may differ (a mask), and a plain array without metadata is named by its key
    CheckSameGridd(("source", "mask"))(
        {"source": _image((1, 8, 8, 8), "a.nii"), "mask": np.zeros((2, 8, 8, 8))}
    )


@pytest.mark.parametrize("kind", [np.asarray, torch.as_tensor])
def test_one_scale_fitted_on_the_source(kind) -> None:
    source = kind(np.array([[0.0, 50.0, 100.0]]))
    target = kind(np.array([[0.0, 150.0, 100.0]]))  # enhanced: above the source's range
    d = ScaleByReferenced(("source", "target"), reference="source", lower=0, upper=100)(
        {"source": source, "target": target}
    )
    np.testing.assert_allclose(np.asarray(d["source"]), [[0.0, 0.5, 1.0]])
    np.testing.assert_allclose(np.asarray(d["target"]), [[0.0, 1.5, 1.0]])  # unclipped: enhancement kept
    assert d["source_scale"].tolist() == [0.0, 100.0]


def test_flat_source_and_bad_percentiles() -> None:
    assert scale_range(np.full((4, 4), 7.0)) == (7.0, 8.0)
    with pytest.raises(
        ValueError, match=r"percentiles must satisfy 0 <= lower < upper <= 100, got 50 and 50"
    ):
        ScaleByReferenced("source", reference="source", lower=50, upper=50)
