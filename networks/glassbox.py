"""``GlassBoxNet``: shuffle-unit encoder → spatial attention → β-VAE latent → decoder, and a head on ``mu``.

The classifier reads the latent *mean*; with the default linear head each
latent's contribution to a logit is ``weight × value``
(:meth:`GlassBoxNet.latent_contributions`). ``encode``, ``reparameterize``,
``decode`` and ``classify`` are exported to TorchScript, so latent traversals,
counterfactuals and concept erasure between encoder and head also work on an
exported model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from networks.attention import SpatialAttention, upsample_attention
from networks.classifier_heads import HEAD_TYPES, latent_contributions, make_head
from networks.decoder import OUTPUT_ACTIVATIONS, UPSAMPLE_MODES, LatentDecoder
from networks.encoder import ShuffleEncoder
from networks.keys import Keys
from networks.latent import CLASSIFIER_PATHS, POOL_MODES, GaussianLatent, reparameterize
from networks.presets import SIZE_PRESETS, get_preset
from networks.shuffle_units import UNIT_TYPES

__all__ = ["GlassBoxNet"]


def _fmt_size(size: list[int]) -> str:
    """``[65, 64]`` → ``"(65, 64)"`` (TorchScript-compatible)."""
    return "(" + ", ".join([str(s) for s in size]) + ")"


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


class GlassBoxNet(nn.Module):
    """Glass-box autoencoder-classifier for 2D or 3D images.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: number of classifier logits.
        img_size: spatial size of the images (int for all dims, or one per dim); each
            entry must be divisible by the encoder's total stride (8; 4 for ``tiny_fine``).
        size: width/depth preset, ``"tiny"`` (fewest parameters), ``"small"`` or ``"base"``
            (wider and deeper), or ``"tiny_fine"`` (total stride 4: an attention map at 1/4 of
            the input size); see :mod:`networks.presets`.
        latent_dim: number of latent variables.
        head: ``"linear"`` (glass-box, default) or ``"mlp"`` classifier head on ``mu``.
        unit: encoder unit, ``"dense"`` (default, fastest on CPU at equal weights) or
            ``"shuffle"`` (ShuffleNetV2 with depthwise conv); see :mod:`networks.shuffle_units`.
        output_act: decoder output, ``"identity"`` (default, inputs scaled to about [0, 1])
            or ``"sigmoid"``; see :class:`~networks.decoder.LatentDecoder`.
        upsample: decoder upsampling, ``"resize"`` (default) or ``"deconv"``.
        sample_in_eval: draw ``z`` from the posterior in eval mode too (default: ``z = mu``).
        upsample_attention: return the attention map at input size instead of feature size.
        latent_pool: the latent layer's pooled branch, ``"attention"`` (default), ``"mean"``,
            ``"max"`` or ``"none"`` (see :class:`~networks.latent.GaussianLatent`). With
            ``"attention"`` the classifier branch is the attention-weighted average of the
            encoder features and the flattened (decoder) branch reads them ungated, so the
            attention map is where the classifier looks; with the others both branches read the
            gated features ``features * attention``.
        classifier_path: ``"pooled"`` (default): the classification loss trains the encoder
            through the pooled branch only (the logits are the same in value); ``"all"``:
            through the flattened branch too, which memorises training images.
        stem_stride: 1 (default): full-resolution stem; 2: the stem downsamples instead of the
            first stage (same total stride; see ``bench/bench_units.py`` for speed and accuracy).
        subpixel_output: the decoder's last stage is a sub-pixel convolution (no
            full-resolution convs); ``False`` by default.
        pooled_logits: take the linear head's weight rows out of the flattened branch's share of
            ``mu``, so that ``mu`` along them — and so the logits — come from the pooled branch
            alone, while ``classify(mu)`` stays the head applied to ``mu`` (``None``, the default:
            on whenever the head is linear, there is a pooled branch and ``num_classes <
            latent_dim``). Why: the flattened branch is trained by reconstruction only and varies
            a lot from image to image; read by the head it is noise in the logits that can keep
            the classifier at chance. The decoder keeps the flattened branch in the other
            ``latent_dim - num_classes`` directions.

    Raises:
        TypeError: if an integer argument is not an int.
        ValueError: if an argument is out of range or not a known option, naming it and its value.

    Example:
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(64, 64)).eval()
        >>> out = net(torch.rand(2, 1, 64, 64))
        >>> sorted(map(str, out)), out["recon"].shape, out["attention"].shape
        (['attention', 'logits', 'logvar', 'mu', 'recon'], torch.Size([2, 1, 64, 64]), torch.Size([2, 1, 8, 8]))
    """

    latent_kind = "vector"
    """The latent :meth:`decode` draws is ``mu`` itself (see :class:`~networks.spatial_glassbox.SpatialGlassBoxNet`)."""

    # Output keys as TorchScript constants (a script module cannot read ``Keys`` itself).
    __constants__ = ["key_recon", "key_mu", "key_logvar", "key_logits", "key_attention", "pooled_logits"]
    key_recon = Keys.RECON
    key_mu = Keys.MU
    key_logvar = Keys.LOGVAR
    key_logits = Keys.LOGITS
    key_attention = Keys.ATTENTION

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        img_size: Sequence[int] | int = (64, 64),
        size: str = "tiny",
        latent_dim: int = 16,
        head: str = "linear",
        unit: str = "dense",
        output_act: str = "identity",
        upsample: str = "resize",
        sample_in_eval: bool = False,
        upsample_attention: bool = False,
        latent_pool: str = "attention",
        classifier_path: str = "pooled",
        stem_stride: int = 1,
        subpixel_output: bool = False,
        pooled_logits: bool | None = None,
    ) -> None:
        super().__init__()
        _check_int("spatial_dims", spatial_dims, 1)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        _check_int("in_channels", in_channels, 1)
        _check_int("num_classes", num_classes, 1)
        _check_int("latent_dim", latent_dim, 1)
        _check_choice("size", size, tuple(SIZE_PRESETS))
        _check_choice("head", head, HEAD_TYPES)
        _check_choice("unit", unit, UNIT_TYPES)
        _check_choice("output_act", output_act, OUTPUT_ACTIVATIONS)
        _check_choice("upsample", upsample, UPSAMPLE_MODES)
        _check_choice("latent_pool", latent_pool, POOL_MODES)
        _check_choice("classifier_path", classifier_path, CLASSIFIER_PATHS)
        if classifier_path == "pooled" and latent_pool == "none":
            raise ValueError('classifier_path="pooled" needs a pooled latent branch, got latent_pool="none"')
        preset = get_preset(size)
        _check_int("stem_stride", stem_stride, 1)  # 1 or 2: checked by the encoder
        if not isinstance(subpixel_output, bool):
            raise TypeError(f"subpixel_output must be a bool, got {subpixel_output!r}")
        stride = preset.total_stride
        sizes = [img_size] * spatial_dims if isinstance(img_size, int) else list(img_size)
        if len(sizes) != spatial_dims or not all(isinstance(s, int) and s > 0 for s in sizes):
            raise ValueError(
                f"img_size must be {spatial_dims} positive ints for spatial_dims={spatial_dims}, got {img_size!r}"
            )
        if any(s % stride for s in sizes):
            raise ValueError(
                f"img_size: image size {_fmt_size(sizes)} must be divisible by {stride} "
                "(the encoder's total stride)"
            )
        feature_size = [s // stride for s in sizes]
        can_protect = head == "linear" and latent_pool != "none" and num_classes < latent_dim
        if pooled_logits is None:
            pooled_logits = can_protect
        elif not isinstance(pooled_logits, bool):
            raise TypeError(f"pooled_logits must be a bool or None, got {pooled_logits!r}")
        elif pooled_logits and not can_protect:
            raise ValueError(
                "pooled_logits=True needs head='linear', a pooled branch (latent_pool != 'none') and "
                f"num_classes < latent_dim, got head={head!r}, latent_pool={latent_pool!r}, "
                f"num_classes={num_classes}, latent_dim={latent_dim}"
            )
        self.pooled_logits = pooled_logits

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.img_size = sizes
        self.total_stride = stride
        self.size = size
        self.head_type = head
        self.unit = unit
        self.sample_in_eval = bool(sample_in_eval)
        self.upsample_attention = bool(upsample_attention)
        self.latent_pool = latent_pool

        self.encoder = ShuffleEncoder(
            spatial_dims,
            in_channels,
            preset.stem_channels,
            preset.widths,
            preset.depths,
            unit=unit,
            stem_stride=stem_stride,
        )
        self.attention = SpatialAttention(spatial_dims, self.encoder.out_channels, preset.attention_channels)
        self.latent = GaussianLatent(
            spatial_dims,
            self.encoder.out_channels,
            feature_size,
            preset.proj_channels,
            latent_dim,
            pool=latent_pool,
            classifier_path=classifier_path,
        )
        self.decoder = LatentDecoder(
            spatial_dims,
            latent_dim,
            in_channels,
            feature_size,
            preset.decoder_channels,
            convs_per_stage=preset.decoder_convs,
            upsample=upsample,
            output_act=output_act,
            subpixel_output=subpixel_output,
        )
        self.head = make_head(head, latent_dim, num_classes, hidden=preset.mlp_hidden)

    def check_input(self, x: torch.Tensor) -> None:
        """Validate an input batch before any computation.

        Args:
            x: images, ``(batch, in_channels, *img_size)``.

        Raises:
            ValueError: wrong number of dimensions, channels, or spatial size (naming the expectation).
        """
        if x.dim() != self.spatial_dims + 2:
            raise ValueError(
                f"input: expected a {self.spatial_dims + 2}D tensor (batch, channel, {self.spatial_dims} "
                f"spatial dims), got shape {_fmt_size(list(x.shape))}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"in_channels: expected {self.in_channels} channel(s), got input with {x.shape[1]}"
            )
        spatial = list(x.shape[2:])
        for s in spatial:
            if s % self.total_stride != 0:
                raise ValueError(
                    f"image size {_fmt_size(spatial)} must be divisible by {self.total_stride} "
                    "(the encoder's total stride)"
                )
        if spatial != self.img_size:
            raise ValueError(
                f"image size {_fmt_size(spatial)} does not match img_size {_fmt_size(self.img_size)} "
                "the network was built for"
            )

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encode images to the latent posterior and the attention map.

        Args:
            x: images, ``(batch, in_channels, *img_size)``.

        Returns:
            Dict with ``mu`` and ``logvar`` ``(batch, latent_dim)`` and ``attention``
            ``(batch, 1, *feature_size)`` (input size if ``upsample_attention``).

        Raises:
            ValueError: if ``x`` does not fit the network (see :meth:`check_input`).
        """
        mu, logvar, _, attention = self._encode(x)
        return {self.key_mu: mu, self.key_logvar: logvar, self.key_attention: attention, "latent": mu}

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mu, logvar, mu_for_classifier, attention)``; see :meth:`encode`."""
        self.check_input(x)
        features = self.encoder(x)
        attention = self.attention(features)
        protected = self._head_basis()
        if self.latent_pool == "attention":
            mu, logvar, mu_cls = self.latent(features, attention, protected)
        else:
            mu, logvar, mu_cls = self.latent(features * attention, None, protected)
        if self.upsample_attention:
            attention = upsample_attention(attention, self.img_size)
        return mu, logvar, mu_cls, attention

    def _head_basis(self) -> torch.Tensor | None:
        """Orthonormal columns spanning the linear head's weight rows (``pooled_logits``), else ``None``.

        Detached: reconstruction must not move the head through this projection. Rows that
        depend on the others (e.g. the two opposite rows of a 2-class head that reads one
        latent) add no column, so exactly the head's row space is taken out.
        """
        if self.pooled_logits:
            q, r = torch.linalg.qr(self.head.weight.detach().t())
            scale = r.diagonal().abs()
            return q[:, scale > 1e-6 * scale.max().clamp_min(1e-12)]
        return None

    @torch.jit.export
    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """``z`` for the decoder: a posterior sample in training mode (or if ``sample_in_eval``), else ``mu``."""
        if self.training or self.sample_in_eval:
            return reparameterize(mu, logvar)
        return mu

    @torch.jit.export
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decode latent vectors ``(batch, latent_dim)`` to images ``(batch, in_channels, *img_size)``."""
        return self.decoder(z)

    @torch.jit.export
    def classify(self, mu: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` from latent means ``(batch, latent_dim)``."""
        return self.head(mu)

    @torch.jit.export
    def head_vector(self, latent: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """The vector the head reads from a latent :meth:`decode` draws: ``latent`` itself here."""
        return latent

    @torch.jit.export
    def classify_latent(self, latent: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Logits of latents :meth:`decode` draws (``attention`` is not needed by this core)."""
        return self.classify(latent)

    def latent_direction(self, dim: int, attention: torch.Tensor) -> torch.Tensor:
        """The unit vector of latent ``dim``, one row per attention map, ``(batch, latent_dim)``."""
        if not 0 <= dim < self.latent_dim:
            raise ValueError(f"dim must be in [0, {self.latent_dim - 1}], got {dim}")
        direction = torch.zeros(attention.shape[0], self.latent_dim, device=attention.device)
        direction[:, dim] = 1.0
        return direction

    def latent_contributions(self, mu: torch.Tensor) -> torch.Tensor:
        """Per-latent contributions ``weight[k, j] * mu[b, j]`` to each logit, ``(batch, num_classes, latent_dim)``.

        Their sum over the last axis equals ``classify(mu) - head.bias``.

        Raises:
            TypeError: if the model was built with ``head="mlp"``.
        """
        return latent_contributions(self.head, mu)

    def position_contributions(self, x: torch.Tensor, target_class: int = 1) -> torch.Tensor:
        """Where the image moves the decision: each feature position's exact share of the margin.

        The margin is the target logit less the mean of the other logits (the logit itself
        with one class). With the linear head, ``mu`` is linear in per-position terms
        (:meth:`GaussianLatent.position_contributions`), so the margin splits exactly over the
        feature positions: the map sums to the margin less a constant of the weights. Positive
        values speak for ``target_class``.

        Args:
            x: images, ``(batch, in_channels, *img_size)``.
            target_class: the class whose margin is split.

        Returns:
            Shares ``(batch, 1, *feature_size)`` (1/8 of the input size).

        Raises:
            TypeError: if the model was built with ``head="mlp"``.
            ValueError: ``target_class`` out of range, or ``x`` does not fit the network.
        """
        if not isinstance(self.head, nn.Linear):
            raise TypeError(
                f"head: position contributions need a linear head (head='linear'), got {type(self.head).__name__}"
            )
        classes = self.head.out_features
        if (
            isinstance(target_class, bool)
            or not isinstance(target_class, int)
            or not 0 <= target_class < classes
        ):
            raise ValueError(f"target_class must be an int in [0, {classes - 1}], got {target_class!r}")
        weight = self.head.weight
        direction = weight[target_class]
        if classes > 1:
            direction = direction - (weight.sum(dim=0) - weight[target_class]) / (classes - 1)
        self.check_input(x)
        features = self.encoder(x)
        attention = self.attention(features)
        protected = self._head_basis()
        if self.latent_pool == "attention":
            return self.latent.position_contributions(features, direction, attention, protected)
        return self.latent.position_contributions(features * attention, direction, None, protected)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the whole network.

        Args:
            x: images, ``(batch, in_channels, *img_size)``.

        Returns:
            Dict with ``recon`` (input shape), ``mu``, ``logvar`` ``(batch, latent_dim)``,
            ``logits`` ``(batch, num_classes)`` and ``attention``.

        Raises:
            ValueError: if ``x`` does not fit the network (see :meth:`check_input`).
        """
        mu, logvar, mu_cls, attention = self._encode(x)
        recon = self.decode(self.reparameterize(mu, logvar))
        return {
            self.key_recon: recon,
            self.key_mu: mu,
            self.key_logvar: logvar,
            self.key_logits: self.classify(mu_cls),  # = classify(mu); see ``classifier_path``
            self.key_attention: attention,
        }
