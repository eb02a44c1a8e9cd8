"""Tests for networks/decoder.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from networks.decoder import LatentDecoder


def _conv_input_sizes(decoder: LatentDecoder, z: torch.Tensor) -> list[tuple[int, ...]]:
    """Spatial sizes of the inputs of every convolution in one forward pass."""
    sizes: list[tuple[int, ...]] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out: sizes.append(tuple(inp[0].shape[2:])))
        for m in decoder.modules()
        if isinstance(m, (nn.Conv2d, nn.Conv3d))
    ]
    decoder(z)
    for h in hooks:
        h.remove()
    return sizes


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("subpixel", [False, True])
def test_output_shape(spatial_dims, subpixel):
    dec = LatentDecoder(spatial_dims, 6, 2, (2,) * spatial_dims, (16, 8, 8), subpixel_output=subpixel)
    assert dec(torch.rand(3, 6)).shape == (3, 2, *([16] * spatial_dims))


def test_subpixel_output_runs_no_convolution_at_full_resolution():
    z = torch.rand(2, 4)
    plain = LatentDecoder(2, 4, 1, (4, 4), (16, 8, 8))
    subpixel = LatentDecoder(2, 4, 1, (4, 4), (16, 8, 8), subpixel_output=True)
    assert max(_conv_input_sizes(plain, z)) == (32, 32)
    assert max(_conv_input_sizes(subpixel, z)) == (16, 16)
    assert subpixel(z).shape == plain(z).shape == (2, 1, 32, 32)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_subpixel_output_starts_free_of_checkerboard(spatial_dims):
    """ICNR initialisation: at first every 2×2(×2) output block is one value, as nearest upsampling."""
    dec = LatentDecoder(spatial_dims, 4, 1, (2,) * spatial_dims, (8, 8), subpixel_output=True).eval()
    out = dec(torch.randn(2, 4))
    block = out.unfold(2, 2, 2).unfold(3, 2, 2)
    if spatial_dims == 3:
        block = block.unfold(4, 2, 2)
    flat = block.reshape(*block.shape[: 2 + spatial_dims], -1)
    assert flat.std().item() > 0  # the output is not constant overall
    assert torch.allclose(flat, flat[..., :1].expand_as(flat), atol=1e-6)
