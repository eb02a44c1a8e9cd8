"""Per-epoch metrics of the training workflows, as Ignite/MONAI metrics named once.

Training: the epoch averages of the loss terms and of the KL divergence of every latent
dimension (``train_kl_dim_00``, ...). Validation/test (prefix ``val``/``test``): the loss terms,
reconstruction MSE and SSIM (MONAI ``MeanSquaredError`` and ``SSIMMetric``) and, in ``classify``
mode, ROC AUC, accuracy, sensitivity and specificity. Every one of these synchronises across
ranks under ``torch.distributed`` (Ignite's ``Average`` all-reduces, MONAI's cumulative metrics
all-gather), so all ranks see the global values.

Example:
    >>> kl_dim_names("train", 3)
    ['train_kl_dim_00', 'train_kl_dim_01', 'train_kl_dim_02']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from ignite.metrics import Average
from monai.handlers import ROCAUC, ConfusionMatrix, IgniteMetricHandler, MeanSquaredError
from monai.metrics import SSIMMetric

from pipelines.engine_steps import KL_PER_DIM_KEY, LOSS_TERMS, TARGET_KEY
from transforms.keys import Keys

__all__ = ["kl_dim_names", "train_metrics", "eval_metrics", "key_metric_name", "flat_numbers"]

RECON_KEY = "pred_recon"
"""Evaluation-step output key of the reconstruction (see :class:`~pipelines.engine_steps.GlassBoxEvalStep`)."""


def _item(name: str) -> Callable[[dict], Any]:
    return lambda output: output[name]


def _kl_dim(index: int) -> Callable[[dict], Any]:
    return lambda output: output[KL_PER_DIM_KEY][index]


def kl_dim_names(prefix: str, latent_dim: int) -> list[str]:
    """Metric names of the KL per latent dimension: ``<prefix>_kl_dim_<i>``, zero-padded to at least 2 digits.

    Args:
        prefix: ``"train"``.
        latent_dim: number of latent variables.

    Returns:
        One name per dimension, in order (sorting them keeps the order).
    """
    width = max(2, len(str(latent_dim - 1)))
    return [f"{prefix}_kl_dim_{i:0{width}d}" for i in range(latent_dim)]


def key_metric_name(mode: str, prefix: str = "val") -> str:
    """The metric that picks the best model: ``<prefix>_loss`` (``pretrain``) or ``<prefix>_auc``."""
    return f"{prefix}_loss" if mode == "pretrain" else f"{prefix}_auc"


def train_metrics(latent_dim: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(key metric, additional metrics) of the trainer: epoch averages of the loss terms and KL per dimension.

    Args:
        latent_dim: number of latent variables.

    Returns:
        ``{"train_loss": Average}`` and ``{"train_recon"|"train_kl"|"train_ce"|"train_kl_dim_<i>": Average}``.
    """
    extra: dict[str, Any] = {f"train_{t}": Average(output_transform=_item(t)) for t in LOSS_TERMS[1:]}
    for index, name in enumerate(kl_dim_names("train", latent_dim)):
        extra[name] = Average(output_transform=_kl_dim(index))
    return {"train_loss": Average(output_transform=_item("loss"))}, extra


def eval_metrics(mode: str, num_classes: int, spatial_dims: int, prefix: str) -> tuple[dict, dict]:
    """(key metric, additional metrics) of an evaluator, names prefixed (``val_``/``test_``).

    Args:
        mode: ``"pretrain"`` (key metric: loss) or ``"classify"`` (key metric: ROC AUC).
        num_classes: classifier outputs.
        spatial_dims: 2 or 3 (for SSIM).
        prefix: ``"val"`` or ``"test"``.

    Returns:
        Two dicts name → metric, as ``SupervisedEvaluator`` takes them.
    """
    losses = {f"{prefix}_{term}": Average(output_transform=_item(term)) for term in LOSS_TERMS}
    recon_pair = lambda o: (o[RECON_KEY], o[TARGET_KEY])  # noqa: E731
    extra: dict[str, Any] = {
        f"{prefix}_recon_mse": MeanSquaredError(output_transform=recon_pair),
        f"{prefix}_recon_ssim": IgniteMetricHandler(
            metric_fn=SSIMMetric(spatial_dims=spatial_dims, data_range=1.0), output_transform=recon_pair
        ),
    }
    key_name = key_metric_name(mode, prefix)
    if mode == "pretrain":
        key = {key_name: losses.pop(key_name)}
        return key, {**losses, **extra}
    key = {key_name: ROCAUC(output_transform=lambda o: (o[Keys.PRED], o["label_onehot"]))}
    extra.update(losses)
    for name in ("accuracy", "sensitivity", "specificity"):
        extra[f"{prefix}_{name}"] = ConfusionMatrix(
            include_background=num_classes > 2,
            metric_name=name,
            output_transform=lambda o: (o["pred_onehot"], o["label_onehot"]),
        )
    return key, extra


def _number(value: Any) -> float | None:
    # tensors, arrays and numpy scalars of one element (np.float32 is no ``float`` subclass)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, (np.ndarray, np.generic)) and value.size == 1:
        value = value.item()
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return _number(value[0])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def flat_numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of an engine's ``state.metrics`` as floats (others left out)."""
    out = {}
    for name, value in metrics.items():
        number = _number(value)
        if number is not None:
            out[name] = number
    return out
