"""Explanation figures are valid PNGs for 2D and 3D inputs; bad inputs are refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation.counterfactuals import latent_shift_counterfactual
from evaluation.explanation_figures import counterfactual_figure, mid_slices, overlay_figure, traversal_figure
from evaluation.latent_traversal import latent_traversal, rank_dimensions
from networks import GlassBoxNet

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
        return image.size


def test_mid_slices():
    volume = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    x_plane, y_plane, z_plane = mid_slices(volume)
    assert np.array_equal(x_plane, volume[2]) and np.array_equal(y_plane, volume[:, 2])
    assert np.array_equal(z_plane, volume[:, :, 3])
    assert [s.shape for s in mid_slices(torch.zeros(4, 5, 6))] == [(5, 6), (4, 6), (4, 5)]
    (plane,) = mid_slices(np.ones((3, 7)))
    assert plane.shape == (3, 7)
    with pytest.raises(
        ValueError, match=r"volume must be 2D \(x, y\) or 3D \(x, y, z\), got shape \(1, 2, 3, 4\)"
    ):
        mid_slices(np.zeros((1, 2, 3, 4)))


@pytest.mark.parametrize("spatial_dims, size", [(2, 32), (3, 16)])
def test_figures_are_pngs(tmp_path, spatial_dims, size):
    torch.manual_seed(0)
    net = GlassBoxNet(spatial_dims=spatial_dims, in_channels=1, num_classes=2, img_size=size, latent_dim=4)
    image = torch.rand(1, 1, *[size] * spatial_dims)
    mu = torch.randn(4)
    traversal = latent_traversal(net, mu, torch.ones(4), dims=[2, 0], steps=5)
    small = _assert_png(
        traversal_figure(traversal, tmp_path / "a" / "traversal.png", ranking=rank_dimensions(net, mu))
    )
    counterfactual = latent_shift_counterfactual(net, image, max_steps=8)
    _assert_png(counterfactual_figure(image, counterfactual, tmp_path / "cf.png", n_strip=4))
    _assert_png(counterfactual_figure(image[0], counterfactual, tmp_path / "cf_chw.png", title="custom"))
    mask = torch.zeros(*[size] * spatial_dims)
    mask[tuple(slice(4, 10) for _ in range(spatial_dims))] = 1
    maps = {"random": torch.rand(*[size] * spatial_dims), "flat": np.zeros([size] * spatial_dims)}
    _assert_png(overlay_figure(image, maps, tmp_path / "overlay.png", mask=mask, title="maps"))
    _assert_png(overlay_figure(image[0, 0].numpy(), maps, tmp_path / "overlay_plain.png"))
    # more traversed latents, more rows
    tall = latent_traversal(net, mu, torch.ones(4), steps=5)
    assert _assert_png(traversal_figure(tall, tmp_path / "tall.png"))[1] > small[1]


def test_figure_errors(tmp_path):
    torch.manual_seed(0)
    net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=32, latent_dim=4)
    image = torch.rand(1, 1, 32, 32)
    counterfactual = latent_shift_counterfactual(net, image, max_steps=2)
    with pytest.raises(TypeError, match="result must be a TraversalResult, got CounterfactualResult"):
        traversal_figure(counterfactual, tmp_path / "x.png")
    with pytest.raises(TypeError, match="result must be a CounterfactualResult"):
        counterfactual_figure(image, "nope", tmp_path / "x.png")
    with pytest.raises(
        ValueError, match=r"image must match the counterfactual's spatial shape \(32, 32\), got \(16, 16\)"
    ):
        counterfactual_figure(torch.rand(1, 1, 16, 16), counterfactual, tmp_path / "x.png")
    with pytest.raises(ValueError, match="n_strip must be an int >= 2, got 1"):
        counterfactual_figure(image, counterfactual, tmp_path / "x.png", n_strip=1)
    with pytest.raises(ValueError, match="maps must hold at least one saliency map"):
        overlay_figure(image, {}, tmp_path / "x.png")
    with pytest.raises(
        ValueError, match=r"maps\['a'\] must have the image's spatial shape \(32, 32\), got \(16, 16\)"
    ):
        overlay_figure(image, {"a": np.zeros((16, 16))}, tmp_path / "x.png")
    with pytest.raises(
        ValueError, match=r"mask must have the image's spatial shape \(32, 32\), got \(32, 16\)"
    ):
        overlay_figure(image, {"a": np.zeros((32, 32))}, tmp_path / "x.png", mask=np.ones((32, 16)))
    with pytest.raises(
        ValueError, match=r"image must be \(1, C, \*spatial\), \(C, \*spatial\) or \(\*spatial\)"
    ):
        overlay_figure(torch.rand(1, 1, 1, 32, 32, 2), {"a": np.zeros((32, 32))}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
