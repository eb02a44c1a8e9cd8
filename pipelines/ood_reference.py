"""The out-of-distribution reference of a trained run, computed once and cached in its run folder.

:func:`ood_reference` encodes up to ``max_images`` of the run's training images, fits
:func:`evaluation.out_of_distribution.fit_reference` on their reconstruction errors and latent
means and caches it as ``ood_reference.json`` beside the checkpoint (stamped with the
checkpoint's size and time); :func:`image_ood` scores one model input against it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from monai.networks.utils import eval_mode

from evaluation.out_of_distribution import OodReference, fit_reference, score
from pipelines.datalists import load_datalist
from pipelines.latent_codes import load_model_input
from pipelines.trained_model import TrainedModel

__all__ = ["OOD_FILE", "ood_reference", "image_ood"]

OOD_FILE = "ood_reference.json"
logger = logging.getLogger("medglass.ood")


def _stamp(trained: TrainedModel, max_images: int) -> tuple[Path | None, dict]:
    if trained.checkpoint is None or not Path(trained.checkpoint).is_file():
        return None, {}
    stat = Path(trained.checkpoint).stat()
    stamp = {"checkpoint": Path(trained.checkpoint).name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return Path(trained.checkpoint).parent / OOD_FILE, stamp | {"max_images": max_images}


def _scores(trained: TrainedModel, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruction errors ``(batch,)`` and latent means ``(batch, latent_dim)`` of model inputs."""
    net = trained.network
    with torch.no_grad(), eval_mode(net):
        out = net(x.to(trained.device))
    errors = ((out["recon"] - x.to(trained.device)) ** 2).flatten(1).mean(dim=1)
    return errors.cpu().numpy(), out["mu"].cpu().numpy()


def ood_reference(trained: TrainedModel, max_images: int = 500) -> OodReference | None:
    """The run's reference (cached), or ``None`` when its training images cannot be read.

    Args:
        trained: the loaded run.
        max_images: training images the reference is fitted on.

    Returns:
        The :class:`~evaluation.out_of_distribution.OodReference`, or ``None`` (logged) when the
        training datalist is gone or holds fewer than 10 readable images.
    """
    cache, stamp = _stamp(trained, max_images)
    if cache is not None and cache.is_file():
        try:
            stored = json.loads(cache.read_text())
            if stored.get("stamp") == stamp:
                return OodReference.from_json(stored["reference"])
        except (ValueError, KeyError, TypeError):
            logger.warning("%s: unreadable, computing the reference again", cache)
    try:
        records = load_datalist(trained.config.datalist, "training")[:max_images]
    except (ValueError, OSError) as err:
        logger.warning("no out-of-distribution reference: training images unavailable (%s)", err)
        return None
    errors, mus = [], []
    for record in records:
        try:
            x, _ = load_model_input(
                record["image"], trained.spatial_size, intensity_range=trained.intensity_range
            )
        except ValueError:
            continue
        e, m = _scores(trained, x)
        errors.append(e)
        mus.append(m)
    if len(errors) < 10:
        logger.warning("no out-of-distribution reference: %d readable training images", len(errors))
        return None
    reference = fit_reference(np.concatenate(errors), np.concatenate(mus))
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
    errors, mus = _scores(trained, x)
    return score(reference, float(errors[0]), mus[0])
