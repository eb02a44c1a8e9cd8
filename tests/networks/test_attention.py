"""Tests of networks/attention.py: the displayed map sits where the encoder's features look."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from networks import GlassBoxNet, upsample_attention


@pytest.mark.parametrize("spatial", [(64, 64), (32, 32, 32)])
def test_a_cell_lands_on_the_pixel_at_stride_times_its_index(spatial):
    cells = [s // 8 for s in spatial]
    for index in [(0,) * len(spatial), tuple(c // 2 for c in cells), tuple(c - 2 for c in cells)]:
        grid = torch.zeros(1, 1, *cells)
        grid[(0, 0, *index)] = 1.0
        up = upsample_attention(grid, list(spatial))
        assert up.shape == (1, 1, *spatial)
        peak = np.unravel_index(int(up.argmax()), spatial)
        assert tuple(int(p) for p in peak) == tuple(8 * i for i in index)
        assert float(up.max()) == 1.0 and float(up.min()) == 0.0


def test_the_last_cell_extends_to_the_far_edge_and_odd_ratios_fall_back():
    grid = torch.arange(4.0).view(1, 1, 2, 2)
    up = upsample_attention(grid, [8, 8])
    assert torch.equal(up[0, 0, 4:, 4:], torch.full((4, 4), 3.0))  # the last cell's value, unblended
    odd = upsample_attention(grid, [5, 5])  # not a whole multiple: plain resizing
    assert odd.shape == (1, 1, 5, 5) and 0.0 <= float(odd.min()) and float(odd.max()) <= 3.0
    with pytest.raises(ValueError, match="spatial_size: expected 2 entries for a 2D map"):
        upsample_attention(grid, [8])


def test_the_upsampled_cell_sits_on_the_centre_of_its_receptive_field():
    # the premise of the alignment, checked on the real encoder: the input pixels that move a
    # feature cell are centred on stride × index (plain resizing would draw it 3.5 px off)
    torch.manual_seed(0)
    net = GlassBoxNet(img_size=(64, 64)).eval()
    x = torch.rand(1, 1, 64, 64, requires_grad=True)
    features = net.encoder(x)
    rows, cols = np.mgrid[:64, :64]
    for i, j in [(3, 3), (2, 5), (5, 2)]:
        (grad,) = torch.autograd.grad(features[0, :, i, j].abs().sum(), x, retain_graph=True)
        weight = grad[0, 0].abs().numpy()
        centre = ((weight * rows).sum() / weight.sum(), (weight * cols).sum() / weight.sum())
        grid = torch.zeros(1, 1, 8, 8)
        grid[0, 0, i, j] = 1.0
        peak = np.unravel_index(int(upsample_attention(grid, [64, 64]).argmax()), (64, 64))
        assert abs(centre[0] - peak[0]) < 1.5 and abs(centre[1] - peak[1]) < 1.5
