"""A cohort with a spurious shortcut in training and a shifted test set: the ground truth for bias audits.

The main cohort is generated with marker agreement ``train_correlation`` (0.9: the corner
marker predicts the label in training, validation and the in-distribution test set); a second,
independent cohort (another seed) with agreement ``shifted_correlation`` (0.5: independent, 0.1:
reversed) becomes the datalist section ``test_shifted``. A model that learnt the shortcut scores
well on ``test`` and badly on ``test_shifted``, which is what bias mitigation must repair. Every
record also carries the null attribute ``random_group`` (drawn independently of image and label),
which an audit must *not* flag. With ``n_calibration > 0`` a third independent cohort with the
training agreement becomes the section ``calibration``: held-out images with attribute labels to
fit an eraser on (the validation split alone is small, and an eraser fitted on few images leaves
a residual a probe can read; ``bench/bench_bias.py --n-calibration`` sets the size).

Layout written to ``out_dir``: ``main/`` and ``shifted/`` (each a complete phantom cohort),
``datalist.json`` (``training``/``validation``/``test`` from ``main``, ``test_shifted`` from
``shifted``, ``calibration`` from ``calibration/`` when asked; paths relative to ``out_dir``;
shifted ids prefixed with ``shifted-``, calibration ids with ``calibration-``) and
``factors.csv`` (every cohort's factors, same id prefixes).

Example:
    >>> summary = generate_shortcut_cohort("runs/shortcut", n=600, seed=0)  # doctest: +SKIP
    >>> summary["marker_agreement"]  # doctest: +SKIP
    {'main': 0.9, 'shifted': 0.1}
"""

from __future__ import annotations

import csv
import json
from os import PathLike
from pathlib import Path
from typing import Any

from .brain_cohort import generate_cohort
from .phantom_config import PhantomConfig

__all__ = [
    "generate_shortcut_cohort",
    "SHIFTED_SECTION",
    "SHIFTED_PREFIX",
    "CALIBRATION_SECTION",
    "CALIBRATION_PREFIX",
]

SHIFTED_SECTION = "test_shifted"
SHIFTED_PREFIX = "shifted-"
CALIBRATION_SECTION = "calibration"
CALIBRATION_PREFIX = "calibration-"
_SHIFTED_SEED_OFFSET = 7919  # a different seed stream for the shifted cohort's subjects
_CALIBRATION_SEED_OFFSET = 15485863  # and another for the calibration cohort's


def _prefix_paths(record: dict[str, Any], folder: str, id_prefix: str = "") -> dict[str, Any]:
    out = dict(record)
    for key in ("image", "mask"):
        if out.get(key):
            out[key] = f"{folder}/{out[key]}"
    if id_prefix:
        out["id"] = id_prefix + str(out["id"])
    return out


