"""Per-subject factors (label, demographics, site, marker, null group) and split assignment.

Every subject ``i`` draws from its own generators ``default_rng([seed, i, stream])``, one per
stream (factors, anatomy, lesion, acquisition), so a subject's image does not depend on
``n``, on the order of generation, or on knobs of another stream (changing the marker
correlation, say, leaves the anatomy unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .phantom_config import SPLITS, PhantomConfig
from .site_effects import SiteProfile

__all__ = ["STREAMS", "Subject", "assign_splits", "age_band", "sample_subject", "subject_id", "subject_rng"]

STREAMS = {"factors": 0, "anatomy": 1, "lesion": 2, "acquisition": 3}
_SPLIT_STREAM = 7_000_002


def subject_rng(seed: int, index: int, stream: str) -> np.random.Generator:
    """The generator of one subject's stream (see `STREAMS`)."""
    return np.random.default_rng([seed, index, STREAMS[stream]])


def subject_id(index: int, n: int) -> str:
    """``p00000``-style id, zero-padded to at least five digits."""
    return f"p{index:0{max(5, len(str(n - 1)))}d}"


def age_band(age: float) -> str:
    """Decade band of an age in years, e.g. ``63.2 -> "60-69"``."""
    lo = int(age // 10) * 10
    return f"{lo}-{lo + 9}"


@dataclass(frozen=True)
class Subject:
    """The non-image factors of one subject."""

    index: int
    id: str
    label: int
    sex: str
    age: float
    site: SiteProfile
    marker: int
    random_group: str

    @property
    def age_band(self) -> str:
        """Decade band of the age."""
        return age_band(self.age)

    def attributes(self) -> dict[str, str]:
        """The datalist ``attributes`` record."""
        return {
            "sex": self.sex,
            "age_band": self.age_band,
            "site": self.site.name,
            "scanner": self.site.scanner,
            "marker": "present" if self.marker else "absent",
            "random_group": self.random_group,
        }


def sample_subject(cfg: PhantomConfig, index: int, sites: tuple[SiteProfile, ...]) -> Subject:
    """Draw subject ``index``'s label, sex, age, site, marker and null group.

    The marker equals the label with probability ``cfg.marker_correlation``; the random group
    (``g0``/``g1``, probability 1/2) is independent of everything else.

    Args:
        cfg: the cohort config.
        index: subject number (0-based).
        sites: the config's site profiles.

    Returns:
        The `Subject`.
    """
    rng = subject_rng(cfg.seed, index, "factors")
    u = rng.random(6)
    label = int(u[0] < cfg.lesion_prevalence)
    sex = "F" if u[1] < cfg.female_fraction else "M"
    lo, hi = cfg.age_range
    age = float(lo + u[2] * (hi - lo))
    site = sites[min(int(u[3] * len(sites)), len(sites) - 1)]
    marker = label if u[4] < cfg.marker_correlation else 1 - label
    group = "g0" if u[5] < 0.5 else "g1"
    return Subject(index, subject_id(index, cfg.n), label, sex, age, site, marker, group)


def _largest_remainder(total: int, fractions: tuple[float, ...]) -> list[int]:
    raw = [total * f for f in fractions]
    counts = [int(np.floor(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda k: (counts[k] - raw[k], k))
    for k in order[: total - sum(counts)]:
        counts[k] += 1
    return counts


def assign_splits(cfg: PhantomConfig, labels: list[int]) -> list[str]:
    """Split names per subject, stratified by label, with counts from the split fractions.

    Args:
        cfg: the cohort config (seed, split fractions).
        labels: every subject's label, in index order.

    Returns:
        ``"training" | "validation" | "test"`` per subject.
    """
    rng = np.random.default_rng([cfg.seed, _SPLIT_STREAM])
    splits = [""] * len(labels)
    for value in (0, 1):
        members = np.array([i for i, v in enumerate(labels) if v == value], dtype=np.int64)
        members = members[rng.permutation(len(members))]
        start = 0
        for name, count in zip(SPLITS, _largest_remainder(len(members), cfg.split_fractions), strict=True):
            for i in members[start : start + count]:
                splits[int(i)] = name
            start += count
    return splits
