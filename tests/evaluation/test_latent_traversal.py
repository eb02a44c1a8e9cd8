"""Latent traversals, aggregate-posterior scale, KL per latent and the contribution ranking."""

from __future__ import annotations

import math

import pytest
import torch

from evaluation.latent_traversal import (
    ACTIVE_KL_THRESHOLD,
    aggregate_posterior_std,
    kl_per_dimension,
    latent_traversal,
    rank_dimensions,
)
from networks import GlassBoxNet


@pytest.fixture
def net() -> GlassBoxNet:
    torch.manual_seed(0)
    return GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=6)


def test_aggregate_posterior_std_by_hand():
    mu = torch.tensor([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    logvar = torch.log(torch.tensor([[1.0, 0.25], [1.0, 0.25], [4.0, 0.25]]))
    # dim 0: population var of (0, 2, 4) = 8/3, mean posterior var (1 + 1 + 4) / 3 = 2
    # dim 1: no spread of the means, posterior var 0.25
    expected = [math.sqrt(8 / 3 + 2), 0.5]
    assert aggregate_posterior_std(mu, logvar).tolist() == pytest.approx(expected, rel=1e-6)
    # one image: the posterior's own standard deviation
    one = aggregate_posterior_std(torch.zeros(1, 2), torch.log(torch.tensor([[4.0, 9.0]])))
    assert one.tolist() == pytest.approx([2.0, 3.0])


def test_kl_per_dimension_by_hand():
    mu = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, math.log(2.0)]])
    # dim 0: 0.5 * mu² with unit variance → (0.5 + 4.5) / 2; dim 1: 0.5 * (2 - 1 - log 2)
    assert kl_per_dimension(mu, logvar).tolist() == pytest.approx([2.5, 0.5 * (1 - math.log(2.0))], rel=1e-6)


def test_latent_table_errors():
    with pytest.raises(
        ValueError, match=r"mu and logvar must have the same shape, got \(3, 2\) and \(3, 4\)"
    ):
        aggregate_posterior_std(torch.zeros(3, 2), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"mu must have shape \(N, latent_dim\)"):
        kl_per_dimension(torch.zeros(4), torch.zeros(4))
    with pytest.raises(TypeError, match="logvar must be a torch.Tensor"):
        kl_per_dimension(torch.zeros(1, 4), [[0.0] * 4])


def test_traversal_of_a_dim_the_decoder_ignores_changes_nothing(net):
    with torch.no_grad():
        net.decoder.fc.weight[:, 2] = 0.0  # the decoder no longer reads z2
    mu = torch.randn(6)
    result = latent_traversal(net, mu, torch.full((6,), 0.5), dims=[2, 4], steps=5, span=2.0)
    assert result.dims == [2, 4]
    assert result.values[0].tolist() == pytest.approx([-2.0, -1.0, 0.0, 1.0, 2.0])
    assert result.images.shape == (2, 5, 1, 32, 32) and result.diffs.shape == (2, 5, 1, 32, 32)
    assert result.diffs[0].abs().max() == 0.0
    assert result.diffs[1, [0, 1, 3, 4]].abs().amax(dim=(1, 2, 3)).min() > 0  # z4 does change the image
    # offset 0 is mu itself: its image is the reconstruction up to float rounding (decoded in a
    # batch of 5, the reconstruction alone; oneDNN may pick other kernels for other batch sizes)
    assert result.diffs[1, 2].abs().max() < 1e-6


def test_traversal_probability_follows_the_head_weights(net):
    mu = torch.randn(6)
    result = latent_traversal(net, mu, torch.ones(6), steps=7)
    assert result.dims == list(range(6))
    assert result.probs[:, 3].tolist() == pytest.approx([result.base_prob] * 6, abs=1e-6)
    slope = (net.head.weight[1] - net.head.weight[0]).detach()  # d(logit1 - logit0) / dz
    for row, dim in enumerate(result.dims):
        steps = result.probs[row].diff()
        assert bool((steps * slope[dim].sign() > 0).all()), f"z{dim} should move p monotonically"


def _batchnorm_stats(model: torch.nn.Module) -> list[torch.Tensor]:
    return [
        m.running_mean.clone()
        for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]


def test_traversal_leaves_the_model_in_training_mode_and_its_statistics_alone(net):
    net.train()
    before = _batchnorm_stats(net)
    assert before, "the decoder has batch norms whose statistics a train-mode decode would update"
    latent_traversal(net, torch.randn(1, 6), torch.ones(6), dims=[0], steps=3)
    assert net.training
    assert all(torch.equal(a, b) for a, b in zip(before, _batchnorm_stats(net), strict=True))


