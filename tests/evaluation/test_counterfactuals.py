"""Latent-shift counterfactuals flip the decision of a glass-box network along a straight, monotone path."""

from __future__ import annotations

import math

import pytest
import torch

from evaluation.counterfactuals import CounterfactualResult, latent_shift_counterfactual, target_log_odds
from networks import GlassBoxNet


@pytest.fixture
def net() -> GlassBoxNet:
    torch.manual_seed(0)
    return GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=8)


@pytest.fixture
def image() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(1, 1, 32, 32)


def test_target_log_odds_by_hand():
    assert target_log_odds(torch.tensor([[0.0, 2.0]]), 1).tolist() == pytest.approx([2.0])
    three = target_log_odds(torch.tensor([[1.0, 2.0, 3.0]]), 0)
    assert three.tolist() == pytest.approx([1.0 - math.log(math.exp(2.0) + math.exp(3.0))], rel=1e-6)


@pytest.mark.parametrize("target_class", [0, 1])
def test_untrained_linear_head_flips_along_a_straight_monotone_path(net, image, target_class):
    result = latent_shift_counterfactual(net, image, target_class=target_class, step_size=0.05, max_steps=500)
    assert isinstance(result, CounterfactualResult)
    probs = result.probs.tolist()
    started_positive = probs[0] >= 0.5
    assert result.flipped and (probs[-1] >= 0.5) != started_positive
    assert all((p >= 0.5) == started_positive for p in probs[:-1]), "the walk stops at the first crossing"
    steps = result.probs.diff()
    assert bool((steps < 0).all() if started_positive else (steps > 0).all()), (
        "monotone towards the threshold"
    )
    assert result.steps == len(probs) - 1 >= 1
    assert result.latents.shape == (result.steps + 1, 8)
    assert result.images.shape == (result.steps + 1, 1, 32, 32)
    # a linear head has one gradient direction, so the walk is a straight line of equal steps
    assert result.latent_distance == pytest.approx(0.05 * result.steps, rel=1e-4)
    assert result.latent_distance_sigma == pytest.approx(result.latent_distance, rel=1e-6)
    net.eval()
    with torch.no_grad():
        out = net(image)
    assert torch.allclose(result.latents[0], out["mu"][0])
    assert torch.allclose(result.images[0], out["recon"][0], atol=1e-5)
    assert result.probs[0].item() == pytest.approx(
        torch.softmax(out["logits"], 1)[0, target_class].item(), abs=1e-6
    )
    assert torch.allclose(result.diff_map, result.images[-1] - result.images[0])
    assert 0.0 <= result.reencoded_prob <= 1.0


def test_sigma_sets_the_step_unit(net, image):
    sigma = torch.linspace(0.5, 2.0, 8)
    result = latent_shift_counterfactual(net, image, sigma=sigma, step_size=0.05, max_steps=500)
    assert result.flipped
    assert result.latent_distance_sigma == pytest.approx(0.05 * result.steps, rel=1e-4)
    shift = result.latents[-1] - result.latents[0]
    assert result.latent_distance == pytest.approx(shift.norm().item(), rel=1e-5)
    assert result.latent_distance != pytest.approx(result.latent_distance_sigma, rel=1e-3)


def test_min_drop_stops_once_the_probability_has_moved_enough(net, image):
    result = latent_shift_counterfactual(net, image, step_size=0.02, max_steps=500, min_drop=0.05)
    moved = [abs(p - result.probs[0].item()) for p in result.probs.tolist()]
    assert moved[-1] >= 0.05 and max(moved[:-1]) < 0.05


def test_stops_after_max_steps_without_flipping(net, image):
    result = latent_shift_counterfactual(net, image, step_size=1e-4, max_steps=2)
    assert result.steps == 2 and not result.flipped and result.images.shape[0] == 3


def test_a_head_that_ignores_the_latent_gives_no_walk(net, image):
    with torch.no_grad():
        net.head.weight.zero_()
    result = latent_shift_counterfactual(net, image)
    assert result.steps == 0 and not result.flipped
    assert result.latent_distance == 0.0 and result.changed_fraction == 0.0


def test_mlp_head_flips_too():
    torch.manual_seed(2)
    mlp = GlassBoxNet(
        spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=8, head="mlp"
    )
    result = latent_shift_counterfactual(mlp, torch.rand(1, 1, 32, 32), step_size=0.2, max_steps=500)
    assert result.flipped


def test_changed_fraction_bounds(net, image):
    everything = latent_shift_counterfactual(net, image, change_tol=0.0)
    assert everything.changed_fraction > 0.9  # a latent move changes (almost) every decoded pixel
    nothing = latent_shift_counterfactual(net, image, change_tol=1e6)
    assert nothing.changed_fraction == 0.0


