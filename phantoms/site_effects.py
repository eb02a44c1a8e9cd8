"""Acquisition-site effects and the spurious marker.

Each site (A, B, C, ...) has fixed parameters drawn once per config seed: a scanner name, a
Gaussian noise sigma, a smooth multiplicative bias-field strength, a contrast gamma and a
global intensity scale. Each image varies them slightly (``site_param_jitter``) and draws
its own bias-field shape; the image becomes
``clip(scale * image ** gamma * exp(strength * field) + noise, 0, 1)``.

The marker is a small bright square (3D: cube) burnt in near one image corner, outside
the head, after the noise, like an annotation a scanner console would stamp.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from .phantom_config import PhantomConfig
from .smooth_fields import mode_frequencies, n_modes, smooth_field

__all__ = [
    "AcquisitionParams",
    "SiteProfile",
    "apply_acquisition",
    "apply_marker",
    "marker_region",
    "sample_acquisition",
    "site_profiles",
]

_SITE_STREAM = 7_000_001  # rng stream tag of the per-site parameters
_BIAS_FREQS = 2  # cosine frequencies per axis of the bias field
_VENDORS = ("Aurelia", "Borealis", "Cygnus", "Draco")
_MODELS = ("Prism 1.5T", "Vega 3T", "Orion 3T")


@dataclass(frozen=True)
class SiteProfile:
    """Fixed acquisition parameters of one site."""

    name: str
    scanner: str
    noise_sigma: float
    bias_strength: float
    gamma: float
    intensity_scale: float


def site_profiles(cfg: PhantomConfig) -> tuple[SiteProfile, ...]:
    """The ``cfg.n_sites`` site profiles, determined by ``cfg.seed`` and the site ranges.

    Args:
        cfg: the cohort config.

    Returns:
        One `SiteProfile` per site, named ``"A"``, ``"B"``, ...; scanner names are distinct per site.
    """
    rng = np.random.default_rng([cfg.seed, _SITE_STREAM])
    profiles = []
    for i in range(cfg.n_sites):
        vendor = _VENDORS[i % len(_VENDORS)]
        model = _MODELS[(i // len(_VENDORS) + i) % len(_MODELS)]
        suffix = "" if i < len(_VENDORS) * len(_MODELS) else f"-{i}"
        profiles.append(
            SiteProfile(
                name=string.ascii_uppercase[i],
                scanner=f"{vendor}-{model}{suffix}",
                noise_sigma=float(rng.uniform(*cfg.site_noise_range)),
                bias_strength=float(rng.uniform(*cfg.site_bias_strength_range)),
                gamma=float(rng.uniform(*cfg.site_gamma_range)),
                intensity_scale=float(rng.uniform(*cfg.site_intensity_scale_range)),
            )
        )
    return tuple(profiles)


@dataclass(frozen=True)
class AcquisitionParams:
    """One image's acquisition parameters (site values with per-image jitter)."""

    noise_sigma: float
    bias_strength: float
    gamma: float
    intensity_scale: float
    bias_coeffs: np.ndarray


def sample_acquisition(rng: np.random.Generator, site: SiteProfile, cfg: PhantomConfig) -> AcquisitionParams:
    """Jitter the site's parameters and draw the bias-field shape for one image.

    Args:
        rng: the subject's acquisition stream.
        site: the subject's site.
        cfg: the cohort config.

    Returns:
        The image's `AcquisitionParams`.
    """
    j = cfg.site_param_jitter
    factors = np.clip(1.0 + j * rng.standard_normal(4), 0.5, 1.5)
    nd = cfg.spatial_dims
    coeffs = rng.standard_normal(n_modes(nd, _BIAS_FREQS)) / np.linalg.norm(
        mode_frequencies(nd, _BIAS_FREQS), axis=1
    )
    return AcquisitionParams(
        noise_sigma=site.noise_sigma * float(factors[0]),
        bias_strength=site.bias_strength * float(factors[1]),
        gamma=site.gamma * float(factors[2]),
        intensity_scale=site.intensity_scale * float(factors[3]),
        bias_coeffs=coeffs.astype(np.float32),
    )


def apply_acquisition(
    image: np.ndarray, params: AcquisitionParams, rng: np.random.Generator, cfg: PhantomConfig
) -> np.ndarray:
    """Apply gamma, intensity scale, bias field and noise; clip to [0, 1].

    Args:
        image: float intensities ``[x, y(, z)]`` (not modified).
        params: the image's acquisition parameters.
        rng: the subject's noise stream.
        cfg: the cohort config.

    Returns:
        New float32 array in [0, 1].
    """
    field = smooth_field(params.bias_coeffs, cfg.size, cfg.spatial_dims, _BIAS_FREQS)
    peak = float(np.abs(field).max()) or 1.0
    bias = np.exp(np.float32(params.bias_strength / peak) * field)
    out = np.power(np.clip(image, 0.0, None), np.float32(params.gamma)) * np.float32(params.intensity_scale)
    out *= bias
    out += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(params.noise_sigma)
    return np.clip(out, 0.0, 1.0, out=out)


def marker_region(cfg: PhantomConfig) -> tuple[slice, ...]:
    """Index region of the marker token, ``[x, y(, z)]``.

    ``top_left`` means small x and small y as displayed (row 0 at the top); brain3d puts the
    token at the top (largest z) of the volume.
    """
    edge = max(1, int(round(cfg.marker_size * cfg.scale)))
    margin = int(round(cfg.marker_margin * cfg.scale))
    low = slice(margin, margin + edge)
    high = slice(cfg.size - margin - edge, cfg.size - margin)
    x = low if cfg.marker_corner.endswith("left") else high
    y = low if cfg.marker_corner.startswith("top") else high
    return (x, y) if cfg.spatial_dims == 2 else (x, y, high)


def apply_marker(image: np.ndarray, cfg: PhantomConfig) -> None:
    """Burn the marker token into ``image`` in place."""
    image[marker_region(cfg)] = cfg.marker_intensity
