"""Tests for networks/spatial_glassbox.py and networks/spatial_decoder.py (the spatial-latent core)."""

from __future__ import annotations

import io

import pytest
import torch

from networks import GlassBoxLoss, SpatialGlassBoxNet, SpatialLatentDecoder


@pytest.fixture(scope="module")
def net2d() -> SpatialGlassBoxNet:
    torch.manual_seed(0)
    net = SpatialGlassBoxNet(2, 1, 3, (32, 32), latent_dim=10, spatial_channels=6)
    with torch.no_grad():  # a head that reads every pooled channel, non-trivially
        net.head.weight[:, :6].normal_()
    return net.eval()


@pytest.mark.parametrize(
    "spatial_dims, img_size, size",
    [
        (2, (32, 32), "tiny_fine"),
        (2, (32, 48), "tiny"),
        (3, (16, 16, 16), "tiny_fine"),
        (3, (16, 16, 24), "tiny"),
    ],
)
def test_output_shapes_2d_3d(spatial_dims, img_size, size):
    net = SpatialGlassBoxNet(spatial_dims, 2, 3, img_size, size=size, latent_dim=7, spatial_channels=4)
    out = net(torch.rand(2, 2, *img_size))
    stride = net.total_stride
    grid = tuple(s // stride for s in img_size)
    assert out["recon"].shape == (2, 2, *img_size)
    assert out["mu"].shape == out["logvar"].shape == (2, 7)
    assert out["spatial_mu"].shape == out["spatial_logvar"].shape == (2, 4, *grid)
    assert out["global_mu"].shape == (2, 3)
    assert out["logits"].shape == (2, 3)
    enc = net.eval().encode(torch.rand(1, 2, *img_size))
    assert (
        enc["latent"].shape
        == (1, net.latent_size)
        == (1, 4 * grid[0] * grid[1] * grid[-1] ** (spatial_dims - 2) + 3)
    )
    assert net.decode(enc["latent"]).shape == (1, 2, *img_size)


@pytest.mark.parametrize("spatial_dims, grid", [(2, (8, 8)), (3, (4, 4, 6))])
def test_decoder_shape(spatial_dims, grid):
    dec = SpatialLatentDecoder(spatial_dims, 4, 2, 1, grid, (16, 8))
    out = dec(torch.zeros(3, 4, *grid), torch.zeros(3, 2))
    assert out.shape == (3, 1, *(g * 4 for g in grid))


def test_decoder_draws_from_each_cell():
    """A change in one latent cell changes the image only within that cell's receptive field.

    Cell (2, 5) covers pixels 8–11 × 20–23; the decoder's four 3×3 convs (one at the grid, one
    after each ×2 upsampling, the output conv) reach rows 0–19 and columns 12–31, nothing else.
    """
    torch.manual_seed(0)
    dec = SpatialLatentDecoder(2, 4, 0, 1, (8, 8), (16, 8)).eval()
    grid = torch.zeros(1, 4, 8, 8)
    moved = grid.clone()
    moved[0, :, 2, 5] = 3.0
    diff = (dec(moved, torch.zeros(1, 0)) - dec(grid, torch.zeros(1, 0)))[0, 0].abs()
    assert diff[8:12, 20:24].sum() > 0
    assert diff[20:, :].abs().max() == 0
    assert diff[:, :12].abs().max() == 0


def test_logit_decomposition_is_exact(net2d):
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        out = net2d(x)
        contributions = net2d.latent_contributions(out["mu"])
        assert torch.allclose(contributions.sum(dim=2) + net2d.head.bias, out["logits"], atol=1e-5)
        # every position's share of the margin: summed, the spatial part of the margin
        weight = net2d.head.weight
        target = 2
        direction = weight[target] - (weight.sum(0) - weight[target]) / 2
        shares = net2d.position_contributions(x, target_class=target)
        assert shares.shape == (4, 1, 8, 8)
        spatial_part = out["mu"][:, :6] @ direction[:6]
        assert torch.allclose(shares.flatten(1).sum(1), spatial_part, atol=1e-4)
        # and the head vector of the whole latent under the attention map is mu again
        enc = net2d.encode(x)
        assert torch.allclose(net2d.head_vector(enc["latent"], enc["latent_attention"]), out["mu"], atol=1e-5)
        assert torch.allclose(
            net2d.classify_latent(enc["latent"], enc["latent_attention"]), out["logits"], atol=1e-5
        )


def test_head_ignores_the_global_code_by_default():
    torch.manual_seed(0)
    net = SpatialGlassBoxNet(2, 1, 2, (32, 32), latent_dim=10, spatial_channels=6)
    assert net.head.weight[:, 6:].abs().max() == 0
    loss = GlassBoxLoss(beta=1.0, ce_weight=1.0)(
        net(torch.rand(4, 1, 32, 32)), torch.rand(4, 1, 32, 32), torch.tensor([0, 1, 1, 0])
    )
    loss["loss"].backward()
    assert net.head.weight.grad[:, 6:].abs().max() == 0
    assert net.head.weight.grad[:, :6].abs().max() > 0
    free = SpatialGlassBoxNet(2, 1, 2, (32, 32), latent_dim=10, spatial_channels=6, head_reads_global=True)
    assert free.head.weight[:, 6:].abs().max() > 0


def test_latent_direction_moves_one_head_dimension(net2d):
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        enc = net2d.encode(x)
        for dim in (0, 7):
            moved = enc["latent"] + net2d.latent_direction(dim, enc["latent_attention"])
            delta = net2d.head_vector(moved, enc["latent_attention"]) - enc["mu"]
            others = torch.cat([delta[0, :dim], delta[0, dim + 1 :]])
            assert delta[0, dim] > 0
            assert others.abs().max() < 1e-5
    with pytest.raises(ValueError, match=r"dim must be in \[0, 9\]"):
        net2d.latent_direction(10, enc["latent_attention"])


def test_loss_regularises_grid_and_global_code():
    net = SpatialGlassBoxNet(2, 1, 2, (32, 32), latent_dim=6, spatial_channels=4)
    out = net(torch.rand(2, 1, 32, 32))
    terms = GlassBoxLoss(beta=1.0, ce_weight=0.0, spatial_beta=0.5)(out, torch.rand(2, 1, 32, 32))
    assert terms["kl_per_dim"].shape == (6,)
    assert terms["kl_grid"] > 0
    assert torch.allclose(terms["kl_per_dim"][:4].sum(), terms["kl_grid"])
    without = GlassBoxLoss(beta=1.0, ce_weight=0.0, spatial_beta=0.0)(out, torch.rand(2, 1, 32, 32))
    # same reconstruction target would differ; compare the KL share directly
    assert torch.allclose(terms["loss"] - terms["recon"] - terms["kl"], 0.5 * terms["kl_grid"], atol=1e-3)
    assert torch.allclose(without["loss"] - without["recon"] - without["kl"], torch.tensor(0.0), atol=1e-3)


def test_torchscript_export_keeps_outputs(net2d):
    scripted = torch.jit.script(net2d)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x)["logits"], net2d(x)["logits"], atol=1e-5)
        enc = loaded.encode(x)
        assert torch.allclose(loaded.decode(enc["latent"]), net2d.decode(enc["latent"]), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"spatial_channels": 20}, "spatial_channels must be <= latent_dim"),
        ({"img_size": (30, 32)}, "must be divisible by 4"),
        ({"size": "huge"}, "size must be one of"),
        ({"spatial_dims": 1}, "spatial_dims must be >= 2"),
        ({"latent_dim": 2.0}, "latent_dim must be an int"),
    ],
)
def test_refuses_bad_arguments(kwargs, match):
    args = {"spatial_dims": 2, "in_channels": 1, "num_classes": 2, "img_size": (32, 32)} | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        SpatialGlassBoxNet(**args)


def test_refuses_wrong_input(net2d):
    with pytest.raises(ValueError, match=r"does not match img_size \(32, 32\)"):
        net2d(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="latent: expected shape"):
        net2d.decode(torch.zeros(1, 5))