def test_model_mode_and_statistics_are_left_alone(net, image):
    net.train()
    stats = [m.running_mean.clone() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    latent_shift_counterfactual(net, image, max_steps=3)
    assert net.training
    after = [m.running_mean for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(stats, after, strict=True))
    assert all(p.grad is None for p in net.parameters())


def test_errors(net, image):
    with pytest.raises(ValueError, match=r"image must have shape \(1, C, \*spatial\), got \(2, 1, 32, 32\)"):
        latent_shift_counterfactual(net, torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\), got 1.5"):
        latent_shift_counterfactual(net, image, threshold=1.5)
    with pytest.raises(ValueError, match="step_size must be > 0"):
        latent_shift_counterfactual(net, image, step_size=0.0)
    with pytest.raises(ValueError, match="max_steps must be an int >= 1"):
        latent_shift_counterfactual(net, image, max_steps=0)
    with pytest.raises(ValueError, match=r"min_drop must be None or in \(0, 1\]"):
        latent_shift_counterfactual(net, image, min_drop=0.0)
    with pytest.raises(ValueError, match=r"sigma must be finite and > 0"):
        latent_shift_counterfactual(net, image, sigma=-torch.ones(8))
    with pytest.raises(ValueError, match=r"sigma must have shape \(8,\)"):
        latent_shift_counterfactual(net, image, sigma=torch.ones(3))
    with pytest.raises(ValueError, match=r"target_class must be in \[0, 1\], got 5"):
        latent_shift_counterfactual(net, image, target_class=5)
    with pytest.raises(TypeError, match="image must be a torch.Tensor"):
        latent_shift_counterfactual(net, image.numpy())


@pytest.fixture
def spatial_net():
    from networks import SpatialGlassBoxNet

    torch.manual_seed(0)
    net = SpatialGlassBoxNet(2, 1, 2, (32, 32), latent_dim=8, spatial_channels=6)
    with torch.no_grad():
        net.head.weight[:, :6].normal_()
    return net


@pytest.mark.parametrize("readout", ["latent", "image"])
def test_spatial_core_walk_decreases_the_logit_monotonically(spatial_net, image, readout):
    result = latent_shift_counterfactual(
        spatial_net, image, max_steps=60, frames=10, overshoot=1.0, readout=readout
    )
    probs = result.probs
    assert result.latents.shape[1] == spatial_net.latent_size  # the whole latent moves
    log_odds = torch.log(probs.clamp_min(1e-12)) - torch.log((1 - probs).clamp_min(1e-12))
    direction = 1.0 if probs[0] >= 0.5 else -1.0
    assert bool((direction * log_odds.diff() <= 1e-6).all()), f"not monotone: {probs.tolist()}"
    assert result.steps >= 1


def test_spatial_latent_readout_reaches_the_target_in_the_given_frames(spatial_net, image):
    """The head is linear in the whole latent under a fixed attention map: the walk lands on its target."""
    result = latent_shift_counterfactual(
        spatial_net, image, max_steps=60, frames=8, overshoot=2.0, readout="latent"
    )
    p0, p_end = float(result.probs[0]), float(result.probs[-1])
    assert result.flipped
    assert result.steps <= 9
    goal = -2.0 if p0 >= 0.5 else 2.0
    assert math.log(p_end / (1 - p_end)) == pytest.approx(goal, abs=0.05)
    # the shift is confined to where the attention map looks and to the grid (the head ignores the global code)
    shift = result.latents[-1] - result.latents[0]
    assert shift[spatial_net.spatial_channels * spatial_net.n_cells :].abs().max() < 1e-6


def test_readout_and_frames_are_checked(spatial_net, image):
    with pytest.raises(ValueError, match="readout must be one of"):
        latent_shift_counterfactual(spatial_net, image, readout="pixels")
    with pytest.raises(ValueError, match="frames must be None or an int >= 1"):
        latent_shift_counterfactual(spatial_net, image, frames=0)
    with pytest.raises(ValueError, match="overshoot must be >= 0"):
        latent_shift_counterfactual(spatial_net, image, overshoot=-1.0)


def test_attention_focus_moves_only_the_grid_cells_the_head_reads(spatial_net, image, monkeypatch):
    block = torch.zeros(1, 1, 8, 8)
    block[..., 2:4, 5:7] = 1.0  # the head reads four cells only
    monkeypatch.setattr(
        spatial_net.attention, "forward", lambda features: block.expand(features.shape[0], -1, -1, -1)
    )
    result = latent_shift_counterfactual(
        spatial_net, image, frames=5, overshoot=1.0, readout="image", focus="attention"
    )
    shift = result.latents[-1] - result.latents[0]
    grid, global_code = spatial_net.split_latent(shift[None])
    assert global_code.abs().max() == 0
    moved = grid[0].abs().sum(dim=0)
    assert moved[2:4, 5:7].sum() > 0
    outside = moved.clone()
    outside[2:4, 5:7] = 0.0
    assert outside.max() == 0  # nothing outside the attended cells
    everywhere = latent_shift_counterfactual(
        spatial_net, image, frames=5, overshoot=1.0, readout="image", focus="all"
    )
    free_grid, _ = spatial_net.split_latent((everywhere.latents[-1] - everywhere.latents[0])[None])
    assert free_grid[0].abs().sum(dim=0)[:2].sum() > 0  # without the focus, unattended cells move too
    with pytest.raises(ValueError, match="focus must be one of"):
        latent_shift_counterfactual(spatial_net, image, focus="everywhere")
