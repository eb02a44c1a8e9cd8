"""Synthetic images from a trained run: a learnt latent prior, class-conditional draws, chosen latent values.

The decoder of a glass-box run draws an image from the whole latent (for the spatial core the
latent grid plus the global code). Drawing that latent from the β-VAE prior ``N(0, I)`` gives no
image — with a small KL weight each cell's posterior sits far from it — so
:func:`fit_latent_prior` encodes the run's training images (posterior means and log-variances
of the whole latent, eval mode) and fits, per class and for all images together, a Gaussian in a
PCA space (:mod:`evaluation.latent_sampling`). It is cached as ``latent_prior.npz`` in the run
folder, stamped with the checkpoint's SHA-256 like the out-of-distribution reference.

Three sources of latents (:func:`sample_latents`):

* ``"aggregate"`` (default): the class's learnt Gaussian over the aggregate posterior — new
  combinations of the training images' factors;
* ``"posterior"``: the posterior ``N(mu_i, diag(exp(logvar_i)))`` of a training image ``i`` of
  the class, drawn at random — faithful images close to that real one (each record names it,
  ``drawn_from``; ``medglass evaluate-generation`` measures how close);
* ``"prior"``: the β-VAE prior ``N(0, I)``, for comparison: it gives no image (see above).

:func:`condition` moves each latent (gradient steps through decoder and encoder) until the
*re-encoded* image's head vector ``mu[k]`` reaches a chosen value, and reports how close it got. :func:`generate` writes the
images (16-bit PNG in the run's intensity units for 2D, NIfTI for 3D) and a datalist that
``medglass classify --datalist`` trains on directly (``training`` plus a 20 % ``validation``
split), every record marked ``"synthetic": true`` with its latent code (a ``.npy`` per image:
the spatial latent of a 64 × 64 model holds 2056 numbers, too many for a JSON list).

Example:
    >>> summary = generate("runs/demo/classify", "runs/demo/synthetic", n=100, cls=1)  # doctest: +SKIP
    >>> summary["datalist"]  # doctest: +SKIP
    'runs/demo/synthetic/datalist.json'
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.networks.utils import eval_mode

from evaluation.html_report import write_text_atomic
from evaluation.latent_sampling import PcaGaussian, fit_pca_gaussian, posterior_draws
from phantoms.image_files import write_nifti, write_png_image
from pipelines.datalists import UNLABELLED, load_datalist
from pipelines.latent_codes import load_model_input
from pipelines.ood_reference import file_sha256
from pipelines.trained_model import TrainedModel, load_trained_model

__all__ = [
    "PRIOR_FILE",
    "SOURCES",
    "IMAGE_FORMATS",
    "LatentPrior",
    "fit_latent_prior",
    "sample_latents",
    "decode_samples",
    "condition",
    "generate",
    "fit_prior",
]

PRIOR_FILE = "latent_prior.npz"
"""The cached learnt prior in a run folder."""
SOURCES = ("aggregate", "posterior", "prior")
"""Where latents are drawn from (see the module docstring)."""
IMAGE_FORMATS = ("png", "nifti")
SETTINGS_FILE = "generation.json"
_OUTPUT_ENTRIES = {"images", "latents", "datalist.json", SETTINGS_FILE}
_BATCH = 32
_UINT16_MAX = 65535
ALL = "all"
logger = logging.getLogger("medglass.generation")


@dataclass
class LatentPrior:
    """The learnt prior of a run: a :class:`~evaluation.latent_sampling.PcaGaussian` per class and for all.

    Attributes:
        models: ``"all"`` and, per class with at least 2 training images, ``str(class)`` → model.
        mu: ``(N, latent_size)`` posterior means of the training images (float32).
        logvar: ``(N, latent_size)`` their posterior log-variances (float32).
        labels: ``(N,)`` their labels (``-1``: unlabelled).
        ids: ``(N,)`` their record ids.
        stamp: what the cache was computed from (checkpoint, SHA-256, settings).
    """

    models: dict[str, PcaGaussian]
    mu: np.ndarray
    logvar: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    stamp: dict = field(default_factory=dict)

    @property
    def latent_size(self) -> int:
        """Length of the whole latent."""
        return int(self.mu.shape[1])

    @property
    def classes(self) -> list[int]:
        """Classes with a fitted model, ascending."""
        return sorted(int(k) for k in self.models if k != ALL)

    def save(self, path: Path) -> None:
        """Write it as an ``.npz`` of plain arrays (no pickles), atomically."""
        arrays: dict[str, np.ndarray] = {
            "stamp": np.asarray(json.dumps(self.stamp, sort_keys=True)),
            "groups": np.asarray(sorted(self.models)),
            "mu": self.mu,
            "logvar": self.logvar,
            "labels": self.labels,
            "ids": self.ids,
        }
        for name, model in self.models.items():
            arrays.update(model.to_arrays(f"model_{name}_"))
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("wb") as f:
            np.savez(f, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LatentPrior:
        """Read what :meth:`save` wrote."""
        with np.load(path, allow_pickle=False) as data:
            groups = [str(g) for g in data["groups"]]
            return cls(
                models={g: PcaGaussian.from_arrays(data, f"model_{g}_") for g in groups},
                mu=data["mu"],
                logvar=data["logvar"],
                labels=data["labels"],
                ids=data["ids"],
                stamp=json.loads(str(data["stamp"])),
            )


def _check_decoder(trained: TrainedModel) -> None:
    net = trained.network
    if not callable(getattr(net, "decode", None)) or getattr(net, "decoder", None) is None:
        raise ValueError(
            f"model {trained.source}: {type(net).__name__} has no decoder (decode); synthetic images need a "
            "glass-box autoencoder run"
        )


def _posterior(trained: TrainedModel, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Whole-latent posterior means and log-variances ``(batch, latent_size)`` in eval mode."""
    net = trained.network
    with torch.no_grad(), eval_mode(net):
        out = net(x.to(trained.device).float())
    if "spatial_mu" in out:
        mu = net.join_latent(out["spatial_mu"], out["global_mu"])
        logvar = net.join_latent(out["spatial_logvar"], out["global_logvar"])
    else:
        mu, logvar = out["mu"], out["logvar"]
    return mu.cpu().float().numpy(), logvar.cpu().float().numpy()


