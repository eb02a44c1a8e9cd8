"""Tests of networks/decoder_refinement.py: only the decoder moves, batch layout, the loss by hand, bad arguments."""

from __future__ import annotations

import pytest
import torch

from networks.decoder_refinement import (
    FrozenEncoderDecoder,
    RefinementReconstructionLoss,
    freeze_all_but_decoder,
    prior_count,
)
from networks.glassbox import GlassBoxNet
from networks.patch_critic import adversarial_loss, build_patch_critic, critic_loss, generator_loss
from networks.spatial_glassbox import SpatialGlassBoxNet


def _networks() -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [
        GlassBoxNet(2, 1, 2, (32, 32), size="tiny", latent_dim=4),
        SpatialGlassBoxNet(2, 1, 2, (32, 32), latent_dim=6, spatial_channels=4),
    ]


@pytest.mark.parametrize("index", [0, 1], ids=["vector", "spatial"])
def test_adversarial_steps_move_the_decoder_only(index: int) -> None:
    net = _networks()[index]
    latent_size = net.encode(torch.rand(1, 1, 32, 32))["latent"].shape[1]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainable = freeze_all_but_decoder(net)
    generator = FrozenEncoderDecoder(net, sampler=lambda n: torch.randn(n, latent_size), prior_share=0.5)
    critic = build_patch_critic(2, channels=4, num_layers_d=2)
    recon = RefinementReconstructionLoss(net, recon_weight=1.0, feature_weight=10.0)
    loss = adversarial_loss()
    opt_g, opt_d = torch.optim.Adam(trainable, lr=1e-2), torch.optim.Adam(critic.parameters(), lr=1e-2)
    images = torch.rand(4, 1, 32, 32)
    for _ in range(2):
        generator.train()
        fakes = generator(images)
        opt_g.zero_grad()
        (recon(fakes, images) + generator_loss(loss, critic(fakes))).backward()
        opt_g.step()
        opt_d.zero_grad()
        critic_loss(loss, critic(images), critic(fakes.detach())).backward()
        opt_d.step()
    after = net.state_dict()
    frozen = [k for k in before if not k.startswith("decoder.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # bit for bit, BN statistics too
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    assert recon.terms["feature"] > 0 and recon.terms["recon"] > 0


def test_batch_layout_and_modes() -> None:
    net = _networks()[0]
    drawn = []

    def sampler(n: int) -> torch.Tensor:
        drawn.append(n)
        return torch.zeros(n, 4)

    generator = FrozenEncoderDecoder(net, sampler=sampler, prior_share=0.25)
    images = torch.rand(6, 1, 32, 32)
    out = generator.train()(images)
    assert drawn == [2] and out.shape == (8, 1, 32, 32)  # 6 reconstructions, then 2 draws (25 %)
    assert not net.encoder.training and not net.head.training and net.decoder.training
    with torch.no_grad():
        eval_out = generator.eval()(images)
        assert torch.allclose(eval_out, net.decode(net.encode(images)["latent"]))  # reconstructions only
    assert drawn == [2]


def test_prior_count_by_hand() -> None:
    # share s of all fakes: k / (b + k) = s -> k = b s / (1 - s), rounded, at least 1 when s > 0
    assert [prior_count(16, s) for s in (0.0, 0.2, 0.5, 0.75)] == [0, 4, 16, 48]
    assert prior_count(1, 0.01) == 1


def test_reconstruction_term_by_hand() -> None:
    net = _networks()[0]
    loss = RefinementReconstructionLoss(net, recon_weight=2.0, feature_weight=0.0)
    fakes = torch.cat([torch.ones(2, 1, 4, 4), torch.full((3, 1, 4, 4), 7.0)])  # 2 reconstructions + 3 draws
    value = loss(fakes, torch.zeros(2, 1, 4, 4))
    # MSE summed per image (16 pixels of error 1), averaged over the 2 targets, times 2; the draws are ignored
    assert float(value) == pytest.approx(32.0)
    assert loss.terms == {"recon": 16.0, "feature": 0.0}


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda net: FrozenEncoderDecoder(net, sampler=None, prior_share=0.5),
            r"prior_share > 0 needs a latent sampler",
        ),
        (
            lambda net: FrozenEncoderDecoder(net, sampler=lambda n: None, prior_share=1.0),
            r"prior_share must be in \[0, 1\), got 1.0",
        ),
        (lambda net: RefinementReconstructionLoss(net, 0.0, 0.0), r"must not both be 0"),
        (lambda net: RefinementReconstructionLoss(net, -1.0, 0.0), r"recon_weight must be >= 0, got -1.0"),
        (lambda net: freeze_all_but_decoder(torch.nn.Linear(2, 2)), r"Linear has no decoder module"),
    ],
)
def test_bad_arguments(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(_networks()[0])