def test_traversal_errors(net):
    with pytest.raises(ValueError, match=r"sigma must be finite and > 0"):
        latent_traversal(net, torch.zeros(6), torch.tensor([1.0, 1, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"sigma must have shape \(6,\) like mu, got \(5,\)"):
        latent_traversal(net, torch.zeros(6), torch.ones(5))
    with pytest.raises(ValueError, match=r"dims must be distinct indices in \[0, 5\], got \[1, 6\]"):
        latent_traversal(net, torch.zeros(6), torch.ones(6), dims=[1, 6])
    with pytest.raises(ValueError, match=r"dims must be distinct"):
        latent_traversal(net, torch.zeros(6), torch.ones(6), dims=[1, 1])
    with pytest.raises(ValueError, match="steps must be an int >= 2, got 1"):
        latent_traversal(net, torch.zeros(6), torch.ones(6), steps=1)
    with pytest.raises(ValueError, match="span must be > 0"):
        latent_traversal(net, torch.zeros(6), torch.ones(6), span=0.0)
    with pytest.raises(ValueError, match=r"target_class must be in \[0, 1\], got 2"):
        latent_traversal(net, torch.zeros(6), torch.ones(6), target_class=2)
    with pytest.raises(ValueError, match=r"mu must have shape \(latent_dim,\)"):
        latent_traversal(net, torch.zeros(2, 6), torch.ones(6))


def test_ranking_puts_the_dim_the_head_reads_first(net):
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.weight[1, 5], net.head.weight[0, 5] = 2.0, -1.0
        net.head.weight[1, 1] = 0.1
    mu = torch.tensor([3.0, 1.0, 0.0, 0.0, 0.0, 0.5])
    kl = torch.tensor([0.0, 0.005, 0.02, 0.0, 0.0, 0.3])
    ranking = rank_dimensions(net, mu, kl)
    assert [r["dim"] for r in ranking[:2]] == [5, 1]
    # (2 × 0.5) for class 1 minus (−1 × 0.5) for class 0
    assert ranking[0]["contribution"] == pytest.approx(1.5)
    assert ranking[0]["abs_contribution"] == pytest.approx(1.5)
    assert ranking[1]["contribution"] == pytest.approx(0.1)
    assert [r["abs_contribution"] for r in ranking] == sorted(
        (r["abs_contribution"] for r in ranking), reverse=True
    )
    by_dim = {r["dim"]: r for r in ranking}
    assert ACTIVE_KL_THRESHOLD == 0.01
    assert [by_dim[d]["active"] for d in range(6)] == [False, False, True, False, False, True]
    assert by_dim[5]["kl"] == pytest.approx(0.3)
    towards_zero = rank_dimensions(net, mu, target_class=0)
    assert towards_zero[0]["dim"] == 5 and towards_zero[0]["contribution"] == pytest.approx(-1.5)
    assert towards_zero[0]["kl"] is None and towards_zero[0]["active"] is None


def test_ranking_errors(net):
    with pytest.raises(ValueError, match=r"kl_per_dim must have shape \(6,\) like mu, got \(4,\)"):
        rank_dimensions(net, torch.zeros(6), torch.zeros(4))
    mlp = GlassBoxNet(
        spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=6, head="mlp"
    )
    with pytest.raises(TypeError, match="linear head"):
        rank_dimensions(mlp, torch.zeros(6))


def test_spatial_core_traversal_moves_one_head_dimension_where_the_attention_looks():
    from networks import SpatialGlassBoxNet

    torch.manual_seed(0)
    net = SpatialGlassBoxNet(2, 1, 2, (32, 32), latent_dim=6, spatial_channels=4).eval()
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.weight[1, 2] = 1.0  # the class-1 logit reads pooled channel 2 alone
        enc = net.encode(torch.rand(1, 1, 32, 32))
    result = latent_traversal(
        net, enc["latent"][0], torch.ones(6), dims=[2, 5], steps=5, attention=enc["latent_attention"]
    )
    assert result.images.shape == (2, 5, 1, 32, 32)
    assert bool((result.probs[0].diff() > 0).all())  # channel 2 raises the class-1 logit
    assert torch.allclose(
        result.probs[1], torch.full((5,), result.base_prob), atol=1e-6
    )  # global code: not read
    with pytest.raises(ValueError, match="needs the image's attention map"):
        latent_traversal(net, enc["latent"][0], torch.ones(6), dims=[2])
