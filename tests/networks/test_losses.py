"""Tests for networks/losses.py: values against closed forms and reference functions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.losses import SSIMLoss

from networks.losses import (
    GlassBoxLoss,
    beta_kl,
    capacity_at,
    kl_per_dim,
    masked_cross_entropy,
    reconstruction_loss,
)


def test_kl_is_zero_for_standard_normal():
    assert torch.equal(kl_per_dim(torch.zeros(3, 5), torch.zeros(3, 5)), torch.zeros(5))


def test_kl_known_case_closed_form():
    # sample 1: mu=(1, 2), var=(1, 2); sample 2: mu=(0, 0), var=(1, 2)
    mu = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, math.log(2.0)]])
    # KL = 0.5 (mu^2 + var - log var - 1), then mean over the two samples
    dim0 = (0.5 * (1 + 1 - 0 - 1) + 0.0) / 2
    dim1 = (0.5 * (4 + 2 - math.log(2) - 1) + 0.5 * (0 + 2 - math.log(2) - 1)) / 2
    assert torch.allclose(kl_per_dim(mu, logvar), torch.tensor([dim0, dim1]))


def test_kl_matches_torch_distributions():
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(4, 3), torch.ones(4, 3))
    assert torch.allclose(kl_per_dim(mu, logvar), torch.distributions.kl_divergence(q, p).mean(0), atol=1e-6)


@pytest.mark.parametrize("step, expected", [(0, 0.0), (250, 5.0), (500, 10.0), (1000, 20.0), (5000, 20.0)])
def test_capacity_schedule(step, expected):
    assert capacity_at(step, c_max=20.0, c_steps=1000) == pytest.approx(expected)


def test_capacity_validation():
    with pytest.raises(ValueError, match=r"c_steps must be >= 1, got 0"):
        capacity_at(1, 5.0, 0)
    with pytest.raises(ValueError, match=r"step must be >= 0, got -1"):
        capacity_at(-1, 5.0, 10)


def test_beta_kl():
    assert beta_kl(torch.tensor(3.0), beta=4.0).item() == 12.0
    assert beta_kl(torch.tensor(3.0), beta=4.0, capacity=5.0).item() == 8.0
    assert beta_kl(torch.tensor(7.0), beta=0.5, capacity=5.0).item() == 1.0


def test_ce_ignores_unlabelled():
    logits = torch.randn(5, 3)
    labels = torch.tensor([2, -1, 0, -1, 1])
    keep = torch.tensor([0, 2, 4])
    expected = F.cross_entropy(logits[keep], labels[keep])
    assert torch.allclose(masked_cross_entropy(logits, labels), expected)
    assert torch.allclose(masked_cross_entropy(logits, labels.view(5, 1)), expected)


def test_ce_without_labels_is_zero_with_gradient():
    logits = torch.randn(3, 2, requires_grad=True)
    ce = masked_cross_entropy(logits, torch.tensor([-1, -1, -1]))
    assert ce.item() == 0.0
    ce.backward()
    assert torch.equal(logits.grad, torch.zeros(3, 2))


def test_reconstruction_reductions():
    recon, target = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    assert torch.allclose(reconstruction_loss(recon, target), F.mse_loss(recon, target, reduction="sum") / 2)
    assert torch.allclose(reconstruction_loss(recon, target, "l1", "mean"), F.l1_loss(recon, target))
    with pytest.raises(ValueError, match=r"target: expected the reconstruction's shape \(2, 1, 4, 4\)"):
        reconstruction_loss(recon, target[:, :, :2])


def _outputs(recon: torch.Tensor) -> dict[str, torch.Tensor]:
    mu = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    return {
        "recon": recon,
        "mu": mu,
        "logvar": torch.zeros(2, 2),
        "logits": torch.tensor([[2.0, 0.0], [0.0, 1.0]]),
    }


def test_glassbox_loss_terms_against_hand_values():
    recon = torch.zeros(2, 1, 4, 4)
    erased_input_is_not_used = torch.ones(2, 1, 4, 4)  # noqa: F841 - the loss never sees the input
    target = torch.full((2, 1, 4, 4), 0.5)
    loss_fn = GlassBoxLoss(beta=2.0, c_max=10.0, c_steps=100, ce_weight=3.0)
    terms = loss_fn(_outputs(recon), target, torch.tensor([0, -1]), step=10)
    recon_hand = 16 * 0.25  # sum over 16 pixels of 0.5^2
    kl_hand = 0.5 * 1.0  # only mu=1 in the first dim contributes
    ce_hand = math.log(1 + math.exp(-2.0))  # sample 0, label 0, logits (2, 0)
    assert terms["recon"].item() == pytest.approx(recon_hand)
    assert terms["kl"].item() == pytest.approx(kl_hand)
    assert torch.allclose(terms["kl_per_dim"], torch.tensor([0.5, 0.0]))
    assert terms["capacity"].item() == pytest.approx(1.0)
    assert terms["ce"].item() == pytest.approx(ce_hand)
    assert terms["loss"].item() == pytest.approx(recon_hand + 2.0 * abs(kl_hand - 1.0) + 3.0 * ce_hand)


def test_plain_beta_vae_and_iteration_attribute():
    loss_fn = GlassBoxLoss(beta=4.0)
    recon = torch.zeros(2, 1, 4, 4)
    terms = loss_fn(_outputs(recon), recon, labels=None)
    assert terms["capacity"].item() == 0.0 and terms["ce"].item() == 0.0
    assert terms["loss"].item() == pytest.approx(4.0 * 0.5)
    annealed = GlassBoxLoss(beta=1.0, c_max=4.0, c_steps=4)
    annealed.iteration = 2
    assert annealed(_outputs(recon), recon)["capacity"].item() == 2.0


def test_ssim_term_uses_monai_ssim():
    torch.manual_seed(0)
    recon, target = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    plain = GlassBoxLoss()(_outputs(recon), target)["recon"]
    with_ssim = GlassBoxLoss(ssim_weight=5.0)(_outputs(recon), target)["recon"]
    expected = SSIMLoss(spatial_dims=2, data_range=1.0)(recon, target)
    assert torch.allclose(with_ssim - plain, 5.0 * expected, atol=1e-5)


def test_loss_gradient_reaches_network_outputs():
    recon = torch.zeros(2, 1, 4, 4, requires_grad=True)
    out = _outputs(recon)
    out["mu"].requires_grad_(True)
    GlassBoxLoss(c_max=1.0, c_steps=10)(out, torch.ones(2, 1, 4, 4), torch.tensor([-1, -1]), step=3)[
        "loss"
    ].backward()
    assert recon.grad is not None and out["mu"].grad is not None


def test_loss_validation():
    with pytest.raises(ValueError, match=r"beta must be >= 0, got -1"):
        GlassBoxLoss(beta=-1)
    with pytest.raises(ValueError, match=r"recon_kind must be one of \('mse', 'l1'\), got 'huber'"):
        GlassBoxLoss(recon_kind="huber")
    with pytest.raises(ValueError, match=r"labels: expected 2 labels"):
        masked_cross_entropy(torch.zeros(2, 2), torch.tensor([0, 1, 1]))


def test_attention_sparsity_adds_the_weighted_mean_of_the_map_and_pushes_it_down():
    recon = torch.zeros(2, 1, 4, 4)
    attention = torch.tensor([[[[0.2, 0.8], [0.4, 0.6]]], [[[1.0, 0.0], [0.0, 0.0]]]], requires_grad=True)
    out = _outputs(recon) | {"attention": attention}
    plain = GlassBoxLoss()(out, recon)["loss"]
    sparse = GlassBoxLoss(attention_weight=10.0)(out, recon)["loss"]
    assert (sparse - plain).item() == pytest.approx(10.0 * 3.0 / 8)  # mean of the 8 cells is 3/8
    sparse.backward()
    assert torch.allclose(attention.grad, torch.full_like(attention, 10.0 / 8))  # every cell pushed down
    with pytest.raises(KeyError, match=r"attention_weight=1.0 needs the network's 'attention' output"):
        GlassBoxLoss(attention_weight=1.0)(_outputs(recon), recon)
    with pytest.raises(ValueError, match=r"attention_weight must be >= 0, got -1"):
        GlassBoxLoss(attention_weight=-1)
