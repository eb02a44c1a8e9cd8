"""Tests for networks/latent.py: the pooled branch, the classifier's gradient path, the reparameterisation."""

from __future__ import annotations

import math

import pytest
import torch

from networks.glassbox import GlassBoxNet
from networks.latent import GaussianLatent, remove_directions, reparameterize


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
    attention = torch.rand(4, 1, 4, 4, requires_grad=True)
    mu, logvar, mu_cls = layer(torch.rand(4, 6, 4, 4), attention)
    torch.testing.assert_close(mu_cls, mu, rtol=0, atol=0)
    mu_cls.sum().backward()
    flat_grad = layer.fc.weight.grad
    assert layer.fc_attention_pool.weight.grad.abs().sum() > 0
    assert attention.grad.abs().sum() > 0  # the classifier trains the attention map
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
    pooled = GaussianLatent(2, 6, (4, 4), 3, 5, pool="mean")
    attention = GaussianLatent(2, 6, (4, 4), 3, 5)
    assert attention.fc_pool is None and pooled.fc_attention_pool is None
    for layer in (pooled, attention):
        assert (
            sum(p.numel() for p in layer.parameters())
            == sum(p.numel() for p in plain.parameters()) + 6 * 10 + 10
        )
    x, att = torch.rand(2, 6, 4, 4), torch.rand(2, 1, 4, 4)
    for layer in (plain, pooled, attention, GaussianLatent(2, 6, (4, 4), 3, 5, pool="max")):
        scripted = torch.jit.script(layer.eval())
        torch.testing.assert_close(scripted(x, att)[0], layer(x, att)[0])
    net = GlassBoxNet(img_size=(32, 32), latent_pool="none", classifier_path="all")
    assert net.latent.fc_pool is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pool": "avg"}, r"pool must be one of \('attention', 'mean', 'max', 'none'\), got 'avg'"),
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


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_attention_pool_is_the_attention_weighted_average_of_the_ungated_features(spatial_dims: int) -> None:
    torch.manual_seed(0)
    size = (4,) * spatial_dims
    layer = GaussianLatent(spatial_dims, 6, size, 3, 5).eval()
    features = torch.rand(1, 6, *size)
    flat = layer.fc(torch.flatten(layer.reduce(features), 1))[0, :5]

    def pooled_mu(attention: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return layer(features, attention)[0][0] - flat

    w, b = layer.fc_attention_pool.weight[:5], layer.fc_attention_pool.bias[:5]
    one_hot = torch.zeros(1, 1, *size)
    one_hot[(0, 0) + (1,) * spatial_dims] = 0.7  # one attended position, any height
    at_position = features[(0, slice(None)) + (1,) * spatial_dims]
    torch.testing.assert_close(pooled_mu(one_hot), w @ at_position + b)
    uniform = torch.full((1, 1, *size), 0.3)  # uniform attention = the plain average
    torch.testing.assert_close(pooled_mu(uniform), w @ features.flatten(2).mean(2)[0] + b)
    torch.testing.assert_close(pooled_mu(torch.zeros(1, 1, *size)), b)  # nothing attended
    with pytest.raises(ValueError, match="needs the attention map, got attention=None"):
        layer(features)


def test_glassbox_attention_pool_reads_ungated_features_for_the_decoder() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32)
    net = GlassBoxNet(img_size=(32, 32), latent_dim=4).eval()
    handle = net.attention.register_forward_hook(lambda mod, inp, res: torch.zeros_like(res))
    try:
        with torch.no_grad():
            mu = net(x)["mu"]
            features = net.encoder(x)
            flat = net.latent.fc(torch.flatten(net.latent.reduce(features), 1))[:, :4]
            flat = remove_directions(flat, net._head_basis())  # pooled_logits (the default)
    finally:
        handle.remove()
    # a zero map removes the pooled branch only: the flattened branch still sees the image
    torch.testing.assert_close(mu, flat + net.latent.fc_attention_pool.bias[:4])
    assert not torch.allclose(mu[0], mu[1])


def test_reparameterize_uses_the_variance() -> None:
    torch.manual_seed(0)
    z = reparameterize(torch.zeros(20000, 1), torch.full((20000, 1), 2 * torch.log(torch.tensor(3.0)).item()))
    assert abs(z.std().item() - 3.0) < 0.1


