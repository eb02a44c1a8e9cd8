"""Run a trained network over a datalist and keep what analyses need: latents, logits, labels, attributes.

Explanations (disentanglement, traversal scales) and bias audits (probes, erasure, subgroup
metrics) all start from the same table: one row per image with the latent mean and
log-variance, the logits and class probabilities, the label (``-1`` when unknown), the record's
``attributes`` and its id. :func:`encode_records` builds it with the same loading and
preprocessing as training (MONAI ``Dataset``/``DataLoader``), in batches, with a progress bar.

Example:
    >>> from pipelines.trained_model import load_trained_model
    >>> trained = load_trained_model("runs/demo/classify")  # doctest: +SKIP
    >>> codes = encode_datalist(trained, "runs/demo/cohort/datalist.json", "test")  # doctest: +SKIP
    >>> codes.mu.shape  # doctest: +SKIP
    (240, 16)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, SelectItemsd
from tqdm.auto import tqdm

from pipelines.datalists import load_datalist
from pipelines.trained_model import TrainedModel
from pipelines.user_errors import user_error
from transforms.image_loading import LoadMedicalImaged
from transforms.keys import Keys
from transforms.preprocessing import preprocessing_transforms
from transforms.read_errors import ImageReadError

MIN_INPUT_SIDE = 8
"""Fewest pixels along an image axis for it to be explained (a 1 × 1 "image" is not one)."""

__all__ = ["LatentCodes", "encode_records", "encode_datalist", "model_input_transforms", "load_model_input"]

UNKNOWN_LABEL = -1


@dataclass
class LatentCodes:
    """Per-image outputs of a network over a set of records (rows aligned).

    Attributes:
        ids: record ids (``id`` of the record, else its image file name).
        mu: latent means ``(N, latent_dim)``.
        logvar: latent log-variances ``(N, latent_dim)``.
        logits: class logits ``(N, num_classes)``.
        labels: integer labels ``(N,)``, ``-1`` where the record has none.
        attributes: each record's ``attributes`` dict (empty when absent).
        records: the records as loaded (paths resolved).
    """

    ids: list[str]
    mu: np.ndarray
    logvar: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    attributes: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def probs(self) -> np.ndarray:
        """Softmax class probabilities ``(N, num_classes)``."""
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @property
    def scores(self) -> np.ndarray:
        """Positive-class (class 1) probability ``(N,)`` (class 0's for a one-class model)."""
        probs = self.probs
        return probs[:, 1] if probs.shape[1] > 1 else probs[:, 0]

    def attribute(self, name: str) -> list[Any]:
        """The values of one attribute, ``None`` where a record lacks it."""
        return [a.get(name) for a in self.attributes]

    def __len__(self) -> int:
        return len(self.ids)


def model_input_transforms(
    spatial_size: Sequence[int], mask: bool = False, intensity_range: Sequence[float] | None = None
) -> Compose:
    """Loading + the training preprocessing of ``image`` (and ``mask``, resized the same way).

    Args:
        spatial_size: the network's input size.
        mask: also load and preprocess ``mask`` (nearest-neighbour, never intensity-scaled).
        intensity_range: the training run's dataset-level intensity range
            (``TrainedModel.intensity_range``); ``None``: per-image percentiles.

    Returns:
        A MONAI ``Compose`` for ``{"image": path[, "mask": path]}`` records.
    """
    keys = [Keys.IMAGE] + ([Keys.MASK] if mask else [])
    return Compose(
        [LoadMedicalImaged(keys)]
        + preprocessing_transforms(
            Keys.IMAGE,
            spatial_size=tuple(spatial_size),
            channels=1,
            mask_keys=(Keys.MASK,) if mask else (),
            intensity_range=None if intensity_range is None else tuple(intensity_range),
        )
    )


def load_model_input(
    image: str | PathLike,
    spatial_size: Sequence[int],
    mask: str | PathLike | None = None,
    intensity_range: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One image (and its mask) as the network sees it.

    Args:
        image: an image file (DICOM, NIfTI, PNG, ...).
        spatial_size: the network's input size.
        mask: optional lesion mask file of the same image.
        intensity_range: see :func:`model_input_transforms`.

    Returns:
        ``(image (1, 1, *spatial_size), mask (*spatial_size) bool or None)``, plain tensors.

    Raises:
        ValueError: the file cannot be read or has the wrong number of axes (naming it).
    """
    record = {Keys.IMAGE: str(image)}
    if mask is not None:
        record[Keys.MASK] = str(mask)
    keys = [Keys.IMAGE] + ([Keys.MASK] if mask is not None else [])
    chain = model_input_transforms(spatial_size, mask=mask is not None, intensity_range=intensity_range)
    try:
        loaded = LoadMedicalImaged(keys)(record)
        shape = [int(s) for s in loaded[Keys.IMAGE].shape]
        small = [s for s in shape[1:] if s > 1]
        if len(small) > len(spatial_size):
            raise ImageReadError(
                image,
                f"a {len(small)}-D image (shape {' x '.join(map(str, shape[1:]))}, {shape[0]} channel(s)) where the "
                f"model takes {len(spatial_size)}-D images",
            )
        if any(s < MIN_INPUT_SIDE for s in small) or len(small) < 2:
            raise ImageReadError(
                image,
                f"image of {' x '.join(map(str, shape[1:]))} pixels is too small: at least {MIN_INPUT_SIDE} "
                "pixels along two axes are needed",
            )
        out = chain.transforms[1:] and Compose(chain.transforms[1:])(loaded)
    except Exception as err:
        cause = user_error(err)
        if not isinstance(cause, (ValueError, OSError)):
            raise
        if str(image) in str(cause):
            raise cause from err
        raise ValueError(f"{image}: {' '.join(str(cause).split())}") from err
    # plain tensors: every operation on a MetaTensor carries its metadata along, which made a
    # one-image explanation (hundreds of forward passes) markedly slower
    x = _plain(out[Keys.IMAGE]).float().unsqueeze(0)
    m = _plain(out[Keys.MASK])[0] > 0 if mask is not None else None
    return x, m


def _plain(value: Any) -> torch.Tensor:
    """A ``torch.Tensor`` without MONAI's metadata (``MetaTensor.as_tensor()``)."""
    return value.as_tensor() if hasattr(value, "as_tensor") else torch.as_tensor(value)


def _record_id(record: dict, index: int) -> str:
    if record.get(Keys.ID) is not None:
        return str(record[Keys.ID])
    image = record.get(Keys.IMAGE)
    return Path(str(image)).name if isinstance(image, (str, PathLike)) else str(index)


@torch.no_grad()
def encode_records(
    trained: TrainedModel,
    records: Sequence[dict],
    batch_size: int = 32,
    progress: bool = True,
    num_workers: int = 0,
) -> LatentCodes:
    """Encode records with a trained network (eval mode, no sampling).

    Args:
        trained: the model and its settings.
        records: datalist records with ``image`` (and optionally ``id``, ``label``, ``attributes``).
        batch_size: images per forward pass.
        progress: show a progress bar.
        num_workers: data-loader workers.

    Returns:
        The :class:`LatentCodes`, rows in the order of ``records``.

    Raises:
        ValueError: ``records`` is empty or an image cannot be read (naming the file).
    """
    if not records:
        raise ValueError("records: expected at least one record, got none")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    items = [{Keys.IMAGE: r[Keys.IMAGE], "index": i} for i, r in enumerate(records)]
    transform = Compose(
        [
            model_input_transforms(trained.spatial_size, intensity_range=trained.intensity_range),
            SelectItemsd([Keys.IMAGE, "index"]),
        ]
    )
    loader = DataLoader(Dataset(items, transform=transform), batch_size=batch_size, num_workers=num_workers)
    network = trained.network.eval()
    device = trained.device
    mus, logvars, logits = [], [], []
    for batch in tqdm(loader, desc="encoding", disable=not progress, leave=False):
        x = torch.as_tensor(batch[Keys.IMAGE]).float().to(device)
        enc = network.encode(x)
        mu = enc[Keys.MU]
        mus.append(mu.cpu())
        logvars.append(enc[Keys.LOGVAR].cpu())
        logits.append(network.classify(mu).cpu())
    labels = np.array(
        [int(r[Keys.LABEL]) if r.get(Keys.LABEL) is not None else UNKNOWN_LABEL for r in records],
        dtype=np.int64,
    )
    return LatentCodes(
        ids=[_record_id(r, i) for i, r in enumerate(records)],
        mu=torch.cat(mus).numpy().astype(np.float64),
        logvar=torch.cat(logvars).numpy().astype(np.float64),
        logits=torch.cat(logits).numpy().astype(np.float64),
        labels=labels,
        attributes=[dict(r.get(Keys.ATTRIBUTES) or {}) for r in records],
        records=list(records),
    )


def encode_datalist(
    trained: TrainedModel,
    datalist: str | PathLike,
    section: str = "test",
    batch_size: int = 32,
    progress: bool = True,
) -> LatentCodes:
    """:func:`encode_records` over one section of a datalist JSON.

    Args:
        trained: the model and its settings.
        datalist: the datalist file.
        section: its section (``training``, ``validation``, ``test``, ...).
        batch_size: images per forward pass.
        progress: show a progress bar.

    Returns:
        The :class:`LatentCodes` of the section.

    Raises:
        ValueError: an unusable datalist or section (naming it) or an unreadable image.
    """
    return encode_records(trained, load_datalist(datalist, section), batch_size=batch_size, progress=progress)
