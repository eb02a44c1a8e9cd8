"""Contrast-enhancement time curves ``E(t)`` of the DCE phantoms: the kinetic ground truth.

Each curve is a closed form of the time ``t`` in minutes after injection and the peak
enhancement ``peak`` (an intensity added to the clean pre-contrast image):

- ``"persistent"``: ``peak * (1 - exp(-t / 3))``; rises monotonically towards ``peak``.
- ``"plateau"``: rises as ``peak * (1 - (1 - t / 1.5) ** 2)`` to ``peak`` at 1.5 min, then stays at ``peak``.
- ``"washout"``: the same rise to ``peak`` at 1.5 min, then falls as ``peak * exp(-(t - 1.5) / 8)``.
- ``"vascular"``: blood pool; the same rise shape to ``peak`` at 0.5 min, then ``peak * exp(-(t - 0.5) / 20)``.
- ``"none"``: a non-enhancing lesion, ``E = 0``.

These are the three curve types of breast DCE-MRI reporting (BI-RADS type I/II/III)
reduced to smooth closed forms; written by hand because no library ships a
phantom kinetic model small enough to be the documented ground truth.

Example:
    >>> float(enhancement_curve("plateau", 5.0, 0.2))
    0.2
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["CURVES", "PEAK_TIME", "enhancement_curve"]

CURVES = ("none", "persistent", "plateau", "washout", "vascular")
PEAK_TIME = {"plateau": 1.5, "washout": 1.5, "vascular": 0.5}  # minutes to the peak
_PERSISTENT_TAU = 3.0  # minutes: rise constant of the persistent curve
_DECAY_TAU = {"plateau": math.inf, "washout": 8.0, "vascular": 20.0}  # minutes: fall after the peak


def enhancement_curve(kinetics: str, t: float | np.ndarray, peak: float) -> np.ndarray:
    """Enhancement ``E(t)`` of one kinetic class (see the module docstring for the formulas).

    Args:
        kinetics: ``"none" | "persistent" | "plateau" | "washout" | "vascular"``.
        t: minutes after injection, a scalar or array of non-negative finite values.
        peak: peak enhancement, a non-negative finite number (the supremum for ``"persistent"``).

    Returns:
        float64 array of ``t``'s shape (0-d for a scalar) with ``0 <= E <= peak`` and ``E(0) = 0``.

    Raises:
        ValueError: unknown ``kinetics``, a negative or non-finite time or a negative or
            non-finite ``peak``.

    Example:
        >>> enhancement_curve("washout", np.array([1.5, 9.5]), 1.0).round(3).tolist()
        [1.0, 0.368]
    """
    if kinetics not in CURVES:
        raise ValueError(f"kinetics must be one of {CURVES}, got {kinetics!r}")
    times = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(times)) or np.any(times < 0):
        raise ValueError(f"t must be finite minutes >= 0, got {t!r}")
    if (
        isinstance(peak, bool)
        or not isinstance(peak, (int, float, np.floating))
        or not (math.isfinite(peak) and peak >= 0)
    ):
        raise ValueError(f"peak must be a finite number >= 0, got {peak!r}")
    peak = float(peak)
    if kinetics == "none":
        return np.zeros_like(times)
    if kinetics == "persistent":
        return peak * (1.0 - np.exp(-times / _PERSISTENT_TAU))
    t_peak, tau = PEAK_TIME[kinetics], _DECAY_TAU[kinetics]
    rising = peak * (1.0 - (1.0 - np.minimum(times, t_peak) / t_peak) ** 2)
    after = times - t_peak
    falling = (
        peak * np.exp(-np.maximum(after, 0.0) / tau) if math.isfinite(tau) else np.full_like(times, peak)
    )
    return np.where(after <= 0, rising, falling)
