"""Synthetic brain cohorts with known generative factors, written as real files.

`generate_cohort` renders ``cfg.n`` subjects — MNI152 anatomy warped per subject (sex sets the
head size, age enlarges the ventricles), white-matter lesions in each positive (one, or
``cfg.lesions_per_image`` separated lesions), a site's intensity/bias/noise signature, and a
spurious corner marker that agrees with the label with probability ``cfg.marker_correlation`` —
and writes images, lesion instance masks, a MONAI datalist with per-lesion boxes, a table of every
generative factor, a table of every lesion and the config (layout and record keys in
`phantoms.cohort_writer`).

Example:
    >>> from phantoms import PhantomConfig, generate_cohort
    >>> summary = generate_cohort(PhantomConfig(n=20, marker_correlation=0.9), "runs/phantom", progress=False)
    >>> sum(summary["counts"].values()), sorted(summary["counts"])
    (20, ['test', 'training', 'validation'])
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .anatomy import TemplateGrid, sample_anatomy, template_grid, warp_anatomy
from .cohort_writer import (
    write_datalist,
    write_factors_csv,
    write_lesions_csv,
    write_phantom_config,
    write_reference_files,
    write_subject_files,
)
from .lesions import Lesion, add_lesion, box_columns, instance_mask, mask_box, sample_lesions
from .phantom_config import SPLITS, PhantomConfig
from .site_effects import apply_acquisition, apply_marker, sample_acquisition, site_profiles
from .subjects import Subject, assign_splits, sample_subject, subject_rng

__all__ = [
    "LESION_BOX_LABEL",
    "PhantomConfig",
    "RenderedSubject",
    "generate_cohort",
    "render_subject",
    "subject_grid",
]

LESION_BOX_LABEL = 0
"""The class of every lesion box in a record's ``box_labels`` (one class: "lesion")."""


@dataclass(frozen=True)
class RenderedSubject:
    """One rendered subject: image and instance mask ``[x, y(, z)]``, its boxes, factor row and lesions.

    ``boxes[i]`` is the box of instance ``i + 1`` of ``mask`` and ``lesion_rows[i]`` its row of
    ``lesions.csv``; ``lesions_drawn`` is the drawn count (more than ``len(boxes)`` when the image
    was too crowded to place them all).
    """

    image: np.ndarray
    mask: np.ndarray
    boxes: list[list[int]]
    factors: dict[str, Any]
    clean: np.ndarray | None = None
    body: np.ndarray | None = None
    lesion_rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    lesions_drawn: int = 0


def subject_grid(cfg: PhantomConfig) -> TemplateGrid:
    """The resampled template shared by every subject of ``cfg``."""
    slab_half = int(math.ceil(cfg.slice_offset_max * cfg.scale)) + 2 if cfg.kind == "brain2d" else 0
    return template_grid(cfg.size, cfg.kind, slab_half)


