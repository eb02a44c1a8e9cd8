"""Tests of pipelines/transfer_learning.py: what a pretrained checkpoint provides and what freezing holds."""

from __future__ import annotations

from pathlib import Path

import torch

from networks.glassbox import GlassBoxNet
from pipelines.transfer_learning import CLASSIFIER_POOLING, freeze_encoder, frozen_modules, load_pretrained


def _pretrained(tmp_path: Path, **kwargs) -> tuple[Path, dict]:
    torch.manual_seed(1)
    source = GlassBoxNet(img_size=(32, 32), latent_dim=4, **kwargs)
    path = tmp_path / "pre.pt"
    torch.save({"model": source.state_dict()}, path)
    return path, source.state_dict()


def test_attention_pooling_is_not_transferred(tmp_path: Path) -> None:
    path, source = _pretrained(tmp_path)
    torch.manual_seed(2)
    net = GlassBoxNet(img_size=(32, 32), latent_dim=4)
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    loaded = load_pretrained(net, path)
    assert loaded and not any(k.startswith(CLASSIFIER_POOLING) for k in loaded)
    assert not any(k.startswith("head.") for k in loaded)
    state = net.state_dict()
    for k in state:
        expected = fresh[k] if k.startswith(CLASSIFIER_POOLING) or k.startswith("head.") else source[k]
        assert torch.equal(state[k], expected), k


def test_gated_pooling_transfers_the_attention_map(tmp_path: Path) -> None:
    path, source = _pretrained(tmp_path, latent_pool="mean")
    net = GlassBoxNet(img_size=(32, 32), latent_dim=4, latent_pool="mean")
    loaded = load_pretrained(net, path)
    assert any(k.startswith("attention.") for k in loaded)
    assert all(torch.equal(net.state_dict()[k], source[k]) for k in loaded)


def test_freezing_leaves_the_attention_pooling_trainable() -> None:
    net = GlassBoxNet(img_size=(32, 32), latent_dim=4)
    assert freeze_encoder(net) > 0 and frozen_modules(net) == ("encoder", "latent")
    for name, p in net.named_parameters():
        trainable = name.startswith(CLASSIFIER_POOLING) or name.split(".")[0] in ("decoder", "head")
        assert p.requires_grad == trainable, name
    gated = GlassBoxNet(img_size=(32, 32), latent_dim=4, latent_pool="mean")
    freeze_encoder(gated)
    assert frozen_modules(gated) == ("encoder", "attention", "latent")
    assert not any(p.requires_grad for p in gated.attention.parameters())
