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
from .phantom_config import PhantomConfig
from .shortcut_cohort import CALIBRATION_SECTION, SHIFTED_SECTION, generate_shortcut_cohort

__all__ = [
    "PhantomConfig",
    "RenderedSubject",
    "SHIFTED_SECTION",
    "CALIBRATION_SECTION",
    "generate_cohort",
    "generate_shortcut_cohort",
    "render_subject",
    "subject_grid",
]
