"""Apply a trained source → target translator to one image or a paired datalist, with panels and a report.

:func:`synthesize` loads ``best.pt`` and ``config.json`` from a run folder of
:func:`pipelines.synthesis_training.train_synthesis` and, for every case, writes

* ``panels/<id>.png``: source | synthetic | target | predicted enhancement (synthetic − source)
  | true enhancement | |error| (the last three only when the target is known), at the model's
  resolution and in the scaled units of training;
* ``<id>_synthetic.nii.gz``: the synthetic image back on the source's voxel grid (MONAI
  ``Invertd`` undoes the resize and padding) and in the source's intensity units (the shared
  linear scale undone); for a NIfTI source it carries the source file's own affine, for other
  formats the affine MONAI's reader reports (identity for PNG);

and, when targets are known, ``metrics.json`` (per case and mean, whole image vs in-lesion, plus
the same numbers for the source itself as a "no change" baseline) and ``report.html``
(:class:`evaluation.html_report.HtmlReport`).

Example:
    >>> summary = synthesize("runs/synth", "pairs/datalist.json", "runs/synth/inference")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
from os import PathLike
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd

from evaluation.html_report import HtmlReport, write_text_atomic
from evaluation.synthesis_figures import synthesis_panel
from evaluation.synthesis_metrics import synthesis_metrics
from networks.translation import ResidualTranslator, build_generator
from pipelines.synthesis_config import SynthesisConfig
from pipelines.synthesis_data import PairKeys, load_paired_datalist, paired_transforms
from pipelines.synthesis_predictions import json_numbers, mean_metrics, plain_tensor
from pipelines.synthesis_training import BEST_CHECKPOINT
from pipelines.user_errors import user_error
from transforms.image_loading import NIFTI_SUFFIXES, file_suffix

__all__ = ["synthesize", "evaluate_synthesis", "load_translator", "SECTIONS"]

SECTIONS = ("test", "validation", "training")
"""Sections a datalist is read from when none is named: the first one present."""

_LESION_KEYS = ("lesion_ssim", "lesion_psnr", "lesion_mae")
_WHOLE_KEYS = ("ssim", "psnr", "mae")
_MAX_REPORT_FIGURES = 12


def load_translator(
    model_dir: str | PathLike, device: torch.device | None = None
) -> tuple[ResidualTranslator, SynthesisConfig]:
    """The best generator of a synthesis run folder and the run's config.

    Args:
        model_dir: folder holding ``config.json`` and ``best.pt``.
        device: where to put the network (default CPU).

    Returns:
        ``(generator in eval mode, config)``.

    Raises:
        ValueError: a missing or unreadable ``config.json``/``best.pt``, naming the file.
    """
    folder = Path(model_dir)
    config_path, weights = folder / "config.json", folder / BEST_CHECKPOINT
    for path in (config_path, weights):
        if not path.is_file():
            raise ValueError(f"{path}: file not found (is {folder} a synthesis training run folder?)")
    try:
        config = SynthesisConfig.from_json(json.loads(config_path.read_text()), base=folder)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{config_path}: not a readable synthesis config ({err})") from err
    generator = build_generator(config.spatial_dims, channels=config.channels)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        generator.load_state_dict(state["generator"])
    except Exception as err:
        raise ValueError(f"{weights}: not a synthesis generator checkpoint ({err})") from err
    return generator.to(device or torch.device("cpu")).eval(), config


def _records(image_or_datalist: str | PathLike, section: str | None) -> list[dict[str, Any]]:
    path = Path(image_or_datalist)
    if path.suffix.lower() == ".json":
        if section is not None:
            return load_paired_datalist(path, section, need_target=False)
        for name in SECTIONS:
            records = load_paired_datalist(path, name, required=False, need_target=False)
            if records:
                return records
        raise ValueError(f"datalist {path}: none of the sections {', '.join(SECTIONS)}")
    if not path.exists():
        raise ValueError(f"{path}: file not found")
    stem = path.name[: -len(file_suffix(path))] if file_suffix(path) else path.name
    return [{PairKeys.ID: stem, PairKeys.SOURCE: str(path)}]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "case"


def _write_synthetic(
    data: dict, pred: torch.Tensor, chain: Any, source_path: str, out: Path, dicom_dir: Path | None = None
) -> Path:
    """The synthetic image on the source's grid and in its units, as NIfTI (and DICOM for a DICOM source).

    A DICOM source (its files are in the loaded image's ``source_files``) also gets a synthetic
    DICOM series in ``dicom_dir`` on its geometry (:func:`transforms.synthetic_dicom.write_synthetic_series`).
    """
    item = dict(data)
    item[PairKeys.PRED] = MetaTensor(pred, meta=dict(data[PairKeys.SOURCE].meta))
    inverted = Invertd(PairKeys.PRED, transform=chain, orig_keys=PairKeys.SOURCE, nearest_interp=False)(item)[
        PairKeys.PRED
    ]
    lo, hi = (float(v) for v in data[PairKeys.SOURCE_SCALE])
    array = (np.asarray(inverted.detach().cpu().numpy()[0], dtype=np.float64) * (hi - lo) + lo).astype(
        np.float32
    )
    if file_suffix(source_path) in NIFTI_SUFFIXES:
        affine = nibabel.load(source_path).affine
    else:
        affine = np.asarray(data[PairKeys.SOURCE].affine, dtype=np.float64)
    nibabel.save(nibabel.Nifti1Image(array, affine), str(out))
    source_files = data[PairKeys.SOURCE].meta.get("source_files")
    if dicom_dir is not None and source_files:
        from transforms.synthetic_dicom import write_synthetic_series

        write_synthetic_series(
            list(source_files),
            array,
            dicom_dir,
            description="predicted by a medglass synthesis model",
        )
    return out


def synthesize(
    model_dir: str | PathLike,
    image_or_datalist: str | PathLike,
    out_dir: str | PathLike,
    section: str | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Synthesise the target of one image or of every record of a paired datalist section.

    Args:
        model_dir: a synthesis training run folder (``config.json``, ``best.pt``).
        image_or_datalist: a source image file, or a datalist JSON (``.json``) with ``source``
            (and ``target``, ``mask``) records. A DICOM source also gets a synthetic DICOM
            series (``<id>_synthetic_dicom/``) on its geometry, marked DERIVED/SYNTHETIC.
        out_dir: output folder.
        section: datalist section; ``None``: the first of :data:`SECTIONS` present.
        device: ``"cpu"`` or ``"cuda"``.

    Returns:
        ``{"cases": [{"id", "panel", "synthetic", "synthetic_dicom"?, "metrics"?}], "metrics": {...} or None,
        "report": path or None}``; ``metrics`` holds the mean ``model`` and ``source_baseline``
        numbers when targets are known.

    Raises:
        ValueError: an unusable run folder, datalist or image (naming the file), or a pair whose
            source and target differ in shape or affine (naming both files).
    """
    generator, config = load_translator(model_dir, torch.device(device))
    records = _records(image_or_datalist, section)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chain = paired_transforms(config.spatial_size)
    cases: list[dict[str, Any]] = []
    model_rows: list[dict[str, float]] = []
    baseline_rows: list[dict[str, float]] = []
    used: set[str] = set()
    for record in records:
        try:
            data = chain(dict(record))
        except Exception as err:
            cause = user_error(err)
            raise (cause if isinstance(cause, ValueError) else err) from err
        name = _safe_name(str(record[PairKeys.ID]))
        while name in used:
            name += "_"
        used.add(name)
        source = data[PairKeys.SOURCE]
        with torch.no_grad():
            pred = generator(plain_tensor(source)[None].to(device))[0].cpu()
        target = data.get(PairKeys.TARGET)
        mask = data[PairKeys.MASK] if float(data[PairKeys.HAS_MASK]) > 0 else None
        plain = [None if a is None else plain_tensor(a).cpu() for a in (source, target, mask)]
        panel = synthesis_panel(
            out / "panels" / f"{name}.png", plain[0], pred, plain[1], plain[2], title=name
        )
        dicom_dir = out / f"{name}_synthetic_dicom"
        nifti = _write_synthetic(
            data, pred, chain, str(record[PairKeys.SOURCE]), out / f"{name}_synthetic.nii.gz", dicom_dir
        )
        case: dict[str, Any] = {"id": name, "panel": str(panel), "synthetic": str(nifti)}
        if dicom_dir.is_dir():
            case["synthetic_dicom"] = str(dicom_dir)
        if target is not None:
            threshold = config.enhancement_threshold
            case["metrics"] = synthesis_metrics(plain[0], pred, plain[1], plain[2], threshold=threshold)
            case["source_baseline"] = synthesis_metrics(
                plain[0], plain[0], plain[1], plain[2], threshold=threshold
            )
            model_rows.append(case["metrics"])
            baseline_rows.append(case["source_baseline"])
        cases.append(case)
    result: dict[str, Any] = {"cases": cases, "metrics": None, "report": None}
    if model_rows:
        summary = {"model": mean_metrics(model_rows), "source_baseline": mean_metrics(baseline_rows)}
        result["metrics"] = summary
        stored = {
            "summary": {k: json_numbers(v) for k, v in summary.items()},
            "cases": [
                {
                    "id": c["id"],
                    "metrics": json_numbers(c["metrics"]),
                    "source_baseline": json_numbers(c["source_baseline"]),
                }
                for c in cases
                if "metrics" in c
            ],
        }
        write_text_atomic(out / "metrics.json", json.dumps(stored, indent=1))
        result["report"] = str(_report(out, summary, cases, len(model_rows)))
    return result


def _report(out: Path, summary: dict[str, dict[str, float]], cases: list[dict[str, Any]], n: int) -> Path:
    """``report.html``: summary sentence, whole-image vs in-lesion table, enhancement table, panels."""
    model, base = summary["model"], summary["source_baseline"]
    report = HtmlReport("Synthetic image quality")
    report.paragraph(
        f"{n} case(s) with a known target. Whole image: SSIM {model['ssim']:.3f} (source unchanged: "
        f"{base['ssim']:.3f}); in the lesion: MAE {model['lesion_mae']:.3f} (source unchanged: "
        f"{base['lesion_mae']:.3f}). Intensities are in the scaled units of training (the source's "
        "0.5th-99.5th percentiles mapped to 0-1)."
    )
    rows = []
    for label, stats in (("model", model), ("source unchanged (baseline)", base)):
        rows.append({"prediction": label, "region": "whole image", **{k: stats[k] for k in _WHOLE_KEYS}})
        rows.append(
            {
                "prediction": label,
                "region": "lesion",
                **{k: stats[name] for k, name in zip(_WHOLE_KEYS, _LESION_KEYS, strict=True)},
            }
        )
    report.table(rows, columns=("prediction", "region", "ssim", "psnr", "mae"), caption="Mean over cases")
    report.paragraph(
        "Lesion SSIM is computed on the lesion mask's bounding box grown by 3 pixels; lesion PSNR and "
        "MAE over the mask's pixels. Cases without a mask are left out of the lesion rows.",
        css_class="note",
    )
    report.table(
        [
            {
                "prediction": "model",
                "enhancement correlation": model["enhancement_correlation"],
                "enhancement Dice": model["enhancement_dice"],
            }
        ],
        caption="Predicted vs true enhancement (inside the body)",
    )
    report.heading("Cases")
    for case in cases[:_MAX_REPORT_FIGURES]:
        report.figure(case["panel"], caption=case["id"], root=out)
    if len(cases) > _MAX_REPORT_FIGURES:
        report.paragraph(f"{len(cases) - _MAX_REPORT_FIGURES} more panels in panels/.", css_class="note")
    return report.write(out / "report.html")


def evaluate_synthesis(
    model_dir: str | PathLike,
    datalist: str | PathLike,
    out_dir: str | PathLike,
    section: str = "test",
    device: str = "cpu",
) -> dict[str, float]:
    """Evaluate a translate run on a datalist section (the ``contrast_synthesis`` bundle's evaluate workflow).

    Args:
        model_dir: the training run folder.
        datalist: a paired datalist with targets.
        out_dir: where panels, synthetic images, ``metrics.json`` and ``report.html`` go.
        section: the datalist section.
        device: ``"cpu"`` or ``"cuda"``.

    Returns:
        Flat numbers: ``<section>_<metric>`` of the model and ``baseline_<metric>`` of the
        unchanged source (whole image and in-lesion rows apart, as :func:`synthesize` reports them).

    Raises:
        ValueError: the section has no targets, or whatever :func:`synthesize` refuses.
    """
    result = synthesize(model_dir, datalist, out_dir, section=section, device=device)
    if not result["metrics"]:
        raise ValueError(f"datalist {datalist}: section {section!r} has no target images to evaluate against")
    flat = {f"{section}_{k}": float(v) for k, v in result["metrics"]["model"].items()}
    flat.update({f"baseline_{k}": float(v) for k, v in result["metrics"]["source_baseline"].items()})
    return flat
