"""Transfer learning for ``GlassBoxNet``: load a pretrained encoding path/decoder, freeze the encoder.

Example:
    >>> from networks.glassbox import GlassBoxNet
    >>> net = GlassBoxNet(img_size=(32, 32))
    >>> freeze_encoder(net) > 0
    True
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path

import torch

__all__ = [
    "ENCODER_MODULES",
    "TRANSFER_MODULES",
    "CLASSIFIER_POOLING",
    "load_pretrained",
    "freeze_encoder",
    "frozen_modules",
]

logger = logging.getLogger("medglass.training")

ENCODER_MODULES = ("encoder", "attention", "latent")
"""Sub-modules of ``GlassBoxNet`` forming the encoding path (frozen by ``freeze_encoder``)."""

TRANSFER_MODULES = ("encoder", "attention", "latent", "decoder")
"""Sub-modules whose weights a pretrained checkpoint provides (the head is trained anew)."""

CLASSIFIER_POOLING = ("attention.", "latent.fc_attention_pool.")
"""Tensors of the classifier's attention pooling (``latent_pool="attention"``): like the head,
neither transferred nor frozen. Pretraining has no labels, so it has no signal for where the
classifier should look; starting from its map, fine-tuning on few labels tends to memorise
them rather than learn the finding, and a fresh map learns where to look from the labels."""


def _attention_pooling(network: torch.nn.Module) -> bool:
    return getattr(network, "latent_pool", None) == "attention"


def frozen_modules(network: torch.nn.Module) -> tuple[str, ...]:
    """The sub-modules :func:`freeze_encoder` freezes and training keeps in eval mode.

    :data:`ENCODER_MODULES`, less ``attention`` when the network pools with it (see
    :data:`CLASSIFIER_POOLING`).
    """
    if _attention_pooling(network):
        return tuple(m for m in ENCODER_MODULES if m != "attention")
    return ENCODER_MODULES


def load_pretrained(network: torch.nn.Module, path: str | PathLike) -> list[str]:
    """Load the encoder/attention/latent/decoder weights of a checkpoint whose shapes match.

    With attention pooling, the attention map and the pooling's linear map
    (:data:`CLASSIFIER_POOLING`) keep their fresh initialisation.

    Args:
        network: the network to initialise.
        path: a checkpoint written by :func:`train` (``{"model": state_dict, ...}``) or a plain
            state dict.

    Returns:
        The names of the loaded tensors (heads and mismatched shapes are skipped).

    Raises:
        ValueError: a missing or unreadable checkpoint, one of the other generative core (vector
            vs spatial latent), or one with no matching tensor.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"pretrained checkpoint {path}: file not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"pretrained checkpoint {path}: not a readable PyTorch checkpoint ({err})") from err
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"pretrained checkpoint {path}: expected a state dict or {{'model': state_dict}}")
    saved = "spatial" if any(str(k).startswith("latent.to_spatial.") for k in state) else "vector"
    built = getattr(network, "latent_kind", "vector")
    if saved != built:
        raise ValueError(
            f"pretrained checkpoint {path}: holds the {saved}-latent core but the network being trained is the "
            f"{built}-latent core; the architecture differs: pretrain with --latent {built} or fine-tune with "
            f"--latent {saved}"
        )
    own = network.state_dict()
    skipped = CLASSIFIER_POOLING if _attention_pooling(network) else ()
    chosen = {
        k: v
        for k, v in state.items()
        if k.split(".")[0] in TRANSFER_MODULES
        and not k.startswith(skipped)
        and k in own
        and tuple(own[k].shape) == tuple(v.shape)
    }
    if not chosen:
        raise ValueError(
            f"pretrained checkpoint {path}: no encoder/decoder tensor matches the network "
            "(different size, latent_dim or spatial_size?)"
        )
    network.load_state_dict(chosen, strict=False)
    wanted = [k for k in own if k.split(".")[0] in TRANSFER_MODULES and not k.startswith(skipped)]
    logger.info("pretrained %s: loaded %d of %d encoder/decoder tensors", path, len(chosen), len(wanted))
    return sorted(chosen)


def freeze_encoder(network: torch.nn.Module) -> int:
    """Set ``requires_grad=False`` on the encoding path (:func:`frozen_modules`); returns the count.

    With attention pooling the pooling's linear map stays trainable too. :func:`train` also
    keeps the frozen modules in eval mode during training (frozen batch-norm statistics).
    """
    skipped = CLASSIFIER_POOLING if _attention_pooling(network) else ()
    modules = frozen_modules(network)
    frozen = 0
    for name, p in network.named_parameters():
        if name.split(".")[0] in modules and not name.startswith(skipped):
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen
