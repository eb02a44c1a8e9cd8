"""Lesion masks from a trained segmenter, written as files a hospital tool opens.

:func:`infer_segmentation` reads each input (PNG, NIfTI, a DICOM file or series folder), slides
the run's patch-sized window over it (the same ``SlidingWindowInferer`` as evaluation) and
writes, per input, a NIfTI mask with the input's affine and shape
(:func:`transforms.dense_outputs.write_nifti_mask`), for DICOM input a DICOM SEG referencing the
source series (:func:`transforms.dense_outputs.write_dicom_seg`), and an overlay PNG; a
``predictions.json`` (written last, atomically) lists them.

Example:
    >>> result = infer_segmentation("runs/seg", ["scan.nii.gz"], "runs/seg/masks")  # doctest: +SKIP
    >>> result["cases"][0]["nifti_mask"]  # doctest: +SKIP
    'runs/seg/masks/scan_mask.nii.gz'
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from evaluation.html_report import write_text_atomic
from pipelines.segmentation_data import load_segmentation_records, segmentation_transforms
from pipelines.segmentation_engines import build_inferer, load_segmentation_run
from pipelines.segmentation_figures import overlay_figure
from pipelines.user_errors import user_error
from transforms.image_loading import detect_format
from transforms.keys import Keys

__all__ = ["infer_segmentation", "case_name"]


def case_name(source: str | PathLike | Sequence[str | PathLike]) -> str:
    """A file-name-safe case name for an input (file name without its image suffixes, or the folder's name).

    Example:
        >>> case_name("/data/scan_01.nii.gz"), case_name("/data/series 7/")
        ('scan_01', 'series_7')
    """
    if not isinstance(source, (str, PathLike)):
        source = list(source)[0]
    name = Path(source).name
    for suffix in (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".mgz"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "case"


def infer_segmentation(
    run: str | PathLike,
    inputs: Sequence[str | PathLike] | str | PathLike,
    out_dir: str | PathLike,
    section: str | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Predict lesion masks for images and write them (NIfTI, DICOM SEG for DICOM input, overlay PNG).

    Args:
        run: the ``medglass segment train`` run folder.
        inputs: image files or DICOM series folders, or one datalist JSON (with ``section``).
        out_dir: output folder.
        section: the datalist section to read when ``inputs`` is a datalist (default ``test``).
        device: where to run.

    Returns:
        ``{"run", "cases": [{"id", "source", "nifti_mask", "overlay", "lesion_voxels"
        (, "dicom_seg")}]}``, also written to ``out_dir/predictions.json``.

    Raises:
        ValueError: an unusable run, an unreadable input, or an input the model cannot take (a
            3D image given to a 2D model, and the reverse), naming the file.
    """
    network, config = load_segmentation_run(run, device)
    out = Path(out_dir)
    if isinstance(inputs, (str, PathLike)) and str(inputs).endswith(".json"):
        sources: list[Any] = [r[Keys.IMAGE] for r in load_segmentation_records(inputs, section or "test")]
    else:
        sources = [inputs] if isinstance(inputs, (str, PathLike)) else list(inputs)
    if not sources:
        raise ValueError("inputs must name at least one image, got none")
    chain = segmentation_transforms(
        config.patch_size, training=False, intensity_range=config.intensity_range, with_mask=False
    )
    inferer = build_inferer(config)
    cases = []
    names: set[str] = set()
    for source in sources:
        try:
            image = chain({Keys.IMAGE: source})[Keys.IMAGE]
        except Exception as err:
            raise user_error(err) from err
        with torch.no_grad():
            logits = inferer(image.as_tensor()[None].float().to(device), network)
        mask = logits.argmax(1)[0].to(torch.uint8).cpu()
        name = case_name(source)
        while name in names:
            name += "_"
        names.add(name)
        cases.append(_write_case(out, name, source, image, mask))
    result = {"run": str(run), "cases": cases}
    write_text_atomic(out / "predictions.json", json.dumps(result, indent=1))
    return result


def _write_case(out: Path, name: str, source: Any, image: Any, mask: torch.Tensor) -> dict[str, Any]:
    """Write one case's files; returns its entry of ``predictions.json``."""
    from transforms.dense_outputs import write_dicom_seg, write_nifti_mask

    case: dict[str, Any] = {"id": name, "source": str(source), "lesion_voxels": int(mask.sum())}
    nifti = write_nifti_mask(
        mask.numpy(), image.affine, out / f"{name}_mask.nii.gz", image_shape=tuple(image.shape[1:])
    )
    case["nifti_mask"] = str(nifti)
    if detect_format(source) in ("dicom", "dicom_series"):
        from transforms.dicom_sources import load_dicom_with_sources

        _, _, datasets = load_dicom_with_sources(source)
        case["dicom_seg"] = str(write_dicom_seg(mask.numpy(), datasets, out / f"{name}_seg.dcm"))
    case["overlay"] = str(overlay_figure(out / f"{name}_overlay.png", image[0], None, mask, name))
    return case
