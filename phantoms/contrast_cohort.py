"""Paired pre-/post-contrast phantom cohorts with a known enhancement map: ground truth for synthesis.

Each subject reuses the brain phantoms' generative model — MNI152 anatomy warped per subject
(`phantoms.anatomy`), demographics, site and split (`phantoms.subjects`), the site's bias
field, intensity scale and noise (`phantoms.site_effects`) — and adds:

- 0..N white-matter lesions (`ContrastPhantomConfig.lesions_per_image`), from small to large,
  never touching; each is slightly T1 hypo-intense before contrast. With probability
  ``enhancing_fraction`` a lesion enhances with a kinetic class (persistent / plateau /
  washout) and a peak enhancement, following `phantoms.contrast_kinetics.enhancement_curve`;
  a non-enhancing lesion has ``E = 0``.
- vessels (superior sagittal sinus, choroid plexus; `phantoms.contrast_vessels`) that enhance
  strongly with the ``"vascular"`` curve.

With ``pre_clean`` the subject's T1 tissue signal, ``post_clean(t) = pre_clean + enhancement(t)``;
the same acquisition (bias field, intensity scale, gamma) is then applied to the pre- and every
post-contrast image, each with its own noise draw. The saved ground-truth map is
``post_clean(t) - pre_clean`` (float32, no acquisition effects): zero outside lesions and
vessels, and zero on non-enhancing lesions. Kind ``dce2d_t2`` replaces the post-contrast
images by one T2-like target (CSF bright, white matter dark, lesions bright) of the same
anatomy and lesions, and its map ``maps/<id>_difference.nii.gz`` is ``t2_clean - pre_clean``.

Files: pre- and post-contrast images (2D: 16-bit PNG as brain2d; dce3d: NIfTI), lesion instance
and vessel masks, float32 NIfTI ground-truth maps, ``datalist.json`` (MONAI sections
``training`` / ``validation`` / ``test``), ``factors.csv`` (one row per lesion), ``subjects.csv``
(one row per subject) and ``phantom_config.json``; the layout is in `phantoms.contrast_writer`.

Example:
    >>> from phantoms import ContrastPhantomConfig, generate_contrast_cohort
    >>> cfg = ContrastPhantomConfig(n=12, size=32, time_points=(1.0, 4.0))
    >>> summary = generate_contrast_cohort(cfg, "runs/dce", progress=False)  # doctest: +SKIP
    >>> sum(summary["counts"].values())  # doctest: +SKIP
    12
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .anatomy import TemplateGrid, sample_anatomy, warp_anatomy
from .brain_cohort import subject_grid
from .cohort_writer import write_datalist, write_factors_csv, write_phantom_config
from .contrast_config import KINETICS, ContrastPhantomConfig
from .contrast_kinetics import enhancement_curve
from .contrast_lesions import ContrastLesion, add_enhancement, sample_contrast_lesions, t2_like
from .contrast_vessels import subject_vessel_density
from .contrast_writer import lesion_rows, write_contrast_subject, write_lesion_factors
from .lesions import add_lesion, lesion_mask
from .phantom_config import SPLITS
from .site_effects import apply_acquisition, sample_acquisition, site_profiles
from .subjects import Subject, assign_splits, sample_subject, subject_rng

__all__ = ["ContrastLesion", "RenderedContrastSubject", "generate_contrast_cohort", "render_contrast_subject"]

# rng stream tags of this cohort's own draws (the brain streams 0..3 are reused as they are)
_LESION_STREAM = 11
_VESSEL_STREAM = 12
_NOISE_STREAM = 13


@dataclass(frozen=True)
class RenderedContrastSubject:
    """One rendered subject: clean and acquired images, ground-truth maps, masks and factors.

    Attributes:
        pre: acquired pre-contrast image (site effects and noise) ``[x, y(, z)]`` in [0, 1].
        targets: acquired post-contrast images, one per time point (``dce2d_t2``: the T2-like image).
        pre_clean: the pre-contrast tissue signal (no site effects, no noise).
        targets_clean: the clean targets (``pre_clean + enhancement(t)``; ``dce2d_t2``: T2 tissue signal).
        maps: ground truth ``targets_clean[k] - pre_clean`` (float32), one per target.
        lesion_mask: uint8 instance mask (lesion ``j`` has id ``j + 1``).
        vessel_mask: uint8 0/1 support of the vessels.
        lesions: the lesions, in id order.
        factors: the subject's factor row (``split`` left empty).
    """

    pre: np.ndarray
    targets: list[np.ndarray]
    pre_clean: np.ndarray
    targets_clean: list[np.ndarray]
    maps: list[np.ndarray]
    lesion_mask: np.ndarray
    vessel_mask: np.ndarray
    lesions: list[ContrastLesion]
    factors: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> int:
        """1 if any lesion enhances, else 0."""
        return int(any(les.enhancing for les in self.lesions))


def _rng(cfg: ContrastPhantomConfig, index: int, *tags: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, index, *tags])


def _softness(cfg: ContrastPhantomConfig) -> float:
    return cfg.lesion_edge_softness * cfg.scale


def render_contrast_subject(
    cfg: ContrastPhantomConfig,
    index: int,
    subject: Subject | None = None,
    grid: TemplateGrid | None = None,
) -> RenderedContrastSubject:
    """Render one subject's clean and acquired images, ground-truth maps, masks and factors.

    Args:
        cfg: the cohort config.
        index: subject number (0-based); with ``cfg.seed`` it determines every draw.
        subject: the subject's non-image factors (default: drawn as `generate_contrast_cohort` does).
        grid: ``phantoms.brain_cohort.subject_grid(cfg.brain_config())`` (default: computed, cached).

    Returns:
        The `RenderedContrastSubject`; ``factors`` lacks only the split.

    Raises:
        ValueError: ``index`` is outside ``[0, cfg.n)``.
    """
    if not isinstance(index, int) or not 0 <= index < cfg.n:
        raise ValueError(f"index must be an integer in [0, {cfg.n}), got {index!r}")
    base = cfg.brain_config()
    if subject is None:
        subject = sample_subject(base, index, site_profiles(base))
    if grid is None:
        grid = subject_grid(base)
    nd = cfg.spatial_dims
    softness = _softness(cfg)
    anatomy = sample_anatomy(subject_rng(cfg.seed, index, "anatomy"), base, subject.sex, subject.age)
    t1, wm, deform = warp_anatomy(grid, anatomy, base)
    lesions = sample_contrast_lesions(_rng(cfg, index, _LESION_STREAM), wm, cfg)
    vessel_radius = max(1.0, cfg.vessel_radius * cfg.scale)
    vessels = subject_vessel_density(grid, anatomy, base, vessel_radius, softness)
    vessel_peak = float(_rng(cfg, index, _VESSEL_STREAM).uniform(*cfg.vessel_peak_range))

    pre_clean = t1.copy()
    instances = np.zeros(t1.shape, np.uint8)
    for j, les in enumerate(lesions):
        add_lesion(pre_clean, les.lesion, softness)
        instances[lesion_mask(t1.shape, les.lesion) > 0] = j + 1

    targets_clean: list[np.ndarray] = []
    if cfg.kind == "dce2d_t2":
        t2 = t2_like(t1, cfg.tissue_intensity)
        for les in lesions:
            add_lesion(t2, dataclasses.replace(les.lesion, contrast=les.t2_contrast), softness)
        targets_clean.append(t2)
    else:
        for t in cfg.target_times:
            enh = np.zeros(t1.shape, np.float32)
            for les in lesions:
                if les.enhancing:
                    value = float(enhancement_curve(les.kinetics, t, les.peak_enhancement))
                    add_enhancement(enh, les, value, softness)
            enh += vessels * np.float32(float(enhancement_curve("vascular", t, vessel_peak)))
            targets_clean.append(pre_clean + enh)
    maps = [(target - pre_clean).astype(np.float32) for target in targets_clean]

    acquisition = sample_acquisition(subject_rng(cfg.seed, index, "acquisition"), subject.site, base)
    if cfg.noise_sigma is not None:
        acquisition = dataclasses.replace(acquisition, noise_sigma=float(cfg.noise_sigma))
    pre = apply_acquisition(pre_clean, acquisition, _rng(cfg, index, _NOISE_STREAM, 0), base)
    targets = [
        apply_acquisition(clean, acquisition, _rng(cfg, index, _NOISE_STREAM, k + 1), base)
        for k, clean in enumerate(targets_clean)
    ]

    axes = "xyz"[:nd]
    row: dict[str, Any] = {
        "id": subject.id,
        "split": "",
        "label": int(any(les.enhancing for les in lesions)),
        "n_lesions": len(lesions),
        "n_enhancing": sum(les.enhancing for les in lesions),
        "sex": subject.sex,
        "age": subject.age,
        "age_band": subject.age_band,
        "site": subject.site.name,
        "scanner": subject.site.scanner,
        "random_group": subject.random_group,
        "head_scale": anatomy.head_scale,
        "ventricle_strength": anatomy.ventricle_strength,
    }
    if nd == 2:
        row["rotation_deg"] = anatomy.rotation_deg[0]
        row["slice_offset_px"] = anatomy.slice_offset_px
    else:
        row.update({f"rotation_{a}_deg": v for a, v in zip(axes, anatomy.rotation_deg, strict=True)})
    row.update({f"translation_{a}_px": v for a, v in zip(axes, anatomy.translation_px, strict=True)})
    row.update(deform)
    row.update(
        {
            "vessel_peak_enhancement": vessel_peak,
            "vessel_px": int((vessels > 0).sum()),
            "bias_field_strength": acquisition.bias_strength,
            "noise_sigma": acquisition.noise_sigma,
            "contrast_gamma": acquisition.gamma,
            "intensity_scale": acquisition.intensity_scale,
        }
    )
    return RenderedContrastSubject(
        pre=pre,
        targets=targets,
        pre_clean=pre_clean,
        targets_clean=targets_clean,
        maps=maps,
        lesion_mask=instances,
        vessel_mask=(vessels > 0).astype(np.uint8),
        lesions=lesions,
        factors=row,
    )


def generate_contrast_cohort(
    cfg: ContrastPhantomConfig, out_dir: str | Path, progress: bool = True
) -> dict[str, Any]:
    """Generate a paired pre-/post-contrast cohort and write it into ``out_dir``.

    Existing files of the same names are overwritten; nothing else in ``out_dir`` is touched.
    Datalist records (paths relative to ``out_dir``): ``id``, ``source`` (pre-contrast image),
    ``target`` (first post-contrast image; ``dce2d_t2``: the T2-like image), ``targets`` (all of
    them), ``time_points`` (minutes, ``[]`` for ``dce2d_t2``), ``mask`` (lesion instances),
    ``vessels`` (vessel mask), ``difference`` (clean target minus clean source of ``target``),
    ``enhancement`` and ``enhancements`` (DCE kinds: the maps of the first / every time point),
    ``label`` (1 if any lesion enhances) and ``attributes`` (sex, age_band, site, scanner,
    random_group).

    Args:
        cfg: the cohort config.
        out_dir: destination folder (created if missing).
        progress: show a tqdm progress bar.

    Returns:
        Summary: ``kind``, ``n``, ``out_dir``, ``counts`` (per split), ``label_counts``,
        ``positive_fraction`` (overall and ``per_split``), ``lesions`` (``total``, ``enhancing``,
        ``kinetics`` counts), ``time_points``, ``sites``, ``seconds`` and ``images_per_second``.

    Raises:
        TypeError: ``cfg`` is not a `ContrastPhantomConfig`.
        NotADirectoryError: ``out_dir`` exists and is not a folder.
    """
    from tqdm import tqdm

    if not isinstance(cfg, ContrastPhantomConfig):
        raise TypeError(f"cfg must be a ContrastPhantomConfig, got {type(cfg).__name__}")
    start = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: out_dir exists and is not a folder")
    for folder in ("images", "masks", "maps"):
        (out / folder).mkdir(parents=True, exist_ok=True)

    base = cfg.brain_config()
    sites = site_profiles(base)
    grid = subject_grid(base)
    subjects = [sample_subject(base, i, sites) for i in range(cfg.n)]
    rendered_all: list[RenderedContrastSubject] = []
    records: list[dict[str, Any]] = []
    for subject in tqdm(subjects, desc=f"phantoms {cfg.kind}", disable=not progress):
        rendered = render_contrast_subject(cfg, subject.index, subject, grid)
        paths = write_contrast_subject(out, cfg, subject.id, rendered, grid.affine)
        attributes = subject.attributes()
        attributes.pop("marker", None)  # contrast phantoms carry no marker
        records.append(
            {
                "id": subject.id,
                **paths,
                "time_points": list(cfg.target_times),
                "label": rendered.label,
                "attributes": attributes,
            }
        )
        rendered_all.append(rendered)
    labels = [r.label for r in rendered_all]
    splits = assign_splits(base, labels)

    subject_rows: list[dict[str, Any]] = []
    lesion_table: list[dict[str, Any]] = []
    for rendered, split in zip(rendered_all, splits, strict=True):
        rendered.factors["split"] = split
        subject_rows.append(rendered.factors)
        lesion_table.extend(lesion_rows(cfg, rendered, split))
    description = (
        f"medglass synthetic {cfg.kind} contrast phantom cohort: n={cfg.n}, seed={cfg.seed}, "
        f"size={cfg.size}, time_points={list(cfg.target_times)}, enhancing_fraction={cfg.enhancing_fraction}"
    )
    write_datalist(out / "datalist.json", cfg, records, splits, description)  # type: ignore[arg-type]
    write_lesion_factors(out / "factors.csv", cfg, lesion_table)
    write_factors_csv(out / "subjects.csv", subject_rows)
    write_phantom_config(out / "phantom_config.json", cfg)  # type: ignore[arg-type]

    label_arr, split_arr = np.array(labels), np.array(splits)
    all_lesions = [les for r in rendered_all for les in r.lesions]
    seconds = time.perf_counter() - start
    return {
        "kind": cfg.kind,
        "n": cfg.n,
        "out_dir": str(out),
        "counts": {name: int((split_arr == name).sum()) for name in SPLITS},
        "label_counts": {"0": int((label_arr == 0).sum()), "1": int((label_arr == 1).sum())},
        "positive_fraction": float(label_arr.mean()),
        "positive_fraction_per_split": {
            name: float(label_arr[split_arr == name].mean()) if (split_arr == name).any() else math.nan
            for name in SPLITS
        },
        "lesions": {
            "total": len(all_lesions),
            "enhancing": sum(les.enhancing for les in all_lesions),
            "kinetics": {k: sum(les.kinetics == k for les in all_lesions) for k in ("none", *KINETICS)},
        },
        "time_points": list(cfg.target_times),
        "sites": [
            {
                "site": s.name,
                "scanner": s.scanner,
                "noise_sigma": s.noise_sigma,
                "bias_strength": s.bias_strength,
                "gamma": s.gamma,
                "intensity_scale": s.intensity_scale,
            }
            for s in sites
        ],
        "seconds": seconds,
        "images_per_second": cfg.n / seconds if seconds > 0 else math.inf,
    }
