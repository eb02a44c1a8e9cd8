"""Width/depth presets of the glass-box network: ``tiny``, ``small``, ``base`` and ``tiny_fine``.

The encoder is a stem conv at full resolution followed by stages that each start with a
stride-2 unit. ``tiny``/``small``/``base`` have three stages: total stride 8, so a 64×64
image gives 8×8 features — and an 8×8 attention map. ``tiny_fine`` has two (the last with
twice the units): total stride 4, a 16×16 attention map on 64×64 images, fine enough to point
at a small lesion, which is why it is the default. ``bench/bench_units.py``,
``bench/bench_models.py`` and ``bench/bench_training.py`` print parameters, MACs, images/s
and accuracy of the presets.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NetPreset", "SIZE_PRESETS", "get_preset"]


@dataclass(frozen=True)
class NetPreset:
    """Widths and depths of one size preset.

    Attributes:
        stem_channels: channels of the full-resolution stem conv.
        widths: output channels of the encoder stages (even); the total stride is
            ``2 ** len(widths)``.
        depths: units per encoder stage (the first one downsamples).
        proj_channels: channels the gated features are reduced to before flattening into the latent layer.
        decoder_channels: channels of the decoder stages, coarsest first (one per encoder stage).
        decoder_convs: 3×3 convs per decoder stage after each upsampling.
        attention_channels: hidden channels of the spatial attention branch.
        mlp_hidden: hidden width of the optional MLP classifier head.
    """

    stem_channels: int
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    proj_channels: int
    decoder_channels: tuple[int, ...]
    decoder_convs: int
    attention_channels: int
    mlp_hidden: int

    @property
    def total_stride(self) -> int:
        """Downsampling factor of the encoder (2 per stage)."""
        return 2 ** len(self.widths)


SIZE_PRESETS: dict[str, NetPreset] = {
    "tiny": NetPreset(16, (32, 64, 128), (2, 2, 2), 16, (64, 32, 16), 1, 16, 32),
    "small": NetPreset(24, (64, 128, 256), (2, 4, 2), 32, (128, 64, 32), 1, 32, 64),
    "base": NetPreset(32, (128, 256, 512), (4, 8, 4), 64, (256, 128, 64), 2, 64, 128),
    "tiny_fine": NetPreset(16, (32, 128), (2, 4), 16, (64, 16), 1, 16, 32),
}
"""The presets by name."""


def get_preset(size: str) -> NetPreset:
    """Look a preset up by name.

    Args:
        size: ``"tiny"``, ``"small"``, ``"base"`` or ``"tiny_fine"``.

    Returns:
        The :class:`NetPreset`.

    Raises:
        ValueError: if ``size`` is not a preset name.

    Example:
        >>> get_preset("tiny").total_stride
        8
    """
    if size not in SIZE_PRESETS:
        raise ValueError(f"size must be one of {tuple(SIZE_PRESETS)}, got {size!r}")
    return SIZE_PRESETS[size]
