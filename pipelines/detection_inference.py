"""Evaluate and run a trained detector: metrics on a datalist section, boxes as JSON in world millimetres.

:func:`load_detector` rebuilds the detector of a ``medglass detect train`` run (``config.json``
and ``best.pt``, else ``last.pt``). :func:`evaluate_detection` scores a datalist section (mAP,
FROC, CPM: :mod:`evaluation.detection_metrics`) and writes ``metrics.json`` and figures.
:func:`infer_detection` runs the detector on images (one file, or a datalist section) and writes
one boxes JSON per image with :func:`transforms.dense_outputs.write_boxes_json`: the boxes are
mapped from the preprocessed grid back to the image as loaded (through both affines, the
preprocessed grid's padding clipped off), so they lie inside the volume's extent, and their world
(RAS mm) corners come from the image's own affine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.transforms.box_ops import apply_affine_to_boxes
from monai.data.box_utils import clip_boxes_to_image

from evaluation.html_report import write_text_atomic
from networks.detection import BOX_KEY, BOX_LABEL_KEY
from pipelines.detection_config import DetectionConfig
from pipelines.detection_data import ORIGINAL_AFFINE, ORIGINAL_SHAPE, index_to_index, load_detection_datalist
from pipelines.detection_figures import draw_boxes
from pipelines.detection_predictions import (
    IMAGE_AFFINE,
    build_detection_network,
    loader_for,
    make_detector,
    predict_detections,
    score_detections,
)
from pipelines.detection_training import BEST_CHECKPOINT, LAST_CHECKPOINT
from pipelines.synthesis_predictions import json_numbers
from pipelines.user_errors import user_error
from transforms.dense_outputs import write_boxes_json
from transforms.keys import Keys

__all__ = [
    "TrainedDetector",
    "load_detector",
    "evaluate_detection",
    "infer_detection",
    "boxes_on_original_grid",
]


@dataclass
class TrainedDetector:
    """A trained detector with its settings.

    Attributes:
        detector: the MONAI detector (eval mode).
        config: the run's settings.
        checkpoint: the weights file it was loaded from.
    """

    detector: RetinaNetDetector
    config: DetectionConfig
    checkpoint: Path


def load_detector(ref: str | PathLike, device: str | torch.device = "cpu") -> TrainedDetector:
    """Rebuild a trained detector from its run folder (or a checkpoint beside its ``config.json``).

    Args:
        ref: the ``medglass detect train`` output folder, or a ``best.pt``/``last.pt`` in it.
        device: where to put the network.

    Returns:
        The :class:`TrainedDetector`.

    Raises:
        ValueError: no such folder or checkpoint, no readable ``config.json``, or weights that do
            not fit the network the config describes.
    """
    path = Path(ref)
    if path.is_dir():
        checkpoint = next(
            (path / n for n in (BEST_CHECKPOINT, LAST_CHECKPOINT) if (path / n).is_file()), None
        )
        if checkpoint is None:
            raise ValueError(
                f"model {ref}: folder has no checkpoint (looked for {BEST_CHECKPOINT}, {LAST_CHECKPOINT})"
            )
    elif path.is_file():
        checkpoint = path
    else:
        raise ValueError(f"model {ref}: not an existing detection run folder or checkpoint")
    config_path = checkpoint.parent / "config.json"
    try:
        config = DetectionConfig.from_json(json.loads(config_path.read_text()), base=config_path.parent)
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f"model {ref}: {config_path} is not a readable detection config ({err})") from err
    network = build_detection_network(config)
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        network.load_state_dict(state["network"] if "network" in state else state)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        reason = " ".join(str(err).split())[:300]
        raise ValueError(
            f"model {ref}: {checkpoint} does not fit the network of its config.json ({reason})"
        ) from err
    network.to(torch.device(device))
    detector = make_detector(config, network)
    detector.eval()
    return TrainedDetector(detector=detector, config=config, checkpoint=checkpoint)


def boxes_on_original_grid(case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A predicted case's boxes mapped back to the image as loaded, clipped to its extent.

    Args:
        case: one item of :func:`~pipelines.detection_training.predict_detections`.

    Returns:
        ``(boxes, scores, labels)``: float64 ``(N, 2 * dims)`` boxes in the loaded image's index
        units (boxes lying wholly in the padding are dropped), their scores and labels.
    """
    boxes = case["pred_boxes"].double()
    shape = [int(s) for s in case[ORIGINAL_SHAPE]]
    keep = torch.ones(len(boxes), dtype=torch.bool)
    if len(boxes):
        matrix = index_to_index(case[IMAGE_AFFINE], case[ORIGINAL_AFFINE], len(shape))
        edges = apply_affine_to_boxes(boxes - 0.5, matrix) + 0.5  # edge convention: see detection_data
        boxes, keep = clip_boxes_to_image(edges, shape, remove_empty=True)
    return (
        boxes.numpy().astype(np.float64),
        case["pred_scores"][keep].numpy().astype(np.float64),
        case["pred_labels"][keep].numpy(),
    )