def generate_shortcut_cohort(
    out_dir: str | PathLike,
    n: int = 1200,
    seed: int = 0,
    train_correlation: float = 0.9,
    shifted_correlation: float = 0.1,
    n_shifted: int | None = None,
    n_calibration: int = 0,
    kind: str = "brain2d",
    size: int = 64,
    image_format: str | None = None,
    progress: bool = True,
    **phantom: Any,
) -> dict[str, Any]:
    """Generate the main (shortcut) cohort, the shifted test cohort and the combined datalist.

    Args:
        out_dir: destination folder.
        n: images of the main cohort (split 70/10/20 into training/validation/test).
        seed: seed of the main cohort (the shifted cohort uses a derived one).
        train_correlation: marker agreement P(marker == label) of the main cohort.
        shifted_correlation: marker agreement of the shifted test cohort.
        n_shifted: images of the shifted test cohort (default: as many as the main ``test``).
        n_calibration: images of a held-out calibration cohort with agreement
            ``train_correlation`` (section ``calibration``; 0, the default: none).
        kind: phantom kind (``brain2d`` or ``brain3d``).
        size: image size.
        image_format: file format (default: the kind's default).
        progress: show progress bars.
        **phantom: further :class:`PhantomConfig` fields for both cohorts (e.g.
            ``lesion_contrast_range=(0.08, 0.25)`` for easier lesions).

    Returns:
        ``{"datalist": path, "counts": {section: n}, "marker_agreement": {"main": .., "shifted": ..}}``.

    Raises:
        ValueError: an argument out of range (from :class:`PhantomConfig`, naming it), or a
            negative ``n_calibration``.
    """
    if isinstance(n_calibration, bool) or not isinstance(n_calibration, int) or n_calibration < 0:
        raise ValueError(f"n_calibration: expected an integer >= 0, got {n_calibration!r}")
    out = Path(out_dir)
    fixed = {"kind", "n", "seed", "size", "marker_correlation", "split_fractions", "image_format"}
    clash = sorted(fixed & set(phantom))
    if clash:
        raise ValueError(f"phantom fields {clash} are set by generate_shortcut_cohort's own arguments")
    extra = {"image_format": image_format} if image_format is not None else {}
    extra.update(phantom)
    main_cfg = PhantomConfig(
        kind=kind, n=n, seed=seed, size=size, marker_correlation=train_correlation, **extra
    )
    main = generate_cohort(main_cfg, out / "main", progress=progress)
    shifted_n = n_shifted if n_shifted is not None else main["counts"]["test"]

    def held_out(
        folder: str, count: int, seed_offset: int, agreement: float
    ) -> tuple[PhantomConfig, dict, list]:
        """An independent cohort that is all test split: its config, summary and records."""
        cfg = PhantomConfig(
            kind=kind,
            n=count,
            seed=seed + seed_offset,
            size=size,
            marker_correlation=agreement,
            split_fractions=(0.0, 0.0, 1.0),
            **extra,
        )
        summary = generate_cohort(cfg, out / folder, progress=progress)
        return cfg, summary, json.loads((out / folder / "datalist.json").read_text())["test"]

    shifted_cfg, shifted, shifted_records = held_out(
        "shifted", shifted_n, _SHIFTED_SEED_OFFSET, shifted_correlation
    )
    main_list = json.loads((out / "main" / "datalist.json").read_text())
    data: dict[str, Any] = {
        section: [_prefix_paths(r, "main") for r in main_list[section]]
        for section in ("training", "validation", "test")
    }
    data[SHIFTED_SECTION] = [_prefix_paths(r, "shifted", SHIFTED_PREFIX) for r in shifted_records]
    cohorts = [("main", ""), ("shifted", SHIFTED_PREFIX)]
    calibration_cfg = None
    if n_calibration:
        calibration_cfg, _, records = held_out(
            "calibration", n_calibration, _CALIBRATION_SEED_OFFSET, train_correlation
        )
        data[CALIBRATION_SECTION] = [_prefix_paths(r, "calibration", CALIBRATION_PREFIX) for r in records]
        cohorts.append(("calibration", CALIBRATION_PREFIX))
    data["description"] = (
        f"medglass shortcut cohort: {kind} n={n} seed={seed} marker agreement {train_correlation} "
        f"(training/validation/test), shifted test n={shifted_n} with agreement {shifted_correlation}"
    )
    data["phantom_config"] = main_cfg.to_dict()
    data["shifted_phantom_config"] = shifted_cfg.to_dict()
    if calibration_cfg is not None:
        data["description"] += f", calibration n={n_calibration} with agreement {train_correlation}"
        data["calibration_phantom_config"] = calibration_cfg.to_dict()
    datalist = out / "datalist.json"
    datalist.write_text(json.dumps(data, indent=1) + "\n")

    with (out / "factors.csv").open("w", newline="") as fh:
        writer = None
        for folder, prefix in cohorts:
            with (out / folder / "factors.csv").open(newline="") as src:
                for row in csv.DictReader(src):
                    row["id"] = prefix + row["id"]
                    if writer is None:
                        writer = csv.DictWriter(fh, fieldnames=list(row), lineterminator="\n")
                        writer.writeheader()
                    writer.writerow(row)
    return {
        "datalist": datalist,
        "counts": {
            name: len(data[name])
            for name in ("training", "validation", "test", SHIFTED_SECTION, CALIBRATION_SECTION)
            if name in data
        },
        "marker_agreement": {"main": main["marker_agreement"], "shifted": shifted["marker_agreement"]},
    }
