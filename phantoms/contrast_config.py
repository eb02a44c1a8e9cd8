"""`ContrastPhantomConfig`: every knob of a paired pre-/post-contrast cohort, validated on construction.

The anatomy, subjects, sites and splits are those of the brain phantoms (`PhantomConfig`);
`ContrastPhantomConfig.brain_config` builds the matching `PhantomConfig` so that the existing
anatomy, lesion, site and split code is reused unchanged. Lengths marked "px at size 64" are
scaled by ``size / 64`` as in `PhantomConfig`.

Example:
    >>> cfg = ContrastPhantomConfig(kind="dce2d", n=10, time_points=(1.0, 2.0, 5.0))
    >>> cfg.spatial_dims, cfg.brain_config().kind
    (2, 'brain2d')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .phantom_config import (
    PhantomConfig,
    _check_float,
    _check_int,
    _check_range,
    _is_number,
    config_from_dict,
    config_to_dict,
)

__all__ = ["CONTRAST_KINDS", "KINETICS", "ContrastPhantomConfig"]

CONTRAST_KINDS = ("dce2d", "dce2d_t2", "dce3d")
KINETICS = ("persistent", "plateau", "washout")  # kinetic classes of enhancing lesions
MAX_LESIONS = 50  # instance ids are written into 8-bit masks; keep well inside


def _check_fractions(name: str, value: Any, length: int, what: str) -> tuple[float, ...]:
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == length
        and all(_is_number(f) and f >= 0 for f in value)
        and abs(sum(value) - 1.0) <= 1e-6
    )
    if not ok:
        raise ValueError(f"{name} must be {length} non-negative numbers summing to 1 ({what}), got {value!r}")
    return tuple(float(f) for f in value)


@dataclass(frozen=True)
class ContrastPhantomConfig:
    """Generative knobs of a paired pre-/post-contrast phantom cohort (validated in ``__post_init__``).

    Args:
        kind: ``"dce2d"`` (one axial slice, pre-contrast T1 and post-contrast T1 per time point),
            ``"dce2d_t2"`` (same anatomy and lesions, the target is a T2-like image; no time points)
            or ``"dce3d"`` (the volume, NIfTI files).
        n: number of subjects.
        seed: non-negative integer; the same config gives byte-identical files.
        size: output edge length in pixels.
        time_points: post-contrast acquisition times in minutes after injection (strictly
            increasing, in ``(0, 60]``); ignored by ``dce2d_t2``.
        enhancing_fraction: probability that a lesion enhances.
        kinetics_fractions: probabilities of the kinetic classes (persistent, plateau, washout)
            of an enhancing lesion, summing to 1.
        lesions_per_image: inclusive integer range of lesions per image (uniform).
        noise_sigma: Gaussian noise sigma of every image; ``None`` uses each site's noise
            (``site_noise_range``, jittered per image as in brain2d); ``0.0`` gives noise-free images.
        split_fractions: (training, validation, test) fractions, summing to 1; stratified by label.

    The remaining fields are documented by their comments below.

    Raises:
        ValueError: a field is out of range; the message names the field, the expectation and the value.
    """

    kind: str = "dce2d"
    n: int = 200
    seed: int = 0
    size: int = 64
    time_points: tuple[float, ...] = (2.0,)
    enhancing_fraction: float = 0.75
    kinetics_fractions: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)
    lesions_per_image: tuple[int, int] = (0, 4)
    noise_sigma: float | None = None
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    # --- lesions ---
    lesion_radius_range: tuple[float, float] = (1.0, 6.0)  # px at size 64 (scaled; never below 1 px)
    lesion_t1_contrast_range: tuple[float, float] = (-0.12, -0.04)  # pre-contrast T1 change (hypo-intense)
    lesion_t2_contrast_range: tuple[float, float] = (0.15, 0.35)  # dce2d_t2 target: T2 change (bright)
    peak_enhancement_range: tuple[float, float] = (0.1, 0.3)  # peak of E(t) of an enhancing lesion
    lesion_edge_softness: float = 0.5  # px at size 64: roll-off width, inside the lesion's radius
    lesion_wm_threshold: float = 0.5  # centres drawn where the warped white-matter probability exceeds this
    lesion_gap: float = 1.0  # px at size 64: minimum gap between two lesions' discs (they never touch)
    # --- vessels (superior sagittal sinus along the midline edge, choroid plexus in the ventricles) ---
    vessel_peak_range: tuple[float, float] = (0.25, 0.4)  # peak enhancement of the blood pool
    vessel_radius: float = 1.2  # px at size 64 (never below 1 px)
    # --- anatomy and sites (as in PhantomConfig) ---
    tissue_intensity: float = 0.45  # white matter before site effects (lower than brain2d: room to enhance)
    female_fraction: float = 0.5
    age_range: tuple[float, float] = (20.0, 90.0)
    n_sites: int = 3
    site_noise_range: tuple[float, float] = (0.01, 0.04)
    site_bias_strength_range: tuple[float, float] = (0.05, 0.3)
    # gamma 1 keeps the enhancement additive in the acquired images (up to scale x bias field)
    site_gamma_range: tuple[float, float] = (1.0, 1.0)
    site_intensity_scale_range: tuple[float, float] = (0.85, 1.1)
    site_param_jitter: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in CONTRAST_KINDS:
            raise ValueError(f"kind must be one of {CONTRAST_KINDS}, got {self.kind!r}")
        _check_int("n", self.n, 1)
        _check_int("seed", self.seed, 0)
        _check_int("size", self.size, 16, 512)
        tp = self.time_points
        if (
            not isinstance(tp, (tuple, list))
            or len(tp) == 0
            or not all(_is_number(t) and 0 < t <= 60 for t in tp)
            or any(b <= a for a, b in zip(tp[:-1], tp[1:], strict=False))
        ):
            raise ValueError(
                f"time_points must be a non-empty, strictly increasing sequence of minutes in (0, 60], got {tp!r}"
            )
        object.__setattr__(self, "time_points", tuple(float(t) for t in tp))
        _check_float("enhancing_fraction", self.enhancing_fraction, 0.0, 1.0)
        kf = _check_fractions(
            "kinetics_fractions", self.kinetics_fractions, 3, "persistent, plateau, washout"
        )
        object.__setattr__(self, "kinetics_fractions", kf)
        lp = self.lesions_per_image
        if (
            not isinstance(lp, (tuple, list))
            or len(lp) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in lp)
            or not 0 <= lp[0] <= lp[1] <= MAX_LESIONS
        ):
            raise ValueError(
                f"lesions_per_image must be a pair of integers (low, high) with 0 <= low <= high <= {MAX_LESIONS}, got {lp!r}"
            )
        object.__setattr__(self, "lesions_per_image", tuple(lp))
        if self.noise_sigma is not None:
            _check_float("noise_sigma", self.noise_sigma, 0.0, 0.5)
        sf = _check_fractions("split_fractions", self.split_fractions, 3, "training, validation, test")
        object.__setattr__(self, "split_fractions", sf)
        _check_range("lesion_radius_range", self.lesion_radius_range, 0.5, 32.0)
        _check_range("lesion_t1_contrast_range", self.lesion_t1_contrast_range, -0.5, 0.5)
        _check_range("lesion_t2_contrast_range", self.lesion_t2_contrast_range, -0.5, 0.5)
        _check_range("peak_enhancement_range", self.peak_enhancement_range, 0.0, 0.5)
        _check_float("lesion_edge_softness", self.lesion_edge_softness, 0.0, 4.0)
        _check_float("lesion_wm_threshold", self.lesion_wm_threshold, 0.0, 1.0, lo_open=True)
        _check_float("lesion_gap", self.lesion_gap, 0.0, 8.0)
        _check_range("vessel_peak_range", self.vessel_peak_range, 0.0, 0.5)
        _check_float("vessel_radius", self.vessel_radius, 0.5, 8.0)
        _check_float("tissue_intensity", self.tissue_intensity, 0.0, 1.0, lo_open=True)
        _check_float("female_fraction", self.female_fraction, 0.0, 1.0)
        _check_range("age_range", self.age_range, 0.0, 120.0)
        _check_int("n_sites", self.n_sites, 1, 26)
        _check_range("site_noise_range", self.site_noise_range, 0.0, 0.5)
        _check_range("site_bias_strength_range", self.site_bias_strength_range, 0.0, 1.0)
        _check_range("site_gamma_range", self.site_gamma_range, 0.2, 5.0)
        _check_range("site_intensity_scale_range", self.site_intensity_scale_range, 0.1, 2.0)
        _check_float("site_param_jitter", self.site_param_jitter, 0.0, 0.5)
        for name in (
            "age_range",
            "lesion_radius_range",
            "lesion_t1_contrast_range",
            "lesion_t2_contrast_range",
            "peak_enhancement_range",
            "vessel_peak_range",
            "site_noise_range",
            "site_bias_strength_range",
            "site_gamma_range",
            "site_intensity_scale_range",
        ):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def spatial_dims(self) -> int:
        """3 for dce3d, else 2."""
        return 3 if self.kind == "dce3d" else 2

    @property
    def scale(self) -> float:
        """Factor from "px at size 64" to output pixels."""
        return self.size / 64.0

    @property
    def target_times(self) -> tuple[float, ...]:
        """The post-contrast times in minutes (``()`` for ``dce2d_t2``)."""
        return () if self.kind == "dce2d_t2" else self.time_points

    def brain_config(self) -> PhantomConfig:
        """The `PhantomConfig` whose anatomy, sites, subjects and splits this cohort reuses.

        Returns:
            A brain2d (PNG) or brain3d (NIfTI) config with this config's shared fields; its lesion
            fields drive `phantoms.lesions` placement limits only.
        """
        return PhantomConfig(
            kind="brain3d" if self.spatial_dims == 3 else "brain2d",
            n=self.n,
            seed=self.seed,
            size=self.size,
            image_format="nifti" if self.spatial_dims == 3 else "png",
            split_fractions=self.split_fractions,
            lesion_radius_range=self.lesion_radius_range,
            lesion_edge_softness=self.lesion_edge_softness,
            lesion_wm_threshold=self.lesion_wm_threshold,
            tissue_intensity=self.tissue_intensity,
            female_fraction=self.female_fraction,
            age_range=self.age_range,
            n_sites=self.n_sites,
            site_noise_range=self.site_noise_range,
            site_bias_strength_range=self.site_bias_strength_range,
            site_gamma_range=self.site_gamma_range,
            site_intensity_scale_range=self.site_intensity_scale_range,
            site_param_jitter=self.site_param_jitter,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples become lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContrastPhantomConfig:
        """Inverse of `to_dict` (lists become tuples; unknown keys raise ``ValueError``).

        Args:
            data: a dict as written to ``phantom_config.json``.

        Returns:
            The validated config.

        Raises:
            ValueError: unknown keys or invalid values.
        """
        return config_from_dict(cls, data)
