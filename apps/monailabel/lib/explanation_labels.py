"""The explanation a reader sees beside a class score, as one label image.

A viewer (3D Slicer, OHIF) shows what MONAI Label returns as a label map over the study. Two
maps of the glass-box classifier answer "why this score": the *evidence* map (by default
``contribution``, each position's exact share of the target class's logit margin; or the
network's ``attention``) and the latent-shift counterfactual's *difference* map (where the image
had to change to flip the decision). Both are computed by the project's own functions
(:mod:`evaluation.saliency_maps`, :mod:`evaluation.counterfactuals`) with the bundle's explain
settings; this module only turns them into labels a viewer draws:

- label 1 ``evidence``: the top ``fraction`` of the pixels of the evidence map (positive values only),
- label 2 ``change``: the top ``fraction`` of the pixels of the difference map,
- label 3 ``evidence and change``: both.

Top pixels are those :func:`evaluation.map_scores.topk_iou` scores (the same rule: ``k =
max(1, round(fraction * n))`` pixels, only positive ones, ties by position). The continuous maps
stay available to the caller (the infer task reports their maxima and the counterfactual's
outcome in its JSON).

Example:
    >>> import torch
    >>> evidence = torch.tensor([[0.0, 3.0], [1.0, 0.0]])
    >>> change = torch.tensor([[0.0, 2.0], [0.0, 5.0]])
    >>> explanation_labels(evidence, change, fraction=0.25).tolist()
    [[0, 1], [0, 2]]
    >>> explanation_labels(evidence, change, fraction=0.5).tolist()
    [[0, 3], [1, 2]]
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "EVIDENCE_MAPS",
    "LABELS",
    "ImageExplanation",
    "explain_for_viewer",
    "explain_settings",
    "explanation_labels",
    "top_fraction_mask",
]

logger = logging.getLogger("medglass.monailabel")

LABELS = {"evidence": 1, "change": 2, "evidence and change": 3}
"""Label value of each region of the explanation label image."""

EVIDENCE_MAPS = ("contribution", "attention")
"""Maps that may serve as the evidence map (:mod:`evaluation.saliency_maps`)."""


def top_fraction_mask(values: torch.Tensor, fraction: float) -> torch.Tensor:
    """The top ``fraction`` of the pixels of a map, positive values only (as ``topk_iou`` selects them).

    Args:
        values: a map ``(*spatial)``.
        fraction: share of the pixels kept, in (0, 1].

    Returns:
        A boolean tensor of the map's shape.

    Raises:
        ValueError: ``fraction`` outside (0, 1] or a map that is not finite.

    Example:
        >>> top_fraction_mask(torch.tensor([3.0, 0.0, 2.0, 1.0]), 0.5).tolist()
        [True, False, True, False]
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if not bool(torch.isfinite(values).all()):
        raise ValueError("map must be finite, got NaN or inf values")
    flat = values.detach().reshape(-1).float()
    k = max(1, round(fraction * flat.numel()))
    ranked = torch.argsort(-flat, stable=True)[:k]
    top = torch.zeros(flat.numel(), dtype=torch.bool)
    top[ranked[flat[ranked] > 0]] = True
    return top.reshape(values.shape)


def explanation_labels(evidence: torch.Tensor, change: torch.Tensor, fraction: float = 0.05) -> torch.Tensor:
    """The label image of :data:`LABELS` from an evidence map and a difference map.

    Args:
        evidence: evidence map ``(*spatial)`` (contribution or attention).
        change: counterfactual difference map, same shape.
        fraction: share of the pixels each map marks.

    Returns:
        ``uint8`` labels of the maps' shape: 0 nothing, 1 evidence, 2 change, 3 both.

    Raises:
        ValueError: maps of different shapes, or as :func:`top_fraction_mask`.
    """
    if tuple(evidence.shape) != tuple(change.shape):
        raise ValueError(
            f"evidence and change maps must have the same shape, got {tuple(evidence.shape)} and {tuple(change.shape)}"
        )
    labels = top_fraction_mask(evidence, fraction).to(torch.uint8) * LABELS["evidence"]
    return labels + top_fraction_mask(change, fraction).to(torch.uint8) * LABELS["change"]