@pytest.mark.parametrize("pool", ["attention", "mean", "max", "none"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_position_contributions_split_the_projection_exactly(spatial_dims: int, pool: str) -> None:
    torch.manual_seed(0)
    size = (4,) * spatial_dims
    path = "all" if pool == "none" else "pooled"
    layer = GaussianLatent(spatial_dims, 6, size, 3, 5, pool=pool, classifier_path=path).eval()
    direction = torch.randn(5)
    offsets = []
    for seed in (1, 2):  # the offset (biases) must not depend on the input
        torch.manual_seed(seed)
        features = torch.randn(2, 6, *size)
        attention = torch.rand(2, 1, *size)
        with torch.no_grad():
            mu = layer(features, attention)[0]
            shares = layer.position_contributions(features, direction, attention)
        assert shares.shape == (2, 1, *size)
        offsets.append(mu @ direction - shares.flatten(1).sum(dim=1))
    offsets = torch.cat(offsets)
    torch.testing.assert_close(offsets, offsets[:1].expand_as(offsets), atol=1e-4, rtol=0)


def test_max_pool_credits_each_channel_to_the_position_holding_its_maximum() -> None:
    layer = GaussianLatent(2, 2, (4, 4), 3, 2, pool="max").eval()
    with torch.no_grad():
        layer.fc.weight.zero_()  # only the max branch varies with the input
        layer.fc_pool.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))
    features = torch.zeros(1, 2, 4, 4)
    features[0, 0, 1, 2] = 2.0
    features[0, 1, 3, 0] = 5.0
    shares = layer.position_contributions(features, torch.tensor([1.0, -1.0]))[0, 0]
    expected = torch.zeros(4, 4)
    expected[1, 2], expected[3, 0] = 2.0, -5.0
    torch.testing.assert_close(shares, expected)


def test_position_contributions_name_a_bad_direction_and_a_missing_attention_map() -> None:
    layer = GaussianLatent(2, 6, (4, 4), 3, 5, pool="attention")
    with pytest.raises(ValueError, match=r"direction: expected shape \(5,\), got \(4,\)"):
        layer.position_contributions(torch.zeros(1, 6, 4, 4), torch.zeros(4), torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r'pool="attention" needs the attention map'):
        layer.position_contributions(torch.zeros(1, 6, 4, 4), torch.zeros(5))


@pytest.mark.parametrize("pool", ["attention", "mean"])
def test_pooled_logits_come_from_the_pooled_branch_alone(pool: str) -> None:
    """With ``pooled_logits`` the flattened branch cannot move the logits; ``classify(mu)`` still gives them."""
    torch.manual_seed(0)
    x = torch.rand(3, 1, 32, 32)
    net = GlassBoxNet(img_size=(32, 32), latent_dim=6, num_classes=3, latent_pool=pool).eval()
    plain = GlassBoxNet(img_size=(32, 32), latent_dim=6, num_classes=3, latent_pool=pool, pooled_logits=False)
    plain.load_state_dict(net.state_dict())  # same weights, no projection
    plain.eval()
    assert net.pooled_logits and not plain.pooled_logits
    with torch.no_grad():
        out, ref = net(x), plain(x)
        torch.testing.assert_close(out["logits"], net.classify(out["mu"]))
        net.latent.fc.weight.mul_(5.0).add_(torch.randn_like(net.latent.fc.weight))
        net.latent.fc.bias.add_(1.0)
        plain.latent.fc.weight.copy_(net.latent.fc.weight)
        plain.latent.fc.bias.copy_(net.latent.fc.bias)
        moved, moved_ref = net(x), plain(x)
    # the flattened branch changed: mu changes, the logits do not (without the projection they do)
    assert not torch.allclose(moved["mu"], out["mu"])
    torch.testing.assert_close(moved["logits"], out["logits"])
    assert not torch.allclose(moved_ref["logits"], ref["logits"], atol=1e-3)
    # the per-position split still sums to the margin less a constant (see position_contributions)
    with torch.no_grad():
        shares = net.position_contributions(x, target_class=2).flatten(1).sum(1)
        margin = moved["logits"][:, 2] - (moved["logits"].sum(1) - moved["logits"][:, 2]) / 2
        offset = margin - shares
    torch.testing.assert_close(offset, offset[:1].expand_as(offset))


def test_pooled_logits_validation() -> None:
    with pytest.raises(ValueError, match=r"pooled_logits=True needs head='linear'.*head='mlp'"):
        GlassBoxNet(img_size=(32, 32), head="mlp", pooled_logits=True)
    with pytest.raises(ValueError, match=r"num_classes=4, latent_dim=4"):
        GlassBoxNet(img_size=(32, 32), latent_dim=4, num_classes=4, pooled_logits=True)
    with pytest.raises(TypeError, match=r"pooled_logits must be a bool or None, got 'yes'"):
        GlassBoxNet(img_size=(32, 32), pooled_logits="yes")
    assert not GlassBoxNet(img_size=(32, 32), head="mlp").pooled_logits  # default: on only where it can be
    assert not GlassBoxNet(img_size=(32, 32), latent_pool="none", classifier_path="all").pooled_logits


def test_head_basis_spans_exactly_the_head_rows() -> None:
    net = GlassBoxNet(img_size=(32, 32), latent_dim=5)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.weight[0, 2], net.head.weight[1, 2] = -3.0, 3.0  # opposite rows: rank 1
    basis = net._head_basis()
    assert basis.shape == (5, 1)
    torch.testing.assert_close(basis.abs().flatten(), torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0]))
    with torch.no_grad():
        net.head.weight.zero_()
    assert net._head_basis().shape == (5, 0)  # a zero head takes nothing out
    scripted = torch.jit.script(net.eval())
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(scripted(x)["mu"], net(x)["mu"])
