"""Tests for networks/segmentation.py and ``ShuffleEncoder.stage_features`` (networks/encoder.py)."""

from __future__ import annotations

import pytest
import torch

from networks.encoder import ShuffleEncoder
from networks.segmentation import GlassBoxSegmenter


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("stem_stride", [1, 2])
def test_stage_features_are_stem_then_stages_finest_first(spatial_dims, stem_stride):
    enc = ShuffleEncoder(spatial_dims, 1, 4, (8, 16, 24), (1, 2, 1), stem_stride=stem_stride).eval()
    x = torch.rand(2, 1, *([16] * spatial_dims))
    features = enc.stage_features(x)
    strides = (stem_stride, 2, 4, 8)  # the stem and then one halving per stage
    assert enc.stage_strides == strides
    assert enc.stage_channels == (4, 8, 16, 24)
    assert [tuple(f.shape) for f in features] == [
        (2, c, *([16 // s] * spatial_dims)) for c, s in zip((4, 8, 16, 24), strides, strict=True)
    ]
    assert torch.equal(features[-1], enc(x))


@pytest.mark.parametrize(
    ("spatial_dims", "size", "shape"),
    [
        (2, "tiny", (64, 40)),
        (2, "small", (32, 32)),
        (2, "tiny_fine", (20, 36)),
        (3, "tiny", (16, 24, 16)),
        (3, "tiny_fine", (12, 8, 16)),
    ],
)
def test_output_has_the_input_shape_and_one_channel_per_class(spatial_dims, size, shape):
    net = GlassBoxSegmenter(spatial_dims=spatial_dims, size=size, out_channels=3).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, *shape))
    assert out.shape == (2, 3, *shape)


def test_encoder_parameters_keep_the_glassbox_names():
    from networks.glassbox import GlassBoxNet

    seg = GlassBoxSegmenter(size="tiny")
    glass = GlassBoxNet(img_size=(32, 32), size="tiny")
    seg_keys = {k for k in seg.state_dict() if k.startswith("encoder.")}
    glass_keys = {k for k in glass.state_dict() if k.startswith("encoder.")}
    assert seg_keys == glass_keys and seg_keys


def test_frozen_encoder_gets_no_gradient_and_keeps_its_statistics():
    net = GlassBoxSegmenter(size="tiny", freeze_encoder=True).train()
    assert not net.encoder.training and net.decoder.training
    stats_before = net.encoder.layers[0].adn.N.running_mean.clone()
    net(torch.rand(2, 1, 32, 32)).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in net.encoder.parameters())
    assert all(p.grad is not None for p in net.decoder.parameters())
    assert torch.equal(net.encoder.layers[0].adn.N.running_mean, stats_before)


def test_unfrozen_encoder_gets_gradients():
    net = GlassBoxSegmenter(size="tiny").train()
    net(torch.rand(2, 1, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in net.encoder.parameters())


def test_scripted_network_gives_the_same_logits():
    net = GlassBoxSegmenter(size="tiny").eval()
    x = torch.rand(1, 1, 32, 32)
    assert torch.allclose(torch.jit.script(net)(x), net(x), atol=1e-6)


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        GlassBoxSegmenter(spatial_dims=1)
    with pytest.raises(ValueError, match="out_channels must be an int >= 1"):
        GlassBoxSegmenter(out_channels=0)
    with pytest.raises(ValueError, match="size must be one of"):
        GlassBoxSegmenter(size="huge")
    with pytest.raises(
        ValueError, match=r"decoder_channels must be 3 ints >= 1 \(one per encoder stage\), got \(8, 8\)"
    ):
        GlassBoxSegmenter(size="tiny", decoder_channels=(8, 8))
    assert GlassBoxSegmenter(size="tiny").decoder_channels == (32, 16, 8)  # half the preset's (64, 32, 16)
    net = GlassBoxSegmenter(spatial_dims=2)
    with pytest.raises(ValueError, match=r"for this 2D network, got shape \[1, 1, 16, 16, 16\]"):
        net(torch.rand(1, 1, 16, 16, 16))
    with pytest.raises(ValueError, match=r"multiples of 8, got \[30, 32\]"):
        net(torch.rand(1, 1, 30, 32))
