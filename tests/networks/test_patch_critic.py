"""Tests of networks/patch_critic.py: shapes, the least-squares losses against hand-computed values, argument checks."""

from __future__ import annotations

import pytest
import torch

from networks.patch_critic import (
    PatchCritic,
    adversarial_loss,
    build_patch_critic,
    critic_loss,
    generator_loss,
)
from networks.translation import ConditionalPatchDiscriminator, build_discriminator


@pytest.mark.parametrize(("dims", "shape"), [(2, (2, 1, 32, 32)), (3, (1, 1, 16, 16, 16))])
def test_critic_scores_patches_of_one_image(dims: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    critic = build_patch_critic(dims, in_channels=1, channels=4, num_layers_d=2)
    logits = critic(torch.rand(shape))
    assert isinstance(critic, PatchCritic)
    assert logits.shape[:2] == (shape[0], 1) and logits.dim() == len(shape)


def test_conditional_discriminator_is_the_shared_critic_on_two_channels() -> None:
    torch.manual_seed(0)
    conditional = build_discriminator(2, channels=4, num_layers_d=2)
    assert isinstance(conditional, ConditionalPatchDiscriminator) and isinstance(conditional, PatchCritic)
    source, image = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    shared = PatchCritic(conditional.network)
    assert torch.equal(conditional(source, image), shared(source, image))
    assert set(conditional.state_dict()) == set(shared.state_dict())  # synthesis checkpoints still load


def test_least_squares_losses_by_hand() -> None:
    loss = adversarial_loss()
    real, fake = torch.full((1, 1, 2, 2), 0.5), torch.full((1, 1, 2, 2), 0.25)
    # critic: 0.5 * (mean((0.5 - 1)^2) + mean((0.25 - 0)^2)) = 0.5 * (0.25 + 0.0625)
    assert float(critic_loss(loss, real, fake)) == pytest.approx(0.15625)
    # generator: mean((0.25 - 1)^2) = 0.5625
    assert float(generator_loss(loss, fake)) == pytest.approx(0.5625)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spatial_dims": 1}, r"spatial_dims must be 2 or 3, got 1"),
        ({"spatial_dims": 2, "in_channels": 0}, r"in_channels must be an int >= 1, got 0"),
        ({"spatial_dims": 2, "channels": True}, r"channels must be an int >= 1, got True"),
        ({"spatial_dims": 3, "num_layers_d": 0}, r"num_layers_d must be an int >= 1, got 0"),
    ],
)
def test_critic_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_patch_critic(**kwargs)
