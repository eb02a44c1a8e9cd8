"""Tests for networks/shuffle_units.py and networks/encoder.py."""

from __future__ import annotations

import pytest
import torch

from networks.encoder import ShuffleEncoder
from networks.shuffle_units import ShuffleDownUnit, ShuffleUnit, channel_shuffle, make_branch


def test_channel_shuffle_interleaves_groups():
    x = torch.arange(6.0).reshape(1, 6, 1, 1, 1)  # 3D input
    # groups [0,1,2] and [3,4,5] interleaved by hand
    assert channel_shuffle(x, 2).flatten().tolist() == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    assert channel_shuffle(x, 3).flatten().tolist() == [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]


@pytest.mark.parametrize("unit", ["shuffle", "dense"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_unit_shapes(unit, spatial_dims):
    x = torch.rand(2, 8, *([8] * spatial_dims))
    assert ShuffleUnit(spatial_dims, 8, unit=unit)(x).shape == x.shape
    assert ShuffleDownUnit(spatial_dims, 8, 16, unit=unit)(x).shape == (2, 16, *([4] * spatial_dims))


def test_stride1_unit_passes_half_the_channels_through():
    unit = ShuffleUnit(2, 8, unit="shuffle").eval()
    x = torch.rand(1, 8, 4, 4)
    out = unit(x)
    # after the 2-group shuffle the untouched half sits at the even channels
    assert torch.equal(out[:, 0::2], x[:, :4])


def test_depthwise_conv_is_depthwise_and_dense_branch_has_equal_weights():
    c = 20
    shuffle = make_branch(2, c, c, unit="shuffle")
    dense = make_branch(2, c, c, unit="dense")
    conv_weights = [m.weight for m in shuffle.modules() if isinstance(m, torch.nn.Conv2d)]
    assert conv_weights[1].shape == (c, 1, 3, 3)  # depthwise
    n_shuffle = sum(w.numel() for w in conv_weights)
    n_dense = sum(m.weight.numel() for m in dense.modules() if isinstance(m, torch.nn.Conv2d))
    assert n_shuffle == 2 * c * c + 9 * c  # 1x1 + depthwise 3x3 + 1x1
    assert n_dense == 9 * c * 4 + 4 * c == 2 * c * c  # 3x3 into c/5 = 4 channels, 1x1 back


def test_unit_validation():
    with pytest.raises(ValueError, match=r"unit must be one of \('shuffle', 'dense'\), got 'dw'"):
        ShuffleUnit(2, 8, unit="dw")
    with pytest.raises(ValueError, match=r"channels must be even for a channel split, got 7"):
        ShuffleUnit(2, 7)
    with pytest.raises(ValueError, match=r"widths and depths must have the same length, got 2 and 1"):
        ShuffleEncoder(2, 1, 8, (16, 32), (1,))


def test_encoder_stride_and_channels():
    enc = ShuffleEncoder(3, 1, 8, (16, 32, 64), (1, 2, 1))
    assert enc.total_stride == 8
    assert enc(torch.rand(1, 1, 16, 16, 16)).shape == (1, 64, 2, 2, 2)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_strided_stem_takes_over_the_first_stages_downsampling(spatial_dims):
    full = ShuffleEncoder(spatial_dims, 1, 8, (16, 32), (1, 1))
    strided = ShuffleEncoder(spatial_dims, 1, 8, (16, 32), (1, 1), stem_stride=2)
    x = torch.rand(1, 1, *([16] * spatial_dims))
    assert strided.total_stride == full.total_stride == 4
    assert strided(x).shape == full(x).shape == (1, 32, *([4] * spatial_dims))
    # the stem runs at half resolution and the first unit keeps it
    stem_out = strided.layers[0](x)
    assert stem_out.shape[2:] == (8,) * spatial_dims
    assert strided.layers[1](stem_out).shape == (1, 16, *([8] * spatial_dims))
    # same weights, one stride moved: equally many parameters
    assert sum(p.numel() for p in strided.parameters()) == sum(p.numel() for p in full.parameters())


def test_strided_stem_output_cell_is_centred_on_twice_its_index():
    """A 'same'-padded stride-2 stem centres output cell i on input pixel 2i (what attention maps assume)."""
    enc = ShuffleEncoder(2, 1, 4, (8,), (1,), stem_stride=2)
    stem_conv = enc.layers[0].conv
    x = torch.zeros(1, 1, 16, 16, requires_grad=True)
    with torch.no_grad():
        stem_conv.weight.fill_(1.0)
    stem_conv(x)[0, :, 3, 5].sum().backward()
    rows, cols = torch.nonzero(x.grad[0, 0]).unbind(1)
    assert rows.float().mean().item() == pytest.approx(6.0)
    assert cols.float().mean().item() == pytest.approx(10.0)


def test_down_unit_and_stem_stride_validation():
    with pytest.raises(ValueError, match=r"stride must be 1 or 2, got 3"):
        ShuffleDownUnit(2, 8, 16, stride=3)
    with pytest.raises(ValueError, match=r"stem_stride must be 1 or 2, got 4"):
        ShuffleEncoder(2, 1, 8, (16,), (1,), stem_stride=4)
    assert ShuffleDownUnit(2, 8, 16, stride=1)(torch.rand(1, 8, 6, 6)).shape == (1, 16, 6, 6)
