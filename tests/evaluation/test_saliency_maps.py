"""Saliency maps: known answers on a network that reads one quadrant, shapes on GlassBoxNet in 2D and 3D."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from evaluation.counterfactuals import latent_shift_counterfactual
from evaluation.map_scores import pointing_game, topk_iou
from evaluation.saliency_maps import (
    SALIENCY_METHODS,
    attention_map,
    compute_maps,
    contribution_map,
    counterfactual_map,
    default_gradcam_layer,
    gradcam_map,
    occlusion_map,
)
from networks import GlassBoxNet


class _QuadrantFeatures(nn.Module):
    """Channel 0 keeps the top-left quadrant, channel 1 the bottom-right one."""

    def __init__(self, size: int) -> None:
        super().__init__()
        keep = torch.zeros(2, size, size)
        keep[0, : size // 2, : size // 2] = 1
        keep[1, size // 2 :, size // 2 :] = 1
        self.register_buffer("keep", keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.keep


class QuadrantNet(nn.Module):
    """``mu`` = mean of the quadrant features; logits ``(−5, 5) × mu[0]``: only the top-left matters.

    Class 0's logit is not 0, so a sigmoid of class 1's logit alone is not its softmax probability.
    """

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        self.encoder = nn.Module()
        conv = nn.Conv2d(1, 2, 1, bias=False)
        nn.init.ones_(conv.weight)
        self.encoder.layers = nn.Sequential(conv, _QuadrantFeatures(size))
        self.head = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-5.0, 0.0], [5.0, 0.0]]))

    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.encoder.layers(x)
        return {"mu": features.flatten(2).mean(-1), "attention": features[:, :1]}

    def classify(self, mu: torch.Tensor) -> torch.Tensor:
        return self.head(mu)


@pytest.fixture
def quadrant() -> tuple[QuadrantNet, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    image = 0.2 + torch.rand(1, 1, 32, 32)
    top_left = torch.zeros(32, 32)
    top_left[:16, :16] = 1
    return QuadrantNet(), image, top_left


def test_gradcam_lights_up_only_the_quadrant_the_class_reads(quadrant):
    net, image, top_left = quadrant
    assert default_gradcam_layer(net) == "encoder.layers.1"
    cam = gradcam_map(net, image, target_class=1)
    assert cam.shape == (32, 32) and cam.dtype == torch.float32
    assert cam[top_left == 0].abs().max() == 0
    assert cam[top_left == 1].min() > 0
    assert pointing_game(cam, top_left) and topk_iou(cam, top_left, fraction=0.25) == 1.0
    # the map is the ReLU'd CAM, not MONAI's default post-processing (which maps max → 0)
    expected = 5.0 / (32 * 32) * image[0, 0] * top_left  # mean gradient of channel 0 × its activation
    assert torch.allclose(cam, expected, rtol=1e-4, atol=1e-7)


def test_occlusion_is_the_probability_drop_of_a_hand_occluded_patch(quadrant):
    net, image, top_left = quadrant
    sens = occlusion_map(net, image, target_class=1, mask_size=8, overlap=0.0, mode=0.0)
    assert sens.shape == (32, 32)
    with torch.no_grad():
        p = torch.softmax(net.classify(net.encode(image)["mu"]), dim=1)[0, 1]
        occluded = image.clone()
        occluded[..., 8:16, 0:8] = 0.0
        p_occluded = torch.softmax(net.classify(net.encode(occluded)["mu"]), dim=1)[0, 1]
    # with no overlap every pixel is covered by one patch: the map is constant on that patch
    assert torch.allclose(sens[8:16, 0:8], (p - p_occluded).expand(8, 8), atol=1e-6)
    assert sens[16:, :].abs().max() < 1e-6 and sens[:, 16:].abs().max() < 1e-6
    assert sens[:16, :16].min() > 0


def test_gaussian_occlusion_points_at_the_quadrant(quadrant):
    net, image, top_left = quadrant
    sens = occlusion_map(net, image, target_class=1, mask_size=8, overlap=0.5)
    assert bool((sens >= 0).all())
    assert sens[20:, 20:].abs().max() < 1e-6
    assert pointing_game(sens, top_left)


@pytest.mark.parametrize("spatial_dims, size", [(2, 32), (3, 16)])
def test_every_map_has_the_input_shape(spatial_dims, size):
    torch.manual_seed(0)
    net = GlassBoxNet(spatial_dims=spatial_dims, in_channels=1, num_classes=2, img_size=size, latent_dim=4)
    net.train()
    image = torch.rand(1, 1, *[size] * spatial_dims)
    params = [p.detach().clone() for p in net.parameters()]
    counterfactual = latent_shift_counterfactual(net, image, max_steps=5)
    maps = compute_maps(net, image, counterfactual=counterfactual)
    assert list(maps) == list(SALIENCY_METHODS)
    for name, m in maps.items():
        assert m.shape == image.shape[2:], name
        assert m.dtype == torch.float32 and bool(torch.isfinite(m).all()) and bool((m >= 0).all()), name
    assert torch.equal(maps["counterfactual"], counterfactual_map(counterfactual))
    # the caller's model is untouched: mode, weights, and no hooks left behind by MONAI's GradCAM
    assert net.training
    assert all(torch.equal(a, b) for a, b in zip(params, net.parameters(), strict=True))
    assert all(not m._forward_hooks and not m._backward_hooks for m in net.modules())


def test_maps_leave_an_eval_model_in_eval_mode_with_its_statistics():
    torch.manual_seed(0)
    net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=32, latent_dim=4).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    compute_maps(net, torch.rand(1, 1, 32, 32))
    assert not any(m.training for m in net.modules())  # MONAI's eval_mode once re-trained occlusion's wrapper
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_attention_is_upsampled_to_the_input(quadrant):
    torch.manual_seed(0)
    net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=4)

    class Constant(nn.Module):
        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return torch.full_like(features[:, :1], 0.3)

    net.attention = Constant()
    att = attention_map(net, torch.rand(1, 1, 32, 32))
    assert att.shape == (32, 32) and torch.allclose(att, torch.full((32, 32), 0.3))
    net, image, top_left = quadrant  # attention already at input size: returned as it is
    assert torch.equal(attention_map(net, image), image[0, 0] * top_left)


def test_contribution_map_shows_where_the_evidence_for_the_class_lies(quadrant):
    torch.manual_seed(0)
    net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=4).eval()
    channels = net.latent.fc_attention_pool.in_features
    d = net.head.weight[1] - net.head.weight[0]
    sign = torch.sign(d @ net.latent.fc_attention_pool.weight[:4].sum(dim=1)).item()

    class TopLeftFeatures(nn.Module):  # 4×4 features: the image's 8×8 means, top-left 2×2 only
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pooled = nn.functional.avg_pool2d(x, 8).repeat(1, channels, 1, 1)
            keep = torch.zeros_like(pooled)
            keep[..., :2, :2] = sign
            return pooled * keep

    net.encoder = TopLeftFeatures()
    with torch.no_grad():
        net.latent.fc.weight.zero_()  # no flattened-branch share
    _, image, top_left = quadrant
    evidence = contribution_map(net, image, target_class=1)
    assert evidence.shape == (32, 32) and bool((evidence >= 0).all())
    assert (
        evidence[:16, :16].min() > 0
        and evidence[24:, :].abs().max() == 0
        and evidence[:, 24:].abs().max() == 0
    )
    assert pointing_game(evidence, top_left)
    assert contribution_map(net, image, target_class=0).abs().max() == 0  # all of it speaks for class 1


def test_errors(quadrant):
    net, image, _ = quadrant
    with pytest.raises(ValueError, match=r"methods must be a non-empty selection of .*got \['bogus'\]"):
        compute_maps(net, image, methods=("bogus",))
    with pytest.raises(ValueError, match="layer must name a submodule of the model.*'nope'"):
        gradcam_map(net, image, layer="nope")
    with pytest.raises(ValueError, match=r"mask_size must be ints in \[1, image size \(32, 32\)\], got 64"):
        occlusion_map(net, image, mask_size=64)
    with pytest.raises(ValueError, match=r"overlap must be in \[0, 1\), got 1.0"):
        occlusion_map(net, image, overlap=1.0)
    with pytest.raises(ValueError, match=r"image must have shape \(1, C, \*spatial\)"):
        gradcam_map(net, torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"target_class must be in \[0, 1\], got 3"):
        occlusion_map(net, image, target_class=3)
    with pytest.raises(TypeError, match="result must be a CounterfactualResult"):
        counterfactual_map({"diff_map": image[0]})
    with pytest.raises(ValueError, match="layer must be given: Linear has no 'encoder' module"):
        default_gradcam_layer(nn.Linear(2, 2))
