"""Synthetic cohorts with known generative factors: the ground truth for every evaluation.

Example:
    >>> import tempfile
    >>> from phantoms import PhantomConfig, generate_cohort
    >>> with tempfile.TemporaryDirectory() as out:
    ...     summary = generate_cohort(PhantomConfig(kind="brain2d", n=20, size=32), out, progress=False)
    >>> summary["n"], sum(summary["counts"].values())
    (20, 20)
"""

from __future__ import annotations

from .brain_cohort import RenderedSubject, generate_cohort, render_subject, subject_grid
from .contrast_cohort import RenderedContrastSubject, generate_contrast_cohort, render_contrast_subject
from .contrast_config import ContrastPhantomConfig
from .contrast_kinetics import enhancement_curve
from .phantom_config import PhantomConfig
from .shortcut_cohort import CALIBRATION_SECTION, SHIFTED_SECTION, generate_shortcut_cohort

__all__ = [
    "ContrastPhantomConfig",
    "PhantomConfig",
    "RenderedContrastSubject",
    "RenderedSubject",
    "SHIFTED_SECTION",
    "CALIBRATION_SECTION",
    "enhancement_curve",
    "generate_cohort",
    "generate_contrast_cohort",
    "generate_shortcut_cohort",
    "render_contrast_subject",
    "render_subject",
    "subject_grid",
]
