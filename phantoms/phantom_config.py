"""`PhantomConfig`: every knob of a synthetic brain cohort, validated on construction.

Lengths marked "px at size 64" are given for a 64-pixel edge and scaled by ``size / 64``,
so the same config describes the same anatomy at any resolution.

Example:
    >>> cfg = PhantomConfig(kind="brain2d", n=10, marker_correlation=0.9)
    >>> cfg.scale
    1.0
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["PhantomConfig", "KINDS", "IMAGE_FORMATS", "MARKER_CORNERS", "SPLITS"]

KINDS = ("brain2d", "brain3d")
IMAGE_FORMATS = {"brain2d": ("png", "nifti", "dicom"), "brain3d": ("nifti", "dicom")}
MARKER_CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
SPLITS = ("training", "validation", "test")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo or (hi is not None and value > hi):
        bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")


def _check_float(name: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> None:
    ok = _is_number(value) and (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        raise ValueError(f"{name} must be in {'(' if lo_open else '['}{lo}, {hi}], got {value!r}")


def _check_int_range(name: str, value: Any, lo: int, hi: int) -> None:
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and lo <= value[0] <= value[1] <= hi
    )
    if not ok:
        raise ValueError(
            f"{name} must be a pair (min, max) of integers with {lo} <= min <= max <= {hi}, got {value!r}"
        )


def _check_range(name: str, value: Any, lo: float, hi: float) -> None:
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(_is_number(v) for v in value)
        and lo <= value[0] <= value[1] <= hi
    )
    if not ok:
        raise ValueError(f"{name} must be a pair (low, high) with {lo} <= low <= high <= {hi}, got {value!r}")


@dataclass(frozen=True)
class PhantomConfig:
    """Generative knobs of a phantom cohort (all validated in ``__post_init__``).

    Args:
        kind: ``"brain2d"`` (one axial slice at the lateral ventricles) or ``"brain3d"`` (the volume).
        n: number of subjects (images).
        seed: non-negative integer; the same config gives byte-identical files.
        size: output edge length in pixels (``size x size`` or ``size^3``).
        marker_correlation: R = P(marker present == label); 0.5 independent, 0.9 shortcut, 0.1 reversed.
        image_format: brain2d: ``"png" | "nifti" | "dicom"``; brain3d: ``"nifti" | "dicom"``.
        split_fractions: (training, validation, test) fractions, summing to 1; stratified by label.
        lesion_prevalence: P(label = 1); every positive holds ``lesions_per_image`` lesions, negatives none.
        lesions_per_image: ``(min, max)`` lesion count of a positive image, uniform per subject
            (default ``(1, 1)``: exactly one, the cohorts made before this field existed). Lesions of
            one image never overlap; a crowded image may hold fewer than drawn (``factors.csv``
            ``lesion_count`` records the real count).

    The remaining fields are documented by their comments below.

    Raises:
        ValueError: a field is out of range; the message names the field, the expectation and the value.
    """

    kind: str = "brain2d"
    n: int = 100
    seed: int = 0
    size: int = 64
    marker_correlation: float = 0.5
    image_format: str = "png"
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    lesion_prevalence: float = 0.5
    # --- lesions (label = 1) ---
    lesions_per_image: tuple[int, int] = (1, 1)  # (min, max) lesions of a positive image, uniform per subject
    lesion_radius_range: tuple[float, float] = (1.5, 3.5)  # px at size 64 (scaled; never below 1 px)
    # added to the T1 intensity (WM is ~0.6). From 0.02 so the faintest lesions are near-invisible and
    # the task keeps headroom (bench/bench_training.py prints DenseNet121's test AUC on it)
    lesion_contrast_range: tuple[float, float] = (0.02, 0.25)
    lesion_edge_softness: float = (
        0.5  # px at size 64: width of the blob's intensity roll-off (mask unaffected)
    )
    lesion_wm_threshold: float = 0.5  # centre drawn where the deformed white-matter probability exceeds this
    # --- anatomy ---
    tissue_intensity: float = 0.6  # white-matter intensity before site effects (template rescaled to it)
    female_fraction: float = 0.5  # P(sex = "F")
    female_head_scale: float = 0.93  # global scale of female heads (male = male_head_scale)
    male_head_scale: float = 1.0  # global scale of male heads
    head_scale_jitter: float = 0.02  # sd of the multiplicative per-subject head-scale jitter
    age_range: tuple[float, float] = (20.0, 90.0)  # years, uniform; banded into decades for age_band
    ventricle_age_slope: float = 0.007  # ventricle expansion strength per year above age_range[0]
    ventricle_jitter: float = 0.03  # sd of the per-subject expansion strength jitter
    deformation_magnitude: float = 1.0  # px at size 64: sd of each smooth displacement mode
    rotation_max_deg: float = 5.0  # uniform in +-this (3D: about each axis)
    translation_max: float = 1.0  # px at size 64, uniform in +-this per axis
    slice_offset_max: float = 1.0  # px at size 64, brain2d only: axial slice jitter around the ventricles
    # --- acquisition sites (one draw of per-site parameters per config seed) ---
    n_sites: int = 3  # sites named A, B, C, ...; each subject's site is uniform
    site_noise_range: tuple[float, float] = (0.01, 0.04)  # Gaussian noise sigma per site
    site_bias_strength_range: tuple[float, float] = (0.05, 0.3)  # smooth multiplicative bias field amplitude
    site_gamma_range: tuple[float, float] = (0.85, 1.2)  # contrast gamma (intensity ** gamma)
    site_intensity_scale_range: tuple[float, float] = (0.85, 1.1)  # global intensity scale per site
    site_param_jitter: float = 0.05  # relative sd of per-image variation around the site's values
    # --- spurious marker (a burnt-in token outside the head) ---
    marker_size: float = 3.0  # px at size 64: edge of the square (3D: cube) token
    marker_intensity: float = 1.0  # token intensity (written after noise, like a burnt-in annotation)
    marker_margin: float = 2.0  # px at size 64 between the token and the image corner
    marker_corner: str = "top_left"  # as displayed: top_left = (x, y) near (0, 0); 3D uses the top z end

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        _check_int("n", self.n, 1)
        _check_int("seed", self.seed, 0)
        _check_int("size", self.size, 16, 512)
        _check_float("marker_correlation", self.marker_correlation, 0.0, 1.0)
        if self.image_format not in IMAGE_FORMATS[self.kind]:
            raise ValueError(
                f"image_format must be one of {IMAGE_FORMATS[self.kind]} for kind {self.kind!r}, "
                f"got {self.image_format!r}"
            )
        fr = self.split_fractions
        if (
            not isinstance(fr, (tuple, list))
            or len(fr) != 3
            or not all(_is_number(f) and f >= 0 for f in fr)
            or abs(sum(fr) - 1.0) > 1e-6
        ):
            raise ValueError(
                f"split_fractions must be three non-negative numbers summing to 1 "
                f"(training, validation, test), got {fr!r}"
            )
        if isinstance(fr, list):
            object.__setattr__(self, "split_fractions", tuple(fr))
        _check_float("lesion_prevalence", self.lesion_prevalence, 0.0, 1.0)
        _check_int_range("lesions_per_image", self.lesions_per_image, 1, 255)  # uint8 instance ids
        if isinstance(self.lesions_per_image, list):
            object.__setattr__(self, "lesions_per_image", tuple(self.lesions_per_image))
        _check_range("lesion_radius_range", self.lesion_radius_range, 0.5, 64.0)
        _check_range("lesion_contrast_range", self.lesion_contrast_range, -1.0, 1.0)
        _check_float("lesion_edge_softness", self.lesion_edge_softness, 0.0, 16.0)
        # a lesion centre keeps ceil(radius + softness / 2) + 1 px from every edge: leave it room
        reach = (
            max(1.0, self.lesion_radius_range[1] * self.scale) + self.lesion_edge_softness * self.scale / 2
        )
        if self.size - 2 * (math.ceil(reach) + 1) < 1:
            raise ValueError(
                f"lesion_radius_range high end {self.lesion_radius_range[1]} (px at size 64) plus half of "
                f"lesion_edge_softness leaves no room for a lesion centre at size {self.size}, got reach "
                f"{reach:.3g} px"
            )
        _check_float("lesion_wm_threshold", self.lesion_wm_threshold, 0.0, 1.0, lo_open=True)
        _check_float("tissue_intensity", self.tissue_intensity, 0.0, 1.0, lo_open=True)
        _check_float("female_fraction", self.female_fraction, 0.0, 1.0)
        _check_float("female_head_scale", self.female_head_scale, 0.5, 1.2)
        _check_float("male_head_scale", self.male_head_scale, 0.5, 1.2)
        _check_float("head_scale_jitter", self.head_scale_jitter, 0.0, 0.2)
        _check_range("age_range", self.age_range, 0.0, 120.0)
        _check_float("ventricle_age_slope", self.ventricle_age_slope, 0.0, 0.02)
        _check_float("ventricle_jitter", self.ventricle_jitter, 0.0, 0.2)
        _check_float("deformation_magnitude", self.deformation_magnitude, 0.0, 8.0)
        _check_float("rotation_max_deg", self.rotation_max_deg, 0.0, 45.0)
        _check_float("translation_max", self.translation_max, 0.0, 8.0)
        _check_float("slice_offset_max", self.slice_offset_max, 0.0, 8.0)
        _check_int("n_sites", self.n_sites, 1, 26)
        _check_range("site_noise_range", self.site_noise_range, 0.0, 0.5)
        _check_range("site_bias_strength_range", self.site_bias_strength_range, 0.0, 1.0)
        _check_range("site_gamma_range", self.site_gamma_range, 0.2, 5.0)
        _check_range("site_intensity_scale_range", self.site_intensity_scale_range, 0.1, 2.0)
        _check_float("site_param_jitter", self.site_param_jitter, 0.0, 0.5)
        _check_float("marker_size", self.marker_size, 0.0, 16.0, lo_open=True)
        _check_float("marker_intensity", self.marker_intensity, 0.0, 1.0)
        _check_float("marker_margin", self.marker_margin, 0.0, 8.0)
        if self.marker_corner not in MARKER_CORNERS:
            raise ValueError(f"marker_corner must be one of {MARKER_CORNERS}, got {self.marker_corner!r}")
        # keep the strongest ventricle expansion well inside the one-to-one range (strength < 1)
        max_strength = (
            self.ventricle_age_slope * (self.age_range[1] - self.age_range[0]) + 4 * self.ventricle_jitter
        )
        if max_strength >= 0.8:
            raise ValueError(
                "ventricle_age_slope * (age_range span) + 4 * ventricle_jitter must be < 0.8, "
                f"got {max_strength:.3f}"
            )

    @property
    def spatial_dims(self) -> int:
        """2 for brain2d, 3 for brain3d."""
        return 2 if self.kind == "brain2d" else 3

    @property
    def scale(self) -> float:
        """Factor from "px at size 64" to output pixels."""
        return self.size / 64.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples become lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PhantomConfig:
        """Inverse of `to_dict` (lists become tuples; unknown keys raise ``ValueError``).

        Args:
            data: a dict as written to ``phantom_config.json``.

        Returns:
            The validated config.

        Raises:
            ValueError: unknown keys or invalid values.
        """
        return config_from_dict(cls, data)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A phantom config dataclass as a JSON-ready dict of every field (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Inverse of :func:`config_to_dict` for the dataclass ``cls`` (lists become tuples).

    Raises:
        ValueError: keys that are no field of ``cls``, or values ``cls`` refuses.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {unknown}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
