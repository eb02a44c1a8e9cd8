"""Tests for networks/latent.py: the global-max branch and the reparameterisation."""

from __future__ import annotations

import pytest
import torch

from networks.glassbox import GlassBoxNet
from networks.latent import GaussianLatent, reparameterize


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_global_max_branch_reads_the_strongest_response_wherever_it_is(spatial_dims: int) -> None:
    torch.manual_seed(0)
    size = (4,) * spatial_dims
    layer = GaussianLatent(spatial_dims, 6, size, 3, 5).eval()
    with torch.no_grad():
        layer.fc.weight.zero_()  # leave only the max branch (and the flattened branch's bias)
    a = torch.zeros(1, 6, *size)
    b = torch.zeros(1, 6, *size)
    a[(0, 2) + (0,) * spatial_dims] = 3.0  # one strong response in a corner ...
    b[(0, 2) + (3,) * spatial_dims] = 3.0  # ... or in the opposite one
    with torch.no_grad():
        mu_a, logvar_a = layer(a)
        mu_b, _ = layer(b)
        mu_zero, _ = layer(torch.zeros(1, 6, *size))
    torch.testing.assert_close(mu_a, mu_b)
    expected = layer.fc.bias[:5] + layer.fc_max.bias[:5] + 3.0 * layer.fc_max.weight[:5, 2]
    torch.testing.assert_close(mu_a[0], expected)
    assert not torch.allclose(mu_a, mu_zero) and logvar_a.shape == (1, 5)


def test_branch_can_be_switched_off_and_both_variants_script() -> None:
    plain = GaussianLatent(2, 6, (4, 4), 3, 5, global_max=False)
    assert plain.fc_max is None
    with_max = GaussianLatent(2, 6, (4, 4), 3, 5)
    assert (
        sum(p.numel() for p in with_max.parameters())
        == sum(p.numel() for p in plain.parameters()) + 6 * 10 + 10
    )
    x = torch.rand(2, 6, 4, 4)
    for layer in (plain.eval(), with_max.eval()):
        scripted = torch.jit.script(layer)
        torch.testing.assert_close(scripted(x)[0], layer(x)[0])
    net = GlassBoxNet(img_size=(32, 32), latent_max_pool=False)
    assert net.latent.fc_max is None


def test_reparameterize_uses_the_variance() -> None:
    torch.manual_seed(0)
    z = reparameterize(torch.zeros(20000, 1), torch.full((20000, 1), 2 * torch.log(torch.tensor(3.0)).item()))
    assert abs(z.std().item() - 3.0) < 0.1
