"""The out-of-distribution reference of a trained run, written at training time and cached in its run folder.

:func:`ood_reference` encodes up to ``max_images`` of the run's training images (as the model
sees them: the run's intensity range and size), fits
:func:`evaluation.out_of_distribution.fit_reference` on their scores and caches it as
``ood_reference.json`` beside the checkpoint, stamped with the checkpoint's SHA-256 so that it
stays valid when the run folder is copied or moved (and the training images may be gone), and
is computed again when the weights change. Training writes it (:func:`write_ood_reference`);
older runs get it the first time a model is used. :func:`image_ood` scores model inputs against it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from monai.networks.utils import eval_mode

from evaluation.out_of_distribution import OodReference, fit_reference, score
from pipelines.datalists import load_datalist
from pipelines.latent_codes import load_model_input
from pipelines.trained_model import TrainedModel, load_trained_model

__all__ = [
    "OOD_FILE",
    "DEFAULT_MAX_IMAGES",
    "ood_reference",
    "image_ood",
    "input_scores",
    "write_ood_reference",
    "file_sha256",
]

OOD_FILE = "ood_reference.json"
DEFAULT_MAX_IMAGES = 500
_BATCH = 32
logger = logging.getLogger("medglass.ood")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (the stamp that ties a reference to its checkpoint)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp(trained: TrainedModel, max_images: int) -> tuple[Path | None, dict]:
    if trained.checkpoint is None or not Path(trained.checkpoint).is_file():
        return None, {}
    checkpoint = Path(trained.checkpoint)
    stamp = {"checkpoint": checkpoint.name, "sha256": file_sha256(checkpoint), "max_images": max_images}
    return checkpoint.parent / OOD_FILE, stamp


def input_scores(trained: TrainedModel, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reconstruction errors ``(batch,)``, latent means ``(batch, latent_dim)`` and input variances ``(batch,)``.

    Args:
        trained: the loaded run.
        x: model inputs ``(batch, C, *spatial)`` (as :func:`pipelines.latent_codes.load_model_input` gives).
    """
    net = trained.network
    x = x.to(trained.device).float()
    with torch.no_grad(), eval_mode(net):
        out = net(x)
    errors = ((out["recon"] - x) ** 2).flatten(1).mean(dim=1)
    variances = x.flatten(1).var(dim=1, unbiased=False)
    return (
        errors.cpu().double().numpy(),
        out["mu"].flatten(1).cpu().double().numpy(),
        variances.cpu().double().numpy(),
    )


def _training_scores(trained: TrainedModel, records: list[dict]) -> list[np.ndarray]:
    """Scores of the readable training images, in batches of :data:`_BATCH`."""
    inputs, parts = [], []
    for i, record in enumerate(records):
        try:
            inputs.append(
                load_model_input(
                    record["image"], trained.spatial_size, intensity_range=trained.intensity_range
                )[0]
            )
        except (ValueError, KeyError) as err:
            logger.debug("out-of-distribution reference: training image skipped (%s)", err)
        if inputs and (len(inputs) == _BATCH or i == len(records) - 1):
            parts.append(input_scores(trained, torch.cat(inputs)))
            inputs = []
    return [np.concatenate(p) for p in zip(*parts, strict=True)] if parts else []


def ood_reference(trained: TrainedModel, max_images: int = DEFAULT_MAX_IMAGES) -> OodReference | None:
    """The run's reference (cached), or ``None`` when its training images cannot be read.

    Args:
        trained: the loaded run.
        max_images: training images the reference is fitted on (the first of the datalist's
            ``training`` section).

    Returns:
        The :class:`~evaluation.out_of_distribution.OodReference`, or ``None`` (logged) when no
        cached reference fits the checkpoint and the training datalist is gone or holds fewer
        than 10 readable images.
    """
    if max_images < 10:
        raise ValueError(f"max_images must be at least 10, got {max_images!r}")
    cache, stamp = _stamp(trained, max_images)
    if cache is not None and cache.is_file():
        try:
            stored = json.loads(cache.read_text())
            if stored.get("stamp") == stamp:
                return OodReference.from_json(stored["reference"])
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            logger.warning("%s: unusable (%s), computing the reference again", cache, err)
    try:
        records = load_datalist(trained.config.datalist, "training")[:max_images]
    except (ValueError, OSError) as err:
        logger.warning("no out-of-distribution reference: training images unavailable (%s)", err)
        return None
    scores = _training_scores(trained, records)
    if not scores or scores[0].shape[0] < 10:
        logger.warning(
            "no out-of-distribution reference: %d readable training images",
            scores[0].shape[0] if scores else 0,
        )
        return None
    errors, mus, variances = scores
    reference = fit_reference(errors, mus, variances)
    if cache is not None:
        tmp = cache.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps({"stamp": stamp, "reference": reference.to_json()}))
            tmp.replace(cache)
        except OSError as err:
            logger.warning("%s: reference not cached (%s)", cache, err)
    return reference


def image_ood(trained: TrainedModel, x: torch.Tensor, reference: OodReference) -> dict:
    """Scores of one model input ``(1, C, *spatial)`` against the reference (see :func:`~evaluation.out_of_distribution.score`)."""
    errors, mus, variances = input_scores(trained, x)
    return score(reference, float(errors[0]), mus[0], float(variances[0]))


def write_ood_reference(
    run_dir: str | PathLike, device: str | torch.device = "cpu", max_images: int = DEFAULT_MAX_IMAGES
) -> Path | None:
    """Compute a finished run's reference and cache it in the run folder (called at the end of training).

    Args:
        run_dir: the training output folder.
        device: where to run the network.
        max_images: training images the reference is fitted on.

    Returns:
        The ``ood_reference.json`` written, or ``None`` (logged) when the run or its training
        images cannot be read; training carries on either way.
    """
    try:
        trained = load_trained_model(run_dir, device=device)
        reference = ood_reference(trained, max_images)
    except (ValueError, OSError) as err:
        logger.warning("%s: no out-of-distribution reference (%s)", run_dir, err)
        return None
    cache = None if trained.checkpoint is None else Path(trained.checkpoint).parent / OOD_FILE
    return cache if reference is not None and cache is not None and cache.is_file() else None
