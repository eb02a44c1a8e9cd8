"""Tests for networks/glassbox.py (GlassBoxNet: shapes, gradients, attention, heads, export, validation)."""

from __future__ import annotations

import io

import pytest
import torch
from monai.networks.blocks import SubpixelUpsample

from networks import GlassBoxNet
from transforms.keys import Keys

OUT_KEYS = {Keys.RECON, Keys.MU, Keys.LOGVAR, Keys.LOGITS, Keys.ATTENTION}


@pytest.fixture(scope="module")
def tiny2d() -> GlassBoxNet:
    torch.manual_seed(0)
    return GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=3, img_size=(64, 64), size="tiny").eval()


@pytest.mark.parametrize(
    "spatial_dims, img_size, size, unit",
    [
        (2, (64, 64), "tiny", "dense"),
        (2, (64, 64), "tiny", "shuffle"),
        (2, (32, 48), "small", "dense"),
        (2, (32, 32), "base", "shuffle"),
        (3, (32, 32, 32), "tiny", "dense"),
        (3, (16, 16, 24), "tiny", "shuffle"),
    ],
)
def test_output_shapes(spatial_dims, img_size, size, unit):
    net = GlassBoxNet(
        spatial_dims=spatial_dims, in_channels=2, num_classes=3, img_size=img_size, size=size, unit=unit
    )
    out = net(torch.rand(2, 2, *img_size))
    assert set(out) == OUT_KEYS
    assert out[Keys.RECON].shape == (2, 2, *img_size)
    assert out[Keys.MU].shape == out[Keys.LOGVAR].shape == (2, 16)
    assert out[Keys.LOGITS].shape == (2, 3)
    assert out[Keys.ATTENTION].shape == (2, 1, *(s // 8 for s in img_size))


def test_size_presets_grow_and_tiny_is_small():
    params = {
        size: sum(p.numel() for p in GlassBoxNet(size=size, img_size=64).parameters())
        for size in ("tiny", "small", "base")
    }
    assert params["tiny"] < 300_000 < params["small"] < 1_000_000 < params["base"] < 5_000_000


@pytest.mark.parametrize("spatial_dims, img_size", [(2, (64, 64)), (3, (16, 16, 24))])
def test_tiny_fine_has_stride_4_and_a_finer_attention_map(spatial_dims, img_size):
    torch.manual_seed(0)
    net = GlassBoxNet(spatial_dims=spatial_dims, img_size=img_size, size="tiny_fine").eval()
    assert net.total_stride == 4
    out = net(torch.rand(2, 1, *img_size))
    assert out[Keys.ATTENTION].shape == (2, 1, *(s // 4 for s in img_size))
    assert out[Keys.RECON].shape == (2, 1, *img_size)
    assert out[Keys.MU].shape == (2, 16)
    # an image whose side is a multiple of 4 but not of 8 fits it, not tiny
    side = [s + 4 for s in img_size]
    GlassBoxNet(spatial_dims=spatial_dims, img_size=side, size="tiny_fine")
    with pytest.raises(ValueError, match="must be divisible by 8"):
        GlassBoxNet(spatial_dims=spatial_dims, img_size=side, size="tiny")
    params = sum(p.numel() for p in net.parameters())
    assert params < 1_000_000


def test_int_img_size_and_options():
    net = GlassBoxNet(img_size=32, latent_dim=4, head="mlp", output_act="sigmoid", upsample="deconv")
    out = net(torch.rand(3, 1, 32, 32))
    assert out[Keys.MU].shape == (3, 4)
    assert out[Keys.RECON].min() > 0 and out[Keys.RECON].max() < 1


def test_upsampled_attention_has_input_size():
    net = GlassBoxNet(img_size=(32, 32), upsample_attention=True).eval()
    att = net(torch.rand(1, 1, 32, 32))[Keys.ATTENTION]
    assert att.shape == (1, 1, 32, 32)
    assert 0.0 <= att.min() and att.max() <= 1.0


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = GlassBoxNet(img_size=(32, 32)).train()
    x = torch.rand(4, 1, 32, 32)
    out = net(x)
    loss = (
        (out[Keys.RECON] - x).pow(2).mean() + out[Keys.LOGITS].logsumexp(1).mean() + out[Keys.LOGVAR].mean()
    )
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_eval_uses_mu_and_is_deterministic(tiny2d):
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        a, b = tiny2d(x), tiny2d(x)
        for key in OUT_KEYS:
            assert torch.equal(a[key], b[key])
        assert torch.allclose(a[Keys.RECON], tiny2d.decode(a[Keys.MU]))


def test_training_samples_and_sample_in_eval_flag():
    torch.manual_seed(0)
    net = GlassBoxNet(img_size=(32, 32)).train()
    x = torch.rand(2, 1, 32, 32)
    a, b = net(x), net(x)
    assert torch.allclose(a[Keys.MU], b[Keys.MU])
    assert not torch.allclose(a[Keys.RECON], b[Keys.RECON])
    net.eval()
    net.sample_in_eval = True
    with torch.no_grad():
        assert not torch.allclose(net(x)[Keys.RECON], net(x)[Keys.RECON])


def test_encode_decode_classify_compose_to_forward(tiny2d):
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        out = tiny2d(x)
        enc = tiny2d.encode(x)
        assert torch.equal(enc[Keys.MU], out[Keys.MU])
        assert torch.equal(tiny2d.classify(enc[Keys.MU]), out[Keys.LOGITS])
        assert tiny2d.decode(torch.zeros(5, 16)).shape == (5, 1, 64, 64)


def test_contributions_sum_to_logits_minus_bias(tiny2d):
    mu = torch.randn(4, 16)
    contrib = tiny2d.latent_contributions(mu)
    assert contrib.shape == (4, 3, 16)
    with torch.no_grad():
        expected = tiny2d.classify(mu) - tiny2d.head.bias
    assert torch.allclose(contrib.sum(-1), expected, atol=1e-5)
    # weight x value, element by element
    assert torch.allclose(contrib[1, 2, 5], tiny2d.head.weight[2, 5] * mu[1, 5])


def test_contributions_need_linear_head():
    with pytest.raises(TypeError, match=r"head='linear'"):
        GlassBoxNet(img_size=32, head="mlp").latent_contributions(torch.zeros(1, 16))


@pytest.mark.parametrize("pool", ["attention", "mean", "max"])
def test_position_contributions_split_the_margin_exactly(pool: str) -> None:
    torch.manual_seed(0)
    net = GlassBoxNet(img_size=(32, 32), num_classes=3, latent_dim=8, latent_pool=pool).eval()
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        logits = net(x)[Keys.LOGITS]
        shares = net.position_contributions(x, target_class=2)
    assert shares.shape == (4, 1, 4, 4)  # 1/8 of the input size
    margin = logits[:, 2] - (logits[:, 0] + logits[:, 1]) / 2
    rest = margin - shares.flatten(1).sum(dim=1)  # the biases: the same for every image
    torch.testing.assert_close(rest, rest[:1].expand_as(rest), atol=1e-4, rtol=0)
    assert shares.abs().sum() > 0


def test_position_contributions_of_two_classes_are_opposite() -> None:
    torch.manual_seed(0)
    net = GlassBoxNet(img_size=(32, 32), latent_dim=8).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.position_contributions(x, 0), -net.position_contributions(x, 1))


def test_position_contributions_need_a_linear_head_and_a_valid_class() -> None:
    with pytest.raises(TypeError, match=r"head='linear'"):
        GlassBoxNet(img_size=32, head="mlp").position_contributions(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"target_class must be an int in \[0, 1\], got 2"):
        GlassBoxNet(img_size=32).position_contributions(torch.zeros(1, 1, 32, 32), target_class=2)


def test_attention_in_unit_interval_and_gates_features():
    torch.manual_seed(0)
    tiny2d = GlassBoxNet(img_size=(64, 64), latent_pool="mean").eval()  # both branches read gated features
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        out = tiny2d(x)
        att = out[Keys.ATTENTION]
        assert att.min() >= 0.0 and att.max() <= 1.0
        handle = tiny2d.attention.register_forward_hook(lambda mod, inp, res: torch.zeros_like(res))
        try:
            gated_off = tiny2d(x)
        finally:
            handle.remove()
        assert not torch.allclose(gated_off[Keys.LOGITS], out[Keys.LOGITS])
        # with a zero map the latent sees all-zero features, whatever the image
        mu_zero = tiny2d.latent(torch.zeros(2, 128, 8, 8), None, tiny2d._head_basis())[0]
        assert torch.allclose(gated_off[Keys.MU], mu_zero, atol=1e-6)


def test_torchscript_round_trip(tiny2d):
    scripted = torch.jit.script(tiny2d)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        expected, got = tiny2d(x), loaded(x)
        assert set(got) == {k.value for k in OUT_KEYS}
        for key in OUT_KEYS:
            assert torch.allclose(got[key.value], expected[key], atol=1e-5)
        mu = loaded.encode(x)["mu"]
        assert torch.allclose(loaded.classify(mu), expected[Keys.LOGITS], atol=1e-5)
        assert torch.allclose(loaded.decode(mu), expected[Keys.RECON], atol=1e-5)
    with pytest.raises(Exception, match=r"in_channels: expected 1 channel\(s\), got input with 3"):
        loaded(torch.rand(1, 3, 64, 64))


def test_input_validation_messages(tiny2d):
    with pytest.raises(ValueError, match=r"in_channels: expected 1 channel\(s\), got input with 3"):
        tiny2d(torch.rand(1, 3, 64, 64))
    with pytest.raises(
        ValueError, match=r"image size \(65, 64\) must be divisible by 8 \(the encoder's total stride\)"
    ):
        tiny2d(torch.rand(1, 1, 65, 64))
    with pytest.raises(ValueError, match=r"image size \(32, 32\) does not match img_size \(64, 64\)"):
        tiny2d(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match=r"input: expected a 4D tensor"):
        tiny2d(torch.rand(1, 64, 64))


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"img_size": (65, 64)}, ValueError, r"img_size: image size \(65, 64\) must be divisible by 8"),
        ({"img_size": (64, 64, 64)}, ValueError, r"img_size must be 2 positive ints"),
        (
            {"size": "huge"},
            ValueError,
            r"size must be one of \('tiny', 'small', 'base', 'tiny_fine'\), got 'huge'",
        ),
        ({"spatial_dims": 4}, ValueError, r"spatial_dims must be 2 or 3, got 4"),
        ({"spatial_dims": "2"}, TypeError, r"spatial_dims must be an int, got str '2'"),
        ({"in_channels": 0}, ValueError, r"in_channels must be >= 1, got 0"),
        ({"head": "tree"}, ValueError, r"head must be one of \('linear', 'mlp'\), got 'tree'"),
        ({"unit": "conv"}, ValueError, r"unit must be one of \('shuffle', 'dense'\), got 'conv'"),
        ({"output_act": "tanh"}, ValueError, r"output_act must be one of"),
        ({"stem_stride": 3}, ValueError, r"stem_stride must be 1 or 2, got 3"),
        ({"subpixel_output": 1}, TypeError, r"subpixel_output must be a bool, got 1"),
    ],
)
def test_constructor_validation(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        GlassBoxNet(**kwargs)


def test_layout_options_change_where_the_convolutions_run():
    """The stem stride and decoder output stage move where the convolutions run; shapes stay the same."""
    x = torch.rand(2, 1, 32, 32)
    full = GlassBoxNet(img_size=(32, 32), stem_stride=1, subpixel_output=False).eval()
    fast = GlassBoxNet(img_size=(32, 32), stem_stride=2, subpixel_output=True).eval()
    for net in (full, fast):
        out = net(x)
        assert out["recon"].shape == x.shape and out["attention"].shape == (2, 1, 4, 4)
    assert full.encoder.layers[0].conv.stride == (1, 1)
    assert fast.encoder.layers[0].conv.stride == (2, 2)
    assert not any(isinstance(m, SubpixelUpsample) for m in full.decoder.modules())
    assert sum(isinstance(m, SubpixelUpsample) for m in fast.decoder.modules()) == 1
