"""Tests of evaluation/synthesis_figures.py: panels for 2D and 3D cases, with and without a target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.synthesis_figures import display_slice, synthesis_panel


@pytest.mark.parametrize("shape", [(16, 16), (1, 16, 16), (12, 12, 8)])
@pytest.mark.parametrize("with_target", [True, False])
def test_panel_is_written(tmp_path: Path, shape: tuple[int, ...], with_target: bool) -> None:
    source = np.random.default_rng(0).random(shape)
    mask = np.zeros(shape)
    if shape == (12, 12, 8):
        mask[4:7, 4:7, 3:5] = 1
    else:
        mask[..., 4:7, 4:7] = 1
    target = source + 0.5 * mask if with_target else None
    out = synthesis_panel(tmp_path / "sub" / "case.png", source, source, target, mask, title="case")
    width, height = Image.open(out).size
    assert out.is_file() and width > 2 * height  # one row of columns


def test_3d_slice_goes_through_the_lesion() -> None:
    volume = np.zeros((8, 8, 10))
    mask = np.zeros((8, 8, 10))
    mask[2:4, 2:4, 7] = 1
    _, index = display_slice(volume, mask)
    assert index == 7
    assert display_slice(volume)[1] == 5
    assert display_slice(np.zeros((8, 8)))[1] is None


def test_mismatched_shapes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"same shape"):
        synthesis_panel(tmp_path / "x.png", np.zeros((8, 8)), np.zeros((8, 9)))