def render_subject(cfg: PhantomConfig, subject: Subject, grid: TemplateGrid) -> RenderedSubject:
    """Render one subject's image, lesion instance mask, boxes, generative factors and lesion rows.

    The factor row's single-lesion columns (``lesion_x``, ``lesion_radius``, ``lesion_area_px`` ...)
    describe the FIRST lesion (instance 1), as in single-lesion cohorts; ``lesion_count`` counts
    them all and ``lesion_rows`` describes each.

    Args:
        cfg: the cohort config.
        subject: the subject's non-image factors (from `phantoms.subjects.sample_subject`).
        grid: ``subject_grid(cfg)``.

    Returns:
        The `RenderedSubject`; ``factors`` lacks only the split.
    """
    nd = cfg.spatial_dims
    axes = "xyz"[:nd]
    anatomy = sample_anatomy(subject_rng(cfg.seed, subject.index, "anatomy"), cfg, subject.sex, subject.age)
    t1, wm, deform = warp_anatomy(grid, anatomy, cfg)
    lesions: list[Lesion] = []
    drawn = 0
    if subject.label:
        lesions, drawn = sample_lesions(subject_rng(cfg.seed, subject.index, "lesion"), wm, cfg)
        for placed in lesions:
            add_lesion(t1, placed, cfg.lesion_edge_softness * cfg.scale)
    mask = instance_mask(t1.shape, lesions)
    boxes = [mask_box(mask == instance) for instance in range(1, len(lesions) + 1)]
    size_key = "area_px" if nd == 2 else "volume_vox"
    lesion_rows = [
        {
            "id": subject.id,
            "instance": instance,
            **{a: float(c) for a, c in zip(axes, placed.centre, strict=True)},
            "radius": placed.radius,
            "contrast": placed.contrast,
            size_key: int((mask == instance).sum()),
            **{f"box_{name}": v for name, v in zip(box_columns(nd), box, strict=True)},
        }
        for instance, (placed, box) in enumerate(zip(lesions, boxes, strict=True), start=1)
    ]
    lesion = lesions[0] if lesions else None
    acq_rng = subject_rng(cfg.seed, subject.index, "acquisition")
    acquisition = sample_acquisition(acq_rng, subject.site, cfg)
    image = apply_acquisition(t1, acquisition, acq_rng, cfg)
    clean_params = dataclasses.replace(acquisition, bias_strength=0.0, noise_sigma=0.0)
    clean = apply_acquisition(t1, clean_params, np.random.default_rng(0), cfg)
    body = (t1 > 0.05 * float(t1.max())).astype(np.uint8)
    if subject.marker:
        apply_marker(image, cfg)
        apply_marker(clean, cfg)

    row: dict[str, Any] = {
        "id": subject.id,
        "split": "",
        "label": subject.label,
        "sex": subject.sex,
        "age": subject.age,
        "age_band": subject.age_band,
        "site": subject.site.name,
        "scanner": subject.site.scanner,
        "marker": subject.marker,
        "random_group": subject.random_group,
        "head_scale": anatomy.head_scale,
        "ventricle_strength": anatomy.ventricle_strength,
        "ventricle_scale": anatomy.ventricle_scale,
    }
    if nd == 2:
        row["rotation_deg"] = anatomy.rotation_deg[0]
    else:
        row.update({f"rotation_{a}_deg": v for a, v in zip(axes, anatomy.rotation_deg, strict=True)})
    row.update({f"translation_{a}_px": v for a, v in zip(axes, anatomy.translation_px, strict=True)})
    row.update(deform)
    if nd == 2:
        row["slice_offset_px"] = anatomy.slice_offset_px
    row["lesion_count"] = len(lesions)
    centre = lesion.centre if lesion else (math.nan,) * nd
    row.update({f"lesion_{a}": float(c) for a, c in zip(axes, centre, strict=True)})
    row["lesion_radius"] = lesion.radius if lesion else math.nan
    row[f"lesion_{size_key}"] = int((mask == 1).sum())
    row["lesion_contrast"] = lesion.contrast if lesion else math.nan
    row.update(
        {
            "bias_field_strength": acquisition.bias_strength,
            "noise_sigma": acquisition.noise_sigma,
            "contrast_gamma": acquisition.gamma,
            "intensity_scale": acquisition.intensity_scale,
        }
    )
    return RenderedSubject(
        image=image,
        mask=mask,
        boxes=boxes,
        factors=row,
        clean=clean,
        body=body,
        lesion_rows=lesion_rows,
        lesions_drawn=drawn,
    )


