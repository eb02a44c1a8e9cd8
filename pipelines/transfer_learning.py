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

__all__ = ["ENCODER_MODULES", "TRANSFER_MODULES", "load_pretrained", "freeze_encoder"]

logger = logging.getLogger("medglass.training")

ENCODER_MODULES = ("encoder", "attention", "latent")
"""Sub-modules of ``GlassBoxNet`` forming the encoding path (frozen by ``freeze_encoder``)."""

TRANSFER_MODULES = ("encoder", "attention", "latent", "decoder")
"""Sub-modules whose weights a pretrained checkpoint provides (the head is trained anew)."""


def load_pretrained(network: torch.nn.Module, path: str | PathLike) -> list[str]:
    """Load the encoder/attention/latent/decoder weights of a checkpoint whose shapes match.

    Args:
        network: the network to initialise.
        path: a checkpoint written by :func:`train` (``{"model": state_dict, ...}``) or a plain
            state dict.

    Returns:
        The names of the loaded tensors (heads and mismatched shapes are skipped).

    Raises:
        ValueError: a missing or unreadable checkpoint, or one with no matching tensor.
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
    own = network.state_dict()
    chosen = {
        k: v
        for k, v in state.items()
        if k.split(".")[0] in TRANSFER_MODULES and k in own and tuple(own[k].shape) == tuple(v.shape)
    }
    if not chosen:
        raise ValueError(
            f"pretrained checkpoint {path}: no encoder/decoder tensor matches the network "
            "(different size, latent_dim or spatial_size?)"
        )
    network.load_state_dict(chosen, strict=False)
    wanted = [k for k in own if k.split(".")[0] in TRANSFER_MODULES]
    logger.info("pretrained %s: loaded %d of %d encoder/decoder tensors", path, len(chosen), len(wanted))
    return sorted(chosen)


def freeze_encoder(network: torch.nn.Module) -> int:
    """Set ``requires_grad=False`` on the encoding path (:data:`ENCODER_MODULES`); returns the count.

    :func:`train` also keeps these modules in eval mode during training (frozen batch-norm statistics).
    """
    frozen = 0
    for name in ENCODER_MODULES:
        for p in getattr(network, name).parameters():
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen
