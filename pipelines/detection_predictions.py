"""The detector a :class:`~pipelines.detection_config.DetectionConfig` describes, its data loaders, its predictions.

Shared by training (:mod:`pipelines.detection_training`), evaluation and inference
(:mod:`pipelines.detection_inference`) and ``bench/bench_detection.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.networks.retinanet_network import RetinaNet
from monai.data import CacheDataset, DataLoader
from monai.data.utils import no_collation

from evaluation.detection_metrics import detection_metrics
from networks.detection import BOX_KEY, BOX_LABEL_KEY, SCORE_KEY, build_detector, build_glassbox_retinanet
from pipelines.detection_config import DetectionConfig
from pipelines.detection_data import detection_transforms
from pipelines.synthesis_predictions import plain_tensor
from pipelines.user_errors import user_error
from transforms.keys import Keys

__all__ = [
    "IMAGE_AFFINE",
    "build_detection_network",
    "make_detector",
    "loader_for",
    "predict_detections",
    "score_detections",
]

IMAGE_AFFINE = "image_affine"
"""Key of the preprocessed image's affine in :func:`predict_detections`' cases."""


def build_detection_network(config: DetectionConfig) -> RetinaNet:
    """The glass-box RetinaNet a config describes (random weights)."""
    return build_glassbox_retinanet(
        config.spatial_dims,
        in_channels=1,
        num_classes=config.num_classes,
        size=config.size,
        unit=config.unit,
        fpn_channels=config.fpn_channels,
    )


def make_detector(config: DetectionConfig, network: RetinaNet) -> RetinaNetDetector:
    """The MONAI detector around ``network`` with the config's box-selection settings."""
    return build_detector(
        network,
        score_thresh=config.score_thresh,
        nms_thresh=config.nms_thresh,
        detections_per_img=config.detections_per_image,
    )


def predict_detections(
    detector: RetinaNetDetector, loader: DataLoader, device: torch.device
) -> Iterator[dict[str, Any]]:
    """Run the detector (eval mode) over a loader; yield one dict per image (CPU tensors).

    Keys: ``id``, ``image``, ``pred_boxes``, ``pred_scores``, ``pred_labels``, and the
    record's ``boxes``/``box_labels`` (the truth, when it has them) plus the original grid
    (``original_affine``, ``original_shape``) and the preprocessed image's affine (``image_affine``).
    """
    detector.eval()
    with torch.no_grad():
        for batch in loader:
            images = torch.stack([plain_tensor(item[Keys.IMAGE]) for item in batch]).to(device)
            results = detector(images)
            for item, result in zip(batch, results, strict=True):
                yield {
                    **{k: v for k, v in item.items() if k != Keys.IMAGE},
                    Keys.ID: item.get(Keys.ID, ""),
                    Keys.IMAGE: plain_tensor(item[Keys.IMAGE]),
                    IMAGE_AFFINE: torch.as_tensor(np.asarray(item[Keys.IMAGE].affine), dtype=torch.float64),
                    "pred_boxes": result[BOX_KEY].cpu(),
                    "pred_scores": result[SCORE_KEY].cpu(),
                    "pred_labels": result[BOX_LABEL_KEY].cpu(),
                }


def score_detections(
    cases: Sequence[Mapping[str, Any]], iou_threshold: float, prefix: str = ""
) -> dict[str, float]:
    """mAP, FROC and CPM of predicted cases (:func:`predict_detections`), keys prefixed."""
    metrics = detection_metrics(
        [c["pred_boxes"] for c in cases],
        [c["pred_scores"] for c in cases],
        [c[BOX_KEY] for c in cases],
        pred_labels=[c["pred_labels"] for c in cases],
        gt_labels=[c[BOX_LABEL_KEY] for c in cases],
        iou_threshold=iou_threshold,
    )
    return {f"{prefix}{k}": v for k, v in metrics.items()}


def loader_for(config: DetectionConfig, records: list[dict], training: bool) -> DataLoader:
    """A split's data loader (lists of per-image dicts: boxes differ in count)."""
    try:
        dataset = CacheDataset(
            records,
            transform=detection_transforms(
                config.spatial_size,
                training=training,
                flip_prob=config.flip_prob,
                intensity_range=config.intensity_range,
            ),
            cache_rate=config.cache_rate,
            progress=config.progress,
        )
    except Exception as err:
        raise user_error(err) from err
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=training,
        num_workers=config.num_workers,
        collate_fn=no_collation,
    )