def _encode_records(trained: TrainedModel, records: Sequence[Mapping]) -> tuple[np.ndarray, ...]:
    inputs, labels, ids, parts = [], [], [], []
    for i, record in enumerate(records):
        try:
            x = load_model_input(
                record["image"], trained.spatial_size, intensity_range=trained.intensity_range
            )[0]
        except (ValueError, KeyError) as err:
            logger.debug("latent prior: training image skipped (%s)", err)
        else:
            inputs.append(x)
            labels.append(int(record.get("label", UNLABELLED)))
            ids.append(str(record.get("id", Path(str(record["image"])).name)))
        if inputs and (len(inputs) == _BATCH or i == len(records) - 1):
            parts.append(_posterior(trained, torch.cat(inputs)))
            inputs = []
    if not parts:
        return (
            np.zeros((0, 0), np.float32),
            np.zeros((0, 0), np.float32),
            np.zeros(0, np.int64),
            np.asarray(ids),
        )
    mu, logvar = (np.concatenate(p) for p in zip(*parts, strict=True))
    return mu, logvar, np.asarray(labels, dtype=np.int64), np.asarray(ids)


def fit_latent_prior(
    trained: TrainedModel,
    records: Sequence[Mapping] | None = None,
    max_images: int = 500,
    n_components: int = 256,
    n_mixture: int = 1,
) -> LatentPrior:
    """Encode training images and fit the learnt prior, per class and for all (cached for the run's own images).

    Args:
        trained: the loaded run.
        records: datalist records (``image`` path, ``label``); ``None``: the run's training
            datalist section, and the result is cached as
            ``latent_prior.npz`` beside the checkpoint (used again while the checkpoint's
            SHA-256 and these settings match).
        max_images: most images encoded: labelled records first, each group in datalist order.
        n_components: PCA directions of each Gaussian (capped at the class's images - 1). Few
            directions lose small findings: the lesion lives in a few grid cells, which the
            leading directions of the whole latent do not describe, so class-1 draws decode
            without it (``medglass generate`` reports the share the model classifies as their
            class: ``predicted_as_label``).
        n_mixture: Gaussian mixture components in the PCA space (1: one full-covariance
            Gaussian; more components did not raise ``predicted_as_label`` on the demo run).

    Returns:
        The :class:`LatentPrior`.

    Raises:
        ValueError: a bad count, a model without a decoder, or fewer than 2 readable images
            (or an unreadable training datalist), naming the cause.
    """
    for name, value, minimum in (("max_images", max_images, 2), ("n_components", n_components, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    if isinstance(n_mixture, bool) or not isinstance(n_mixture, int) or n_mixture < 1:
        raise ValueError(f"n_mixture must be an int >= 1, got {n_mixture!r}")
    _check_decoder(trained)
    cache, stamp = None, {"max_images": max_images, "n_components": n_components, "n_mixture": n_mixture}
    if records is None and trained.checkpoint is not None and Path(trained.checkpoint).is_file():
        checkpoint = Path(trained.checkpoint)
        stamp.update(checkpoint=checkpoint.name, sha256=file_sha256(checkpoint))
        cache = checkpoint.parent / PRIOR_FILE
        if cache.is_file():
            try:
                prior = LatentPrior.load(cache)
                if prior.stamp == stamp:
                    return prior
            except (OSError, ValueError, KeyError) as err:
                logger.warning("%s: unusable (%s), fitting the prior again", cache, err)
    if records is None:
        try:
            records = load_datalist(trained.config.datalist, "training")
        except (ValueError, OSError) as err:
            raise ValueError(
                f"model {trained.source}: training images unavailable for the latent prior ({err})"
            ) from err
    # labelled records first (stable order), so a cap keeps every labelled image it can: with scarce
    # labels, the first max_images in file order may hold none of a rare class
    records = list(records)
    labelled = [int(r.get("label", UNLABELLED)) != UNLABELLED for r in records]
    records = [r for r, lab in zip(records, labelled, strict=True) if lab] + [
        r for r, lab in zip(records, labelled, strict=True) if not lab
    ]
    mu, logvar, labels, ids = _encode_records(trained, records[:max_images])
    if mu.shape[0] < 2:
        raise ValueError(
            f"model {trained.source}: {mu.shape[0]} readable training image(s); the latent prior needs 2"
        )
    models = {ALL: fit_pca_gaussian(mu, n_components, n_mixture)}
    for c in sorted(set(labels.tolist()) - {UNLABELLED}):
        if int((labels == c).sum()) >= 2:
            models[str(c)] = fit_pca_gaussian(mu[labels == c], n_components, n_mixture)
    prior = LatentPrior(models=models, mu=mu, logvar=logvar, labels=labels, ids=ids, stamp=stamp)
    if cache is not None:
        try:
            prior.save(cache)
        except OSError as err:
            logger.warning("%s: prior not cached (%s)", cache, err)
    return prior


def _draw(
    prior: LatentPrior, n: int, cls: int | None, source: str, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str | None]]:
    """``(latents (n, D), label of each, training id it was drawn from or None)``."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if cls is not None and (isinstance(cls, bool) or not isinstance(cls, int) or cls not in prior.classes):
        raise ValueError(
            f"cls must be one of the classes with a fitted prior {prior.classes} or None, got {cls!r}"
        )
    rng = np.random.default_rng(seed)
    if cls is not None:
        labels = np.full(n, cls, dtype=np.int64)
    elif prior.classes:
        counts = np.asarray([(prior.labels == c).sum() for c in prior.classes], dtype=np.float64)
        labels = rng.choice(np.asarray(prior.classes, dtype=np.int64), size=n, p=counts / counts.sum())
    else:
        labels = np.full(n, UNLABELLED, dtype=np.int64)
    latents = np.zeros((n, prior.latent_size))
    parents: list[str | None] = [None] * n
    for c in sorted(set(labels.tolist())):
        where = np.flatnonzero(labels == c)
        if source == "prior":
            latents[where] = rng.standard_normal((len(where), prior.latent_size))
            continue
        if source == "aggregate":
            latents[where] = prior.models[ALL if c == UNLABELLED else str(c)].sample(len(where), rng)
            continue
        rows = np.arange(len(prior.labels)) if c == UNLABELLED else np.flatnonzero(prior.labels == c)
        draws, chosen = posterior_draws(prior.mu[rows], prior.logvar[rows], len(where), rng)
        latents[where] = draws
        for i, r in zip(where, chosen, strict=True):
            parents[i] = str(prior.ids[rows[r]])
    return latents, labels, parents


def sample_latents(
    prior: LatentPrior, n: int, cls: int | None = None, source: str = "aggregate", seed: int = 0
) -> torch.Tensor:
    """``n`` whole latents ``(n, latent_size)`` (float32) drawn from the learnt prior or training posteriors.

    Args:
        prior: from :func:`fit_latent_prior`.
        n: how many.
        cls: the class to draw; ``None``: classes in their training proportions (all images
            when none is labelled).
        source: ``"aggregate"``, ``"posterior"`` or ``"prior"`` (see the module docstring).
        seed: same seed → same latents.

    Returns:
        The latents, ready for :func:`decode_samples`.

    Raises:
        ValueError: ``n <= 0``, an unknown ``source`` or a class without a fitted prior.
    """
    return torch.from_numpy(_draw(prior, n, cls, source, seed)[0]).float()


def decode_samples(trained: TrainedModel, latents: torch.Tensor) -> torch.Tensor:
    """Decode whole latents into images ``(n, C, *spatial_size)`` clipped to [0, 1] (the model's intensity units).

    Raises:
        ValueError: the model has no decoder or the latents do not fit it.
    """
    _check_decoder(trained)
    net = trained.network
    parts = []
    with torch.no_grad(), eval_mode(net):
        for start in range(0, latents.shape[0], _BATCH):
            z = latents[start : start + _BATCH].to(trained.device).float()
            parts.append(net.decode(z).clamp(0.0, 1.0).cpu())
    return torch.cat(parts)


def _head_reading(trained: TrainedModel, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, attention at latent resolution)`` of images as the encoder reads them."""
    net = trained.network
    with torch.no_grad(), eval_mode(net):
        enc = net.encode(images.to(trained.device).float())
    return enc["mu"], enc.get("latent_attention", enc["attention"])


def condition(
    trained: TrainedModel,
    latents: torch.Tensor,
    latent_values: Mapping[int, float],
    steps: int = 30,
    lr: float = 0.05,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Move each latent so that its decoded image, encoded again, reads ``mu[k] ≈ v`` for each ``{k: v}``.

    The head reads ``mu`` of the *image*, so the target is set through the round trip
    ``encode(decode(z))``: Adam on ``z`` minimises ``Σ_k (mu_k - v_k)²`` (network weights fixed),
    and the step with the smallest gap is kept per sample. Stepping along
    :meth:`~networks.SpatialGlassBoxNet.latent_direction` alone does not get there: on
    ``runs/demo/classify`` twelve such steps moved the head reading of the latent from -1.9 to
    16.7 while the re-encoded ``mu[1]`` went from -1.34 to -0.05 (target 1.15) — the decoder
    does not draw a uniform shift of a channel as anything the encoder reads back.

    Args:
        trained: the loaded run.
        latents: ``(n, latent_size)`` whole latents.
        latent_values: head-vector index → target value.
        steps: optimisation steps.
        lr: Adam learning rate on the latent.

    Returns:
        ``(conditioned latents, report)``: per index ``k`` (as a string) the target, the values
        before and after (per sample) and the mean absolute gap after.

    Raises:
        ValueError: an index outside ``[0, latent_dim)``, a non-finite value, ``steps < 1`` or
            ``lr <= 0``.
    """
    _check_decoder(trained)
    net = trained.network
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    targets = _check_latent_values(latent_values, net.latent_dim)
    keys = sorted(targets)
    z0 = latents.to(trained.device).float()
    goal = torch.tensor([targets[k] for k in keys], device=z0.device)
    best_z, best_gap, first = z0.clone(), torch.full((z0.shape[0],), float("inf"), device=z0.device), None
    z = z0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)
    frozen = [p for p in net.parameters() if p.requires_grad]
    was_training = net.training
    net.eval()  # not MONAI's eval_mode: it turns gradients off, and the latent needs them
    try:
        for p in frozen:
            p.requires_grad_(False)
        with torch.enable_grad():
            for step in range(steps + 1):
                mu = net.encode(net.decode(z).clamp(0.0, 1.0))["mu"][:, keys]
                if first is None:
                    first = mu.detach().clone()
                gap = (mu.detach() - goal).abs().sum(dim=1)
                better = gap < best_gap
                best_z[better] = z.detach()[better]
                best_gap = torch.where(better, gap, best_gap)
                if step == steps:
                    break
                optimizer.zero_grad()
                ((mu - goal) ** 2).sum().backward()
                optimizer.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
        net.train(was_training)
    final, _ = _head_reading(trained, decode_samples(trained, best_z))
    report = {
        str(k): {
            "target": targets[k],
            "before": first[:, j].tolist(),
            "after": final[:, k].tolist(),
            "mean_abs_gap": float((final[:, k] - targets[k]).abs().mean()),
        }
        for j, k in enumerate(keys)
    }
    return best_z.cpu(), report


def _check_latent_values(latent_values: Mapping[int, float], latent_dim: int) -> dict[int, float]:
    if not isinstance(latent_values, Mapping) or not latent_values:
        raise ValueError(f"latent_values must be a non-empty mapping index → value, got {latent_values!r}")
    checked = {}
    for k, v in latent_values.items():
        index = int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < latent_dim:
            raise ValueError(f"latent_values: index must be an int in [0, {latent_dim - 1}], got {k!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"latent_values: value of {index} must be a finite number, got {v!r}")
        checked[index] = float(v)
    return checked


def _to_units(image: np.ndarray, trained: TrainedModel, image_format: str) -> np.ndarray:
    """A [0, 1] model image in the run's intensity units (what its preprocessing maps back to [0, 1])."""
    span = trained.intensity_range
    if span is None:
        return image
    a, b = span
    if image_format == "png" and (a < 0 or b > _UINT16_MAX):
        raise ValueError(
            f"image_format: 'png' (16-bit) cannot hold the run's intensity range {span}; use image_format='nifti'"
        )
    return a + image * (b - a)


def _write_image(path: Path, image: np.ndarray, trained: TrainedModel, image_format: str) -> None:
    units = _to_units(image, trained, image_format)
    if image_format == "png":
        # write_png_image stores round(v * 65535): scaled so that the file holds the units themselves
        write_png_image(path, units / _UINT16_MAX if trained.intensity_range is not None else units)
    else:
        write_nifti(path, units.astype(np.float32), np.eye(4))


def _check_out_dir(out_dir: Path, settings: dict) -> None:
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ValueError(f"out_dir {out_dir}: exists and is not a folder")
    entries = {p.name for p in out_dir.iterdir()}
    if not entries:
        return
    stored = None
    if SETTINGS_FILE in entries:
        try:
            stored = json.loads((out_dir / SETTINGS_FILE).read_text()).get("settings")
        except (OSError, ValueError, AttributeError):
            stored = None
    if stored != settings or not entries <= _OUTPUT_ENTRIES:
        raise ValueError(
            f"out_dir {out_dir}: already holds files of another run ({', '.join(sorted(entries)[:5])}); "
            "generate writes only into an empty folder or one it filled with the same settings"
        )


def generate(
    model: str | PathLike | TrainedModel,
    out_dir: str | PathLike,
    n: int,
    cls: int | None = None,
    latent_values: Mapping[int, float] | None = None,
    source: str = "aggregate",
    seed: int = 0,
    image_format: str = "png",
    device: str | torch.device = "cpu",
    n_components: int = 256,
) -> dict[str, Any]:
    """Draw ``n`` synthetic images from a trained run and write them with a training-ready datalist.

    Writes ``out_dir/images/synthetic_<i>.png|.nii.gz`` (the run's intensity units, so its
    preprocessing reads back the decoded image), ``out_dir/latents/synthetic_<i>.npy`` (the whole
    latent, float32), ``out_dir/datalist.json`` (``training`` and, for ``n >= 2``, a
    ``validation`` section of every fifth record; records hold ``id``, ``image``, ``label``,
    ``"synthetic": true``, ``latent`` (the ``.npy`` path relative to the datalist), ``mu`` (the
    head vector of the written image), ``source`` and, for posterior draws, ``drawn_from``) and
    ``out_dir/generation.json`` (settings and summary). Same settings and seed → the same bytes.

    Args:
        model: a run folder, checkpoint or MLflow reference, or a loaded :class:`TrainedModel`.
        out_dir: an empty (or new) folder, or one a previous call with the same settings filled.
        n: number of images.
        cls: the class to draw (the records' label); ``None``: classes in their training proportions.
        latent_values: optional ``{k: v}``: condition the head vector ``mu[k]`` to ``v`` (:func:`condition`).
        source: ``"aggregate"``, ``"posterior"`` or ``"prior"`` (see the module docstring).
        seed: the random seed.
        image_format: ``"png"`` (2D only) or ``"nifti"``.
        device: where to run the network when ``model`` is a reference.
        n_components: PCA directions of the learnt prior.

    Returns:
        A summary: ``datalist``, ``images``, ``labels`` (count per label), ``source``, ``seed``,
        ``predicted_as_label`` (share of images the model classifies as their label) and, with
        ``latent_values``, the conditioning report.

    Raises:
        ValueError: ``n <= 0``, ``cls`` outside the model's classes, an unknown ``source`` or
            ``image_format``, PNG for a 3D model, a model without a decoder, or an ``out_dir``
            holding other files — each naming the argument and its value.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    trained = model if isinstance(model, TrainedModel) else load_trained_model(model, device=device)
    _check_decoder(trained)
    num_classes = int(trained.config.num_classes)
    if cls is not None and (isinstance(cls, bool) or not isinstance(cls, int) or not 0 <= cls < num_classes):
        raise ValueError(
            f"cls must be None or an int in [0, {num_classes - 1}] (the model's classes), got {cls!r}"
        )
    if len(trained.spatial_size) == 3 and image_format == "png":
        raise ValueError("image_format: 'png' holds 2D images only; use 'nifti' for this 3D model")
    targets = (
        None if latent_values is None else _check_latent_values(latent_values, trained.network.latent_dim)
    )
    out = Path(out_dir)
    settings = {
        "model": trained.source if trained.checkpoint is None else file_sha256(Path(trained.checkpoint)),
        "n": n,
        "cls": cls,
        "latent_values": None if targets is None else {str(k): v for k, v in sorted(targets.items())},
        "source": source,
        "seed": seed,
        "image_format": image_format,
        "n_components": n_components,
    }
    _check_out_dir(out, settings)
    prior = fit_latent_prior(trained, n_components=n_components)
    latents, labels, parents = _draw(prior, n, cls, source, seed)
    z = torch.from_numpy(latents).float()
    report = None
    if targets is not None:
        z, report = condition(trained, z, targets)
    images = decode_samples(trained, z)
    mu, _ = _head_reading(trained, images)
    with torch.no_grad():
        predicted = trained.network.classify(mu).argmax(dim=1).cpu().numpy()
    suffix = ".png" if image_format == "png" else ".nii.gz"
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "latents").mkdir(exist_ok=True)
    records = []
    for i in range(n):
        name = f"synthetic_{i:05d}"
        _write_image(
            out / "images" / (name + suffix), images[i, 0].numpy().astype(np.float64), trained, image_format
        )
        np.save(out / "latents" / (name + ".npy"), z[i].numpy().astype(np.float32))
        record = {
            "id": name,
            "image": f"images/{name}{suffix}",
            "label": int(labels[i]),
            "synthetic": True,
            "latent": f"latents/{name}.npy",
            "mu": [float(v) for v in mu[i].cpu()],
            "source": source,
        }
        if parents[i] is not None:
            record["drawn_from"] = parents[i]
        records.append(record)
    held_out = {i for i in range(n) if i % 5 == 4} if n >= 5 else {n - 1} if n >= 2 else set()
    validation = [r for i, r in enumerate(records) if i in held_out]
    training = [r for i, r in enumerate(records) if i not in held_out]
    datalist = {"training": training} | ({"validation": validation} if validation else {})
    write_text_atomic(out / "datalist.json", json.dumps(datalist, indent=1))
    labelled = labels != UNLABELLED
    summary = {
        "datalist": str(out / "datalist.json"),
        "images": n,
        "labels": {str(c): int((labels == c).sum()) for c in sorted(set(labels.tolist()))},
        "source": source,
        "seed": seed,
        "predicted_as_label": float((predicted[labelled] == labels[labelled]).mean())
        if labelled.any()
        else None,
    }
    if report is not None:
        summary["conditioning"] = {
            k: {"target": v["target"], "mean_abs_gap": v["mean_abs_gap"]} for k, v in report.items()
        }
    stored = {"settings": settings, "summary": {**summary, "datalist": "datalist.json"}}
    write_text_atomic(out / SETTINGS_FILE, json.dumps(stored, indent=1))
    return summary


def fit_prior(
    model: str | PathLike | TrainedModel, max_images: int = 500, n_components: int = 256, device: str = "cpu"
) -> dict[str, Any]:
    """Fit (or reuse) a run's latent prior and say what it holds (the ``glassbox_generation`` bundle's train workflow).

    Args:
        model: a trained run (folder, checkpoint or MLflow reference) or a loaded one.
        max_images: training images the prior is fitted on.
        n_components: PCA directions of each class's Gaussian.
        device: ``"cpu"`` or ``"cuda"``.

    Returns:
        ``model`` (where it was loaded from), ``classes`` (those with a fitted Gaussian),
        ``images`` (training images encoded) and ``latent_size``.

    Raises:
        ValueError: an unusable run or too few readable training images (named).
    """
    trained = model if isinstance(model, TrainedModel) else load_trained_model(model, device=device)
    prior = fit_latent_prior(trained, max_images=max_images, n_components=n_components)
    return {
        "model": str(trained.source),
        "classes": [int(c) for c in prior.classes],
        "images": int(len(prior.labels)),
        "latent_size": int(prior.latent_size),
    }
