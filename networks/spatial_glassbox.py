"""``SpatialGlassBoxNet``: a latent that can draw what the classifier reads.

The vector core (:class:`~networks.glassbox.GlassBoxNet`) squeezes an image into one latent
vector (16 numbers by default); its decoder draws a blurred brain without a lesion of a few
pixels, so latent traversals and latent-shift counterfactuals cannot show the finding. This core
keeps the glass-box property with a hierarchical latent (``bench/bench_generative_core.py``
compares the two cores and writes the figures into the classification model card):

* a **latent grid** ``z_s`` of ``spatial_channels`` at the encoder's resolution (1/4 of the image
  for ``tiny_fine``), each cell a diagonal Gaussian KL-regularised towards ``N(0, I)`` (as in
  MONAI's ``AutoencoderKL``), for local findings;
* a small **global code** ``g`` (``latent_dim - spatial_channels`` numbers, the β-VAE code of
  the vector core) for global factors — head size, ventricles, site contrast.

The decoder (:class:`~networks.spatial_decoder.SpatialLatentDecoder`) reads both. The head is
linear over ``mu = [attention-pooled channels of z_s, g]``: channel ``c`` enters the logit as
``w_c · Σ_p a_p z_s[c, p] / Σ_p a_p``, so each channel's contribution (``weight × value``) and
each position's share (``a_p · w · z_s[:, p] / Σ a``) are exact. By default the head does not
read ``g`` (its columns are held at zero), so a decision rests on local evidence where the
attention map looks. The attention map is computed from the encoder features; with it fixed,
the logit is *linear* in the whole latent, so a latent-shift counterfactual moves the latent
cells under the attention map and the decoder draws the change there.

``mu`` keeps the meaning it has in the vector core — the vector the head reads — so the
audit, concept erasure (LEACE between encoder and head), DFR and disentanglement work
unchanged; ``encode(x)["latent"]`` is the whole latent ``[flatten(z_s), g]`` that
:meth:`decode` draws, and :meth:`head_vector` maps it to ``mu`` under an attention map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from networks.attention import SpatialAttention, upsample_attention
from networks.classifier_heads import HEAD_TYPES, latent_contributions, make_head
from networks.encoder import ShuffleEncoder
from networks.latent import reparameterize
from networks.presets import SIZE_PRESETS, get_preset
from networks.shuffle_units import UNIT_TYPES
from networks.spatial_decoder import SpatialLatentDecoder

__all__ = ["SpatialGlassBoxNet"]


def _fmt_size(size: list[int]) -> str:
    return "(" + ", ".join([str(s) for s in size]) + ")"


class SpatialLatentLayers(nn.Module):
    """The posterior layers between the encoder features and the latent: the grid's and the global code's.

    ``to_spatial`` (1×1 conv) gives each cell's mean and log-variance; ``reduce`` (1×1 conv) and
    ``to_global`` (linear over the flattened reduced features) the global code's. Grouped under
    one name (``latent``) so that transfer learning and encoder freezing treat them as the vector
    core's ``latent`` layer.
    """

    def __init__(
        self,
        spatial_dims: int,
        features: int,
        spatial_channels: int,
        proj_channels: int,
        n_cells: int,
        global_dim: int,
    ) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.to_spatial = conv(features, 2 * spatial_channels, kernel_size=1)
        self.reduce = conv(features, proj_channels, kernel_size=1)
        self.to_global = nn.Linear(proj_channels * n_cells, 2 * max(global_dim, 1))


class SpatialGlassBoxNet(nn.Module):
    """Glass-box autoencoder-classifier with a latent grid and a global code, 2D or 3D.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: number of logits.
        img_size: image size (int or one per dim), divisible by the preset's total stride.
        size: width/depth preset (``"tiny_fine"`` default: a latent grid at 1/4 of the image).
        latent_dim: size of ``mu``, the vector the head reads: ``spatial_channels`` pooled
            channels plus ``latent_dim - spatial_channels`` global numbers.
        spatial_channels: channels of the latent grid.
        head: ``"linear"`` (glass-box, default) or ``"mlp"``.
        unit: encoder unit, ``"dense"`` or ``"shuffle"``.
        head_reads_global: let the head read the global code too (default ``False``).
        sample_in_eval: draw the latent from the posterior in eval mode too.
        upsample_attention: return the attention map at input size.

    Raises:
        TypeError: an integer argument is not an int.
        ValueError: an argument out of range, naming it and its value.

    Example:
        >>> net = SpatialGlassBoxNet(2, 1, 2, (32, 32), latent_dim=6, spatial_channels=4).eval()
        >>> out = net(torch.rand(2, 1, 32, 32))
        >>> out["recon"].shape, out["mu"].shape, out["spatial_mu"].shape
        (torch.Size([2, 1, 32, 32]), torch.Size([2, 6]), torch.Size([2, 4, 8, 8]))
    """

    latent_kind = "spatial"
    __constants__ = ["spatial_channels", "global_dim", "head_reads_global", "upsample_attention"]

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 2,
        img_size: Sequence[int] | int = (64, 64),
        size: str = "tiny_fine",
        latent_dim: int = 16,
        spatial_channels: int = 8,
        head: str = "linear",
        unit: str = "dense",
        head_reads_global: bool = False,
        sample_in_eval: bool = False,
        upsample_attention: bool = False,
    ) -> None:
        super().__init__()
        for name, value, minimum in (
            ("spatial_dims", spatial_dims, 2),
            ("in_channels", in_channels, 1),
            ("num_classes", num_classes, 1),
            ("latent_dim", latent_dim, 1),
            ("spatial_channels", spatial_channels, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
            if value < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {value}")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if spatial_channels > latent_dim:
            raise ValueError(
                f"spatial_channels must be <= latent_dim (the rest is the global code), got "
                f"spatial_channels={spatial_channels}, latent_dim={latent_dim}"
            )
        if size not in SIZE_PRESETS:
            raise ValueError(f"size must be one of {tuple(SIZE_PRESETS)}, got {size!r}")
        if head not in HEAD_TYPES:
            raise ValueError(f"head must be one of {HEAD_TYPES}, got {head!r}")
        if unit not in UNIT_TYPES:
            raise ValueError(f"unit must be one of {UNIT_TYPES}, got {unit!r}")
        preset = get_preset(size)
        stride = preset.total_stride
        sizes = [img_size] * spatial_dims if isinstance(img_size, int) else list(img_size)
        if len(sizes) != spatial_dims or not all(isinstance(s, int) and s > 0 for s in sizes):
            raise ValueError(
                f"img_size must be {spatial_dims} positive ints for spatial_dims={spatial_dims}, got {img_size!r}"
            )
        if any(s % stride for s in sizes):
            raise ValueError(
                f"img_size: image size {_fmt_size(sizes)} must be divisible by {stride} (the encoder's total stride)"
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.spatial_channels = spatial_channels
        self.global_dim = latent_dim - spatial_channels
        self.img_size = sizes
        self.feature_size = [s // stride for s in sizes]
        self.total_stride = stride
        self.size = size
        self.head_type = head
        self.unit = unit
        self.head_reads_global = bool(head_reads_global)
        self.sample_in_eval = bool(sample_in_eval)
        self.upsample_attention = bool(upsample_attention)
        self.latent_pool = "attention"

        self.encoder = ShuffleEncoder(
            spatial_dims, in_channels, preset.stem_channels, preset.widths, preset.depths, unit=unit
        )
        features = self.encoder.out_channels
        self.attention = SpatialAttention(spatial_dims, features, preset.attention_channels)
        n_cells = 1
        for s in self.feature_size:
            n_cells *= s
        self.n_cells = n_cells
        self.latent = SpatialLatentLayers(
            spatial_dims, features, spatial_channels, preset.proj_channels, n_cells, self.global_dim
        )
        self.decoder = SpatialLatentDecoder(
            spatial_dims,
            spatial_channels,
            self.global_dim,
            in_channels,
            self.feature_size,
            preset.decoder_channels,
        )
        self.head = make_head(head, latent_dim, num_classes, hidden=preset.mlp_hidden)
        if head == "linear" and not self.head_reads_global and self.global_dim > 0:
            mask = torch.ones(num_classes, latent_dim)
            mask[:, spatial_channels:] = 0.0
            self.register_buffer("head_mask", mask, persistent=False)
            with torch.no_grad():
                self.head.weight.mul_(mask)
            self.head.weight.register_hook(self._mask_head_grad)
        else:
            self.register_buffer("head_mask", torch.ones(1), persistent=False)

    def _mask_head_grad(self, grad: torch.Tensor) -> torch.Tensor:
        """Keep the head's global-code columns at zero: their gradient is dropped."""
        return grad * self.head_mask

    @property
    def latent_size(self) -> int:
        """Length of the whole latent ``[flatten(z_s), g]``."""
        return self.spatial_channels * self.n_cells + self.global_dim

    def check_input(self, x: torch.Tensor) -> None:
        """Validate an input batch; raises ``ValueError`` naming the expectation."""
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
        if spatial != self.img_size:
            raise ValueError(
                f"image size {_fmt_size(spatial)} does not match img_size {_fmt_size(self.img_size)} "
                "the network was built for"
            )

    def _posterior(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(spatial_mu, spatial_logvar, global_mu, global_logvar, attention)`` at feature resolution."""
        self.check_input(x)
        features = self.encoder(x)
        attention = self.attention(features)
        s_mu, s_logvar = torch.chunk(self.latent.to_spatial(features), 2, dim=1)
        g_stats = self.latent.to_global(torch.flatten(torch.relu(self.latent.reduce(features)), 1))
        g_mu, g_logvar = torch.chunk(g_stats, 2, dim=1)
        g_mu, g_logvar = g_mu[:, : self.global_dim], g_logvar[:, : self.global_dim]
        return s_mu, s_logvar.clamp(-30.0, 20.0), g_mu, g_logvar.clamp(-30.0, 20.0), attention

    @torch.jit.export
    def pool(self, grid: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Attention-weighted average of each channel of a grid: ``Σ_p a_p grid[:, c, p] / Σ_p a_p``."""
        a = torch.flatten(attention, 1)
        return (torch.flatten(grid, 2) * a.unsqueeze(1)).sum(dim=2) / (a.sum(dim=1, keepdim=True) + 1e-6)

    @torch.jit.export
    def split_latent(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole latent ``(batch, latent_size)`` → ``(grid (batch, C, *feature_size), global (batch, G))``."""
        n = self.spatial_channels * self.n_cells
        if latent.dim() != 2 or latent.shape[1] != n + self.global_dim:
            raise ValueError(
                f"latent: expected shape (batch, {n + self.global_dim}), got {_fmt_size(list(latent.shape))}"
            )
        grid = latent[:, :n].reshape([latent.shape[0], self.spatial_channels] + self.feature_size)
        return grid, latent[:, n:]

    @torch.jit.export
    def join_latent(self, grid: torch.Tensor, global_code: torch.Tensor) -> torch.Tensor:
        """``(grid, global)`` → the whole latent ``(batch, latent_size)``."""
        return torch.cat([torch.flatten(grid, 1), global_code], dim=1)

    @torch.jit.export
    def head_vector(self, latent: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """``mu`` — the vector the head reads — of a whole latent under an attention map (linear in ``latent``)."""
        grid, global_code = self.split_latent(latent)
        return torch.cat([self.pool(grid, attention), global_code], dim=1)

    @torch.jit.export
    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``mu``/``logvar`` ``(batch, latent_dim)``, ``attention`` and ``latent`` (the whole latent mean)."""
        s_mu, s_logvar, g_mu, g_logvar, attention = self._posterior(x)
        mu = torch.cat([self.pool(s_mu, attention), g_mu], dim=1)
        logvar = torch.cat([self.pool(s_logvar, attention), g_logvar], dim=1)
        shown = upsample_attention(attention, self.img_size) if self.upsample_attention else attention
        return {
            "mu": mu,
            "logvar": logvar,
            "attention": shown,
            "latent": self.join_latent(s_mu, g_mu),
            "latent_attention": attention,
        }

    @torch.jit.export
    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """A posterior sample in training mode (or with ``sample_in_eval``), else ``mu``."""
        if self.training or self.sample_in_eval:
            return reparameterize(mu, logvar)
        return mu

    @torch.jit.export
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Draw whole latents ``(batch, latent_size)`` as images ``(batch, in_channels, *img_size)``."""
        grid, global_code = self.split_latent(latent)
        return self.decoder(grid, global_code)

    @torch.jit.export
    def classify(self, mu: torch.Tensor) -> torch.Tensor:
        """Logits from the head vector ``mu`` ``(batch, latent_dim)``."""
        return self.head(mu)

    @torch.jit.export
    def classify_latent(self, latent: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Logits of whole latents under the (feature-resolution) attention map they were read with."""
        return self.classify(self.head_vector(latent, attention))

    def latent_direction(self, dim: int, attention: torch.Tensor) -> torch.Tensor:
        """The whole-latent direction that moves ``mu[dim]``: a pooled channel where the head looks, or a global number.

        For a pooled channel ``c`` the direction is ``c``'s slice of the grid weighted by the
        attention map scaled to a maximum of 1, so a traversal changes the image where the
        classifier reads it; for a global dimension it is the unit vector.

        Args:
            dim: index into ``mu``.
            attention: ``(batch, 1, *feature_size)``.

        Returns:
            ``(batch, latent_size)`` directions.
        """
        if not 0 <= dim < self.latent_dim:
            raise ValueError(f"dim must be in [0, {self.latent_dim - 1}], got {dim}")
        batch = attention.shape[0]
        grid = torch.zeros([batch, self.spatial_channels] + self.feature_size, device=attention.device)
        global_code = torch.zeros(batch, self.global_dim, device=attention.device)
        if dim < self.spatial_channels:
            a = attention[:, 0]
            peak = torch.flatten(a, 1).amax(dim=1).clamp_min(1e-6).view([batch] + [1] * (a.dim() - 1))
            grid[:, dim] = a / peak
        else:
            global_code[:, dim - self.spatial_channels] = 1.0
        return self.join_latent(grid, global_code)

    def latent_contributions(self, mu: torch.Tensor) -> torch.Tensor:
        """Per-dimension contributions ``weight[k, j] * mu[b, j]``, ``(batch, num_classes, latent_dim)``."""
        return latent_contributions(self.head, mu)

    def position_contributions(self, x: torch.Tensor, target_class: int = 1) -> torch.Tensor:
        """Each latent cell's exact share of the target margin, ``(batch, 1, *feature_size)``.

        The margin is the target logit less the mean of the other logits; its spatial part
        ``d · pooled`` splits over the cells as ``a_p · d · z_s[:, p] / Σ a``; the global part
        (zero unless ``head_reads_global``) and the bias are constants left out.

        Raises:
            TypeError: the head is not linear.
            ValueError: ``target_class`` out of range or ``x`` does not fit.
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
        s_mu, _, _, _, attention = self._posterior(x)
        per_cell = torch.einsum("c,bc...->b...", direction[: self.spatial_channels], s_mu).unsqueeze(1)
        total = torch.flatten(attention, 1).sum(dim=1) + 1e-6
        return attention * per_cell / total.view([-1] + [1] * (attention.dim() - 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the whole network: ``recon``, ``mu``, ``logvar``, ``logits``, ``attention`` and the posterior parts.

        ``spatial_mu``/``spatial_logvar`` (the grid) and ``global_mu``/``global_logvar`` feed the
        KL terms of :class:`~networks.losses.GlassBoxLoss`.
        """
        s_mu, s_logvar, g_mu, g_logvar, attention = self._posterior(x)
        mu = torch.cat([self.pool(s_mu, attention), g_mu], dim=1)
        logvar = torch.cat([self.pool(s_logvar, attention), g_logvar], dim=1)
        grid = self.reparameterize(s_mu, s_logvar)
        global_code = self.reparameterize(g_mu, g_logvar)
        recon = self.decoder(grid, global_code)
        shown = upsample_attention(attention, self.img_size) if self.upsample_attention else attention
        return {
            "recon": recon,
            "mu": mu,
            "logvar": logvar,
            "logits": self.classify(mu),
            "attention": shown,
            "spatial_mu": s_mu,
            "spatial_logvar": s_logvar,
            "global_mu": g_mu,
            "global_logvar": g_logvar,
        }
