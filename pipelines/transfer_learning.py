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
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from pipelines.trained_model import TrainedModel
    from pipelines.training_config import TrainConfig

__all__ = [
    "ENCODER_MODULES",
    "TRANSFER_MODULES",
    "CLASSIFIER_POOLING",
    "load_pretrained",
    "freeze_encoder",
    "frozen_modules",
    "load_pretrained_encoder",
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


def load_pretrained_encoder(
    encoder: torch.nn.Module, ref: str | PathLike | TrainedModel, tracking_uri: str | None = None
) -> TrainConfig:
    """Copy the glass-box encoder of a ``medglass pretrain`` (or ``classify``) run into ``encoder``.

    For heads other than the classifier (segmentation, detection): they hold their own
    :class:`~networks.encoder.ShuffleEncoder` and take only its weights from the run. To build
    the encoder with the run's preset first, load the run once with
    :func:`~pipelines.trained_model.load_trained_model`, read ``trained.config.size`` and pass
    ``trained`` here.

    Args:
        encoder: the ``ShuffleEncoder`` to initialise (built with the run's ``size`` preset,
            spatial dims and one input channel).
        ref: the run: a run folder, a checkpoint with its ``config.json`` beside it, an MLflow
            reference (see :func:`pipelines.trained_model.load_trained_model`), or the
            ``TrainedModel`` already loaded from one.
        tracking_uri: MLflow tracking URI for MLflow references.

    Returns:
        The run's settings (its ``size``, ``spatial_size`` and ``intensity_range`` among them).

    Raises:
        ValueError: ``ref`` cannot be loaded, or its encoder does not fit ``encoder`` (the message
            names ``ref``, the run's size preset and spatial dims, and the first mismatch).
    """
    from pipelines.trained_model import TrainedModel, load_trained_model  # late: the training stack

    trained = ref if isinstance(ref, TrainedModel) else load_trained_model(ref, tracking_uri=tracking_uri)
    ref = trained.source
    state = trained.network.encoder.state_dict()
    own = encoder.state_dict()
    mismatch = next(
        (k for k in own if k not in state or tuple(state[k].shape) != tuple(own[k].shape)),
        next((k for k in state if k not in own), None),
    )
    if mismatch is not None:
        theirs = tuple(state[mismatch].shape) if mismatch in state else "absent"
        ours = tuple(own[mismatch].shape) if mismatch in own else "absent"
        raise ValueError(
            f"pretrained run {ref}: its encoder (size {trained.config.size!r}, {trained.config.spatial_dims}D) "
            f"does not fit the encoder being built (tensor {mismatch}: {theirs} in the run, {ours} here); "
            f"build it with size={trained.config.size!r} and {trained.config.spatial_dims} spatial dims"
        )
    encoder.load_state_dict(state)
    logger.info("pretrained %s: loaded %d encoder tensors", ref, len(state))
    return trained.config