def evaluate_detection(
    model: str | PathLike,
    datalist: str | PathLike | None = None,
    out_dir: str | PathLike | None = None,
    section: str = "test",
    figures: int = 4,
) -> dict[str, float]:
    """Score a trained detector on a datalist section; write ``metrics.json`` and box figures.

    Args:
        model: the training run folder (or a checkpoint in it).
        datalist: a detection datalist (default: the run's own).
        out_dir: output folder (default ``<run>/evaluate_<section>``).
        section: the section scored.
        figures: images drawn with their true and predicted boxes.

    Returns:
        ``map_0.1``, ``map_0.1_0.5``, ``froc_<rate>``, ``cpm``, ``sensitivity``,
        ``fp_per_image`` and ``images``.

    Raises:
        ValueError: an unusable model or datalist (a missing or empty section, a box outside its
            image, an image of the wrong dimension), named with the file and the reason.
    """
    trained = load_detector(model)
    config = trained.config
    records = load_detection_datalist(config.datalist if datalist is None else datalist, section)
    device = next(trained.detector.network.parameters()).device
    try:
        cases = list(
            predict_detections(trained.detector, loader_for(config, records, training=False), device)
        )
    except Exception as err:
        raise user_error(err) from err
    metrics = score_detections(cases, config.iou_threshold)
    metrics["images"] = float(len(cases))
    out = trained.checkpoint.parent / f"evaluate_{section}" if out_dir is None else Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i, case in enumerate([c for c in cases if len(c[BOX_KEY])][:figures]):
        draw_boxes(
            out / "figures" / f"{i:02d}_{case[Keys.ID]}.png",
            case[Keys.IMAGE],
            case["pred_boxes"],
            case["pred_scores"],
            case[BOX_KEY],
            title=str(case[Keys.ID]),
        )
    write_text_atomic(out / "metrics.json", json.dumps(json_numbers(metrics), indent=1, sort_keys=True))
    return metrics


def _unboxed(name: str, image: str) -> dict[str, Any]:
    """An inference record: the image and no boxes (the transform chain expects the keys)."""
    return {
        Keys.ID: name,
        Keys.IMAGE: image,
        BOX_KEY: np.zeros((0, 0), np.float32),
        BOX_LABEL_KEY: np.zeros(0, np.int64),
    }


def infer_detection(
    model: str | PathLike,
    source: str | PathLike,
    out_dir: str | PathLike,
    section: str | None = None,
    figures: bool = True,
) -> list[Path]:
    """Detect lesions in one image or a datalist section; write one boxes JSON (world RAS mm) per image.

    Args:
        model: the training run folder (or a checkpoint in it).
        source: an image file (NIfTI, DICOM, PNG, ...) or a datalist JSON.
        out_dir: output folder: ``<id>_boxes.json`` (and ``<id>_boxes.png``) per image.
        section: the datalist section (default ``test``, else the first present).
        figures: also draw each image with its boxes.

    Returns:
        The JSON files written.

    Raises:
        ValueError: an unusable model, an unreadable image, or an image of another dimension
            than the model's (e.g. a 3D volume given to a 2D detector); nothing is written for it.
    """
    trained = load_detector(model)
    path = Path(source)
    if path.suffix.lower() == ".json":
        if section is None:
            data = json.loads(path.read_text())
            section = next((s for s in ("test", "validation", "training") if s in data), "test")
        records = [_unboxed(r[Keys.ID], r[Keys.IMAGE]) for r in load_detection_datalist(path, section)]
    else:
        if not path.exists():
            raise ValueError(f"{path}: image not found")
        records = [_unboxed(path.name.split(".")[0], str(path))]
    device = next(trained.detector.network.parameters()).device
    out = Path(out_dir)
    written = []
    try:
        loader = loader_for(trained.config, records, training=False)
        cases = list(predict_detections(trained.detector, loader, device))
    except Exception as err:
        raise user_error(err) from err
    for record, case in zip(records, cases, strict=True):
        boxes, scores, labels = boxes_on_original_grid(case)
        written.append(
            write_boxes_json(
                boxes,
                scores,
                case[ORIGINAL_AFFINE].numpy(),
                out / f"{case[Keys.ID]}_boxes.json",
                labels=labels,
                source=record[Keys.IMAGE],
                image_shape=[int(s) for s in case[ORIGINAL_SHAPE]],
            )
        )
        if figures:
            draw_boxes(
                out / f"{case[Keys.ID]}_boxes.png",
                case[Keys.IMAGE],
                case["pred_boxes"],
                case["pred_scores"],
                title=str(case[Keys.ID]),
            )
    return written