@dataclass
class ImageExplanation:
    """The explanation of one preprocessed image.

    Attributes:
        evidence: the evidence map ``(*spatial)`` at the model's input size.
        change: the counterfactual difference map, same shape.
        labels: :func:`explanation_labels` of both.
        summary: JSON-ready facts for the reader (map kind, fraction, the counterfactual's outcome).
    """

    evidence: torch.Tensor
    change: torch.Tensor
    labels: torch.Tensor
    summary: dict


def explain_settings(bundle: str | PathLike):
    """The bundle's explain settings (``configs/explain.json``'s ``settings`` id), else the defaults.

    Args:
        bundle: the bundle folder.

    Returns:
        A :class:`pipelines.explain.ExplainSettings`.

    Raises:
        ValueError: an explain config whose settings are invalid (the message names the file).
    """
    from pipelines.explain import ExplainSettings

    config = Path(bundle) / "configs" / "explain.json"
    if not config.is_file():
        return ExplainSettings()
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    try:
        parser.read_config(str(config))
        parser["bundle_root"] = str(Path(bundle).resolve())
        settings = parser.get_parsed_content("settings")
    except Exception as err:  # noqa: BLE001 - reported with the file
        raise ValueError(f"{config}: unusable explain settings ({err})") from err
    if not isinstance(settings, ExplainSettings):
        raise ValueError(f"{config}: 'settings' must build an ExplainSettings, got {type(settings).__name__}")
    return settings


def explain_for_viewer(
    network: nn.Module,
    image: torch.Tensor,
    settings,
    evidence_map: str = "contribution",
    fraction: float = 0.05,
) -> ImageExplanation:
    """Evidence map, counterfactual difference map and their label image for one preprocessed image.

    Args:
        network: the served glass-box network (``encode``/``decode``/``classify``, as the bundle
            adapters of :mod:`networks.bundle_adapters`), in eval mode.
        image: the preprocessed, channel-first image ``(C, *spatial)``.
        settings: :class:`pipelines.explain.ExplainSettings` (target class, threshold and the
            counterfactual's knobs).
        evidence_map: one of :data:`EVIDENCE_MAPS`.
        fraction: share of the pixels each map marks in the label image.

    Returns:
        The :class:`ImageExplanation`.

    Raises:
        ValueError: an unknown ``evidence_map`` or a bad ``fraction``.
    """
    from evaluation.counterfactuals import latent_shift_counterfactual
    from evaluation.saliency_maps import attention_map, contribution_map, counterfactual_map

    if evidence_map not in EVIDENCE_MAPS:
        raise ValueError(f"evidence_map must be one of {EVIDENCE_MAPS}, got {evidence_map!r}")
    x = torch.as_tensor(image).detach().float().as_subclass(torch.Tensor)[None]  # no MetaTensor tracing
    if evidence_map == "contribution":
        evidence = contribution_map(network, x, target_class=settings.target_class)
    else:
        evidence = attention_map(network, x)
    cf = latent_shift_counterfactual(
        network,
        x,
        target_class=settings.target_class,
        threshold=settings.threshold,
        step_size=settings.cf_step_size,
        max_steps=settings.cf_max_steps,
        frames=settings.cf_frames,
        overshoot=settings.cf_overshoot,
        readout=settings.cf_readout,
        focus=settings.cf_focus,
        sigma=None,  # unit steps, as pipelines.explain does for the spatial core (no training images here)
    )
    change = counterfactual_map(cf)
    labels = explanation_labels(evidence, change, fraction)
    summary = {
        "labels": dict(LABELS),
        "evidence_map": evidence_map,
        "fraction": fraction,
        "target_class": settings.target_class,
        "evidence_max": float(evidence.max()),
        "change_max": float(change.max()),
        "counterfactual": {
            "flipped": bool(cf.flipped),
            "steps": int(cf.steps),
            "probability": float(cf.probs[0]),
            "final_probability": float(cf.probs[-1]),
            "changed_fraction": float(cf.changed_fraction),
        },
    }
    json.dumps(summary)  # JSON-ready by construction; fails here rather than in the server's response
    return ImageExplanation(evidence=evidence, change=change, labels=labels, summary=summary)
