"""The glass-box autoencoder-classifier family (tiny/small/base, 2D/3D) and its blocks."""

from __future__ import annotations

from networks.attention import SpatialAttention, upsample_attention
from networks.classifier_heads import latent_contributions, make_head
from networks.decoder import LatentDecoder
from networks.encoder import ShuffleEncoder
from networks.glassbox import GlassBoxNet
from networks.latent import GaussianLatent, reparameterize
from networks.losses import (
    GlassBoxLoss,
    beta_kl,
    capacity_at,
    kl_per_dim,
    masked_cross_entropy,
    reconstruction_loss,
)
from networks.presets import SIZE_PRESETS, NetPreset, get_preset
from networks.shuffle_units import UNIT_TYPES, ShuffleDownUnit, ShuffleUnit, channel_shuffle
from networks.spatial_decoder import SpatialLatentDecoder
from networks.spatial_glassbox import SpatialGlassBoxNet
from networks.summary import count_macs, count_parameters, format_summary, model_summary

__all__ = [
    "GlassBoxNet",
    "SpatialGlassBoxNet",
    "SpatialLatentDecoder",
    "GlassBoxLoss",
    "ShuffleEncoder",
    "ShuffleUnit",
    "ShuffleDownUnit",
    "UNIT_TYPES",
    "channel_shuffle",
    "SpatialAttention",
    "upsample_attention",
    "GaussianLatent",
    "reparameterize",
    "LatentDecoder",
    "make_head",
    "latent_contributions",
    "NetPreset",
    "SIZE_PRESETS",
    "get_preset",
    "reconstruction_loss",
    "kl_per_dim",
    "capacity_at",
    "beta_kl",
    "masked_cross_entropy",
    "model_summary",
    "format_summary",
    "count_macs",
    "count_parameters",
]
