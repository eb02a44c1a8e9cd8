"""Tests for networks/latent.py: the pooled branch, the classifier's gradient path, the reparameterisation."""

from __future__ import annotations

import math

import pytest
import torch

from networks.glassbox import GlassBoxNet
from networks.latent import GaussianLatent, reparameterize


@pytest.mark.parametrize("pool", ["mean", "max"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_pooled_branch_reads_a_response_wherever_it_is(spatial_dims: int, pool: str) -> None:
    torch.manual_seed(0)
    size = (4,) * spatial_dims
    layer = GaussianLatent(spatial_dims, 6, size, 3, 5, pool=pool).eval()
    with torch.no_grad():
        layer.fc.weight.zero_()  # leave only the pooled branch (and the flattened branch's bias)
    a = torch.zeros(1, 6, *size)
    b = torch.zeros(1, 6, *size)
    a[(0, 2) + (0,) * spatial_dims] = 3.0  # one strong response in a corner ...
    b[(0, 2) + (3,) * spatial_dims] = 3.0  # ... or in the opposite one
    with torch.no_grad():
        mu_a, logvar_a, _ = layer(a)
        mu_b, _, _ = layer(b)
        mu_zero, _, _ = layer(torch.zeros(1, 6, *size))
    torch.testing.assert_close(mu_a, mu_b)
    pooled = 3.0 if pool == "max" else 3.0 / math.prod(size)
    expected = layer.fc.bias[:5] + layer.fc_pool.bias[:5] + pooled * layer.fc_pool.weight[:5, 2]
    torch.testing.assert_close(mu_a[0], expected)
    assert not torch.allclose(mu_a, mu_zero) and logvar_a.shape == (1, 5)


@pytest.mark.parametrize("path", ["pooled", "all"])
def test_classifier_input_equals_mu_and_its_gradient_skips_the_flattened_branch(path: str) -> None:
    torch.manual_seed(0)
    layer = GaussianLatent(2, 6, (4, 4), 3, 5, classifier_path=path).train()
    mu, logvar, mu_cls = layer(torch.rand(4, 6, 4, 4))
    torch.testing.assert_close(mu_cls, mu, rtol=0, atol=0)
    mu_cls.sum().backward()
    flat_grad = layer.fc.weight.grad
    assert layer.fc_pool.weight.grad.abs().sum() > 0
    if path == "pooled":
        assert flat_grad is None
    else:
        assert flat_grad is not None and flat_grad.abs().sum() > 0


def test_glassbox_logits_equal_the_head_on_mu_and_cross_entropy_leaves_the_flattened_branch() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 1, 32, 32)
    labels = torch.tensor([0, 1, 0, 1])
    grads = {}
    for path in ("pooled", "all"):
        net = GlassBoxNet(img_size=(32, 32), latent_dim=4, classifier_path=path)
        out = net.eval()(x)
        torch.testing.assert_close(out["logits"], net.classify(net.encode(x)["mu"]))
        net.train()
        torch.nn.functional.cross_entropy(net(x)["logits"], labels).backward()
        grads[path] = net.latent.fc.weight.grad
        assert net.encoder.layers[0].conv.weight.grad.abs().sum() > 0  # the encoder still learns to classify
    assert grads["pooled"] is None and grads["all"].abs().sum() > 0


def test_branch_can_be_switched_off_and_every_variant_scripts() -> None:
    plain = GaussianLatent(2, 6, (4, 4), 3, 5, pool="none", classifier_path="all")
    assert plain.fc_pool is None
    pooled = GaussianLatent(2, 6, (4, 4), 3, 5)
    assert (
        sum(p.numel() for p in pooled.parameters())
        == sum(p.numel() for p in plain.parameters()) + 6 * 10 + 10
    )
    x = torch.rand(2, 6, 4, 4)
    for layer in (plain.eval(), pooled.eval(), GaussianLatent(2, 6, (4, 4), 3, 5, pool="max").eval()):
        scripted = torch.jit.script(layer)
        torch.testing.assert_close(scripted(x)[0], layer(x)[0])
    net = GlassBoxNet(img_size=(32, 32), latent_pool="none", classifier_path="all")
    assert net.latent.fc_pool is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pool": "avg"}, r"pool must be one of \('mean', 'max', 'none'\), got 'avg'"),
        ({"classifier_path": "flat"}, r"classifier_path must be one of \('pooled', 'all'\), got 'flat'"),
        ({"pool": "none"}, r'classifier_path="pooled" needs a pooled branch, got pool="none"'),
    ],
)
def test_bad_options_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GaussianLatent(2, 6, (4, 4), 3, 5, **kwargs)


def test_glassbox_rejects_a_pooled_classifier_path_without_a_pooled_branch() -> None:
    with pytest.raises(ValueError, match=r"needs a pooled latent branch, got latent_pool=\"none\""):
        GlassBoxNet(img_size=(32, 32), latent_pool="none")
    with pytest.raises(ValueError, match="latent_pool"):
        GlassBoxNet(img_size=(32, 32), latent_pool="avg")


def test_reparameterize_uses_the_variance() -> None:
    torch.manual_seed(0)
    z = reparameterize(torch.zeros(20000, 1), torch.full((20000, 1), 2 * torch.log(torch.tensor(3.0)).item()))
    assert abs(z.std().item() - 3.0) < 0.1