def generate_cohort(
    config: PhantomConfig, out_dir: str | Path, progress: bool = True, references: bool = False
) -> dict[str, Any]:
    """Generate a phantom cohort and write it into ``out_dir``.

    Existing files of the same names are overwritten; nothing else in ``out_dir`` is touched.

    Args:
        config: the cohort config.
        out_dir: destination folder (created if missing).
        progress: show a tqdm progress bar.
        references: also write each subject's clean image (no noise, no bias field) to ``clean/``
            and its body mask to ``body/``, named in the records as ``clean`` and ``body`` (what
            ``bench/bench_generative_core.py`` scores reconstructions and counterfactuals with).

    Returns:
        Summary: ``kind``, ``n``, ``out_dir``, ``counts`` (per split), ``label_counts``,
        ``positive_fraction`` (overall and ``per_split``), ``marker_agreement`` (fraction of
        images whose marker equals the label), ``lesion_count_histogram`` (images per lesion
        count), ``lesions_not_placed`` (drawn lesions that found no free place), ``sites`` (site
        parameters), ``seconds`` and ``images_per_second``.

    Raises:
        TypeError: ``config`` is not a `PhantomConfig`.
        NotADirectoryError: ``out_dir`` exists and is not a folder.
    """
    from tqdm import tqdm

    if not isinstance(config, PhantomConfig):
        raise TypeError(f"config must be a PhantomConfig, got {type(config).__name__}")
    start = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: out_dir exists and is not a folder")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)

    cfg = config
    sites = site_profiles(cfg)
    subjects = [sample_subject(cfg, i, sites) for i in range(cfg.n)]
    splits = assign_splits(cfg, [s.label for s in subjects])
    grid = subject_grid(cfg)
    records: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    lesion_rows: list[dict[str, Any]] = []
    lesions_not_placed = 0
    for subject, split in zip(
        tqdm(subjects, desc=f"phantoms {cfg.kind}", disable=not progress), splits, strict=True
    ):
        rendered = render_subject(cfg, subject, grid)
        image_rel, mask_rel = write_subject_files(
            out, cfg, subject, rendered.image, rendered.mask, grid.affine
        )
        record = {
            "id": subject.id,
            "image": image_rel,
            "label": subject.label,
            "mask": mask_rel,
            "boxes": rendered.boxes,
            "box_labels": [LESION_BOX_LABEL] * len(rendered.boxes),
            "attributes": subject.attributes(),
        }
        if references:
            record["clean"], record["body"] = write_reference_files(
                out, cfg, subject.id, rendered.clean, rendered.body, grid.affine
            )
        records.append(record)
        rendered.factors["split"] = split
        rows.append(rendered.factors)
        lesion_rows.extend(rendered.lesion_rows)
        lesions_not_placed += rendered.lesions_drawn - len(rendered.boxes)

    description = (
        f"medglass synthetic {cfg.kind} phantom cohort: n={cfg.n}, seed={cfg.seed}, size={cfg.size}, "
        f"lesion_prevalence={cfg.lesion_prevalence}, marker_correlation={cfg.marker_correlation}"
    )
    write_datalist(out / "datalist.json", cfg, records, splits, description)
    write_factors_csv(out / "factors.csv", rows)
    write_lesions_csv(out / "lesions.csv", lesion_rows, cfg.spatial_dims)
    write_phantom_config(out / "phantom_config.json", cfg)

    labels = np.array([s.label for s in subjects])
    lesion_counts = np.array([row["lesion_count"] for row in rows])
    markers = np.array([s.marker for s in subjects])
    split_arr = np.array(splits)
    seconds = time.perf_counter() - start
    return {
        "kind": cfg.kind,
        "n": cfg.n,
        "out_dir": str(out),
        "counts": {name: int((split_arr == name).sum()) for name in SPLITS},
        "label_counts": {"0": int((labels == 0).sum()), "1": int((labels == 1).sum())},
        "positive_fraction": float(labels.mean()),
        "positive_fraction_per_split": {
            name: float(labels[split_arr == name].mean()) if (split_arr == name).any() else math.nan
            for name in SPLITS
        },
        "marker_agreement": float((markers == labels).mean()),
        "lesion_count_histogram": {str(k): int((lesion_counts == k).sum()) for k in np.unique(lesion_counts)},
        "lesions_not_placed": lesions_not_placed,
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
