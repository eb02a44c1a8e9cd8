"""Shared pieces of synthesis training and inference: run a generator over a loader, average metrics.

Example:
    >>> mean_metrics([{"ssim": 0.5}, {"ssim": 1.0}])
    {'ssim': 0.75}
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader
from monai.utils import convert_to_tensor

from evaluation.synthesis_metrics import LESION_COUNTS, lesion_detection_rates
from pipelines.synthesis_data import PairKeys

__all__ = ["plain_tensor", "predict_cases", "mean_metrics", "finite_numbers", "json_numbers"]


def plain_tensor(data: Any) -> torch.Tensor:
    """A float ``torch.Tensor`` without MONAI metadata (ops on a ``MetaTensor`` copy it each time)."""
    return convert_to_tensor(data, track_meta=False).float()


def predict_cases(
    generator: torch.nn.Module, loader: DataLoader, device: torch.device
) -> Iterator[dict[str, Any]]:
    """Run the generator over a loader; yield one dict per case (CPU tensors ``(1, *spatial)``).

    Keys: ``id``, ``source``, ``pred``, ``target`` (when the batch has it), ``mask`` (``None``
    when the record had none) and ``source_scale``.
    """
    generator.eval()
    with torch.no_grad():
        for batch in loader:
            source = plain_tensor(batch[PairKeys.SOURCE]).to(device)
            pred = generator(source).cpu()
            for i in range(source.shape[0]):
                case = {
                    PairKeys.ID: str(batch[PairKeys.ID][i]),
                    PairKeys.SOURCE: source[i].cpu(),
                    PairKeys.PRED: pred[i],
                    PairKeys.SOURCE_SCALE: batch[PairKeys.SOURCE_SCALE][i],
                    PairKeys.MASK: (
                        plain_tensor(batch[PairKeys.MASK][i])
                        if float(batch[PairKeys.HAS_MASK][i]) > 0
                        else None
                    ),
                }
                if PairKeys.TARGET in batch:
                    case[PairKeys.TARGET] = plain_tensor(batch[PairKeys.TARGET][i])
                yield case


def mean_metrics(rows: list[dict[str, float]], prefix: str = "") -> dict[str, float]:
    """Per-name mean over cases, NaN (no mask, flat map) and infinite (identical images) values left out.

    A name with no finite value is NaN. With lesion counts (:data:`~evaluation.synthesis_metrics.LESION_COUNTS`),
    the pooled enhancing-lesion sensitivity and false-enhancement rate are added.

    Example:
        >>> mean_metrics([{"ssim": 0.5, "lesion_mae": float("nan")}, {"ssim": 1.0, "lesion_mae": 0.2}], "val_")
        {'val_ssim': 0.75, 'val_lesion_mae': 0.2}
    """
    out: dict[str, float] = {}
    for name in dict.fromkeys(k for row in rows for k in row):
        values = [row[name] for row in rows if name in row and math.isfinite(row[name])]
        out[prefix + name] = float(np.mean(values)) if values else float("nan")
    if all(prefix + k in out for k in LESION_COUNTS):  # pooled over the cases' lesions
        out.update(lesion_detection_rates(out, prefix))
    return out


def finite_numbers(metrics: Mapping[str, float]) -> dict[str, float]:
    """The finite entries of ``metrics`` as floats (MLflow gets no NaN or infinity)."""
    return {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}


def json_numbers(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """Non-finite numbers as ``null``: strict JSON has no NaN/Infinity."""
    return {k: (float(v) if math.isfinite(float(v)) else None) for k, v in metrics.items()}
