"""``medglass evaluate-generation``: how realistic, diverse, new and faithful a set of synthetic images is.

:func:`evaluate_generation` reads a generated datalist (``medglass generate``: records marked
``synthetic``), the model's held-out real images (its datalist's ``test`` section) and training
images, takes features from the model's **own encoder** (the encoder's globally pooled last
stage beside the latent mean ``mu``; no ImageNet network is downloaded), and computes
:func:`evaluation.generation_metrics.quality_metrics`: FID with its real-vs-real floor, MMD,
precision/recall/density/coverage, MS-SSIM diversity, memorisation against the training images
and a real-vs-synthetic classifier's AUC. Class fidelity: the share of each class's synthetic
images the model itself classifies as that class. Factor fidelity, when the model's datalist
carries lesion masks (phantoms; :mod:`evaluation.factor_fidelity`): a small detector fitted on
the training images' ground-truth masks and calibrated on the validation images reads lesion
presence and area back from the synthetic images, and linear probes on the encoder features
read the cohort's generative factors (``factors.csv`` beside the datalist) back from them, each
compared with real held-out images of the same classes. Writes ``metrics.json``,
``report.html`` (a sample grid, the synthetic images nearest to a training image beside it, the
metrics table) and logs them to MLflow as a child run of the model's training run.
"""

from __future__ import annotations

import json
import logging
import math
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.networks.utils import eval_mode
from tqdm.auto import tqdm

from evaluation.factor_fidelity import (
    calibrate_area_threshold,
    factor_readback,
    lesion_fidelity,
    predicted_lesion_area,
    train_lesion_detector,
)
from evaluation.generation_metrics import memorisation, quality_metrics
from evaluation.generative_factors import factor_table
from evaluation.html_report import HtmlReport, write_text_atomic
from networks.keys import Keys
from pipelines.analysis_tracking import log_analysis
from pipelines.datalists import load_datalist
from pipelines.latent_codes import load_model_input
from pipelines.trained_model import TrainedModel, load_trained_model

__all__ = ["evaluate_generation", "encoder_features", "factor_fidelity_metrics"]

logger = logging.getLogger("medglass.generation")

FIDELITY_MAX_TRAIN = 400
"""Most training images the lesion detector of the factor-fidelity part is fitted on (half with a lesion)."""
FIDELITY_MIN_STEPS = 150
"""Fewest optimiser steps of that detector (more epochs over a small training set)."""


def encoder_features(trained: TrainedModel, images: torch.Tensor, batch: int = 64) -> np.ndarray:
    """Features of model inputs from the model's own encoder: pooled last stage and latent mean.

    Args:
        trained: the loaded run.
        images: ``(N, C, *spatial)`` model inputs.
        batch: images per forward pass.

    Returns:
        ``(N, encoder channels + latent_dim)`` float64 features.
    """
    net = trained.network
    parts = []
    with torch.no_grad(), eval_mode(net):
        for start in range(0, images.shape[0], batch):
            x = images[start : start + batch].to(trained.device).float()
            pooled = net.encoder(x).flatten(2).mean(dim=2)
            parts.append(torch.cat([pooled, net.encode(x)["mu"].flatten(1)], dim=1).double().cpu())
    return torch.cat(parts).numpy()


def _load(trained: TrainedModel, paths: list[str], what: str, progress: bool) -> torch.Tensor:
    images = []
    for path in tqdm(paths, desc=f"loading {what}", disable=not progress):
        x, _ = load_model_input(path, trained.spatial_size, intensity_range=trained.intensity_range)
        images.append(x.clamp(0.0, 1.0))  # the metrics take [0, 1] images; scaling may overshoot
    if not images:
        raise ValueError(f"no {what} to compare")
    return torch.cat(images)


def _with_masks(trained: TrainedModel, records: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (clamped to [0, 1]) and boolean masks ``(N, 1, *spatial)`` of records with a ``mask``."""
    images, masks = [], []
    for r in records:
        x, m = load_model_input(
            r[Keys.IMAGE], trained.spatial_size, mask=r[Keys.MASK], intensity_range=trained.intensity_range
        )
        images.append(x.clamp(0.0, 1.0))
        masks.append(m[None, None])
    return torch.cat(images), torch.cat(masks)


def _balanced(
    images: torch.Tensor, masks: torch.Tensor, most: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """At most ``most`` images, as many with a lesion as without where the set allows (a rare
    finding would otherwise teach the detector to mark nothing)."""
    rng = np.random.default_rng(seed)
    has = masks.flatten(1).any(dim=1).numpy()
    pos, neg = np.flatnonzero(has), np.flatnonzero(~has)
    n_pos = min(len(pos), most // 2)
    n_neg = min(len(neg), most - n_pos)
    keep = np.sort(np.concatenate([rng.permutation(pos)[:n_pos], rng.permutation(neg)[:n_neg]]))
    return images[keep], masks[keep]


def factor_fidelity_metrics(
    trained: TrainedModel,
    train_records: list[dict[str, Any]],
    real_records: list[dict[str, Any]],
    fake: torch.Tensor,
    fake_labels: np.ndarray,
    features: tuple[np.ndarray, np.ndarray, np.ndarray],
    seed: int = 0,
) -> dict[str, float]:
    """Factor fidelity of synthetic images on a cohort with ground truth (:mod:`evaluation.factor_fidelity`).

    Args:
        trained: the model (its datalist's ``validation`` section calibrates the detector; a
            ``factors.csv`` beside the datalist gives the generative factors).
        train_records: real training records (``mask`` on every one, else nothing is computed).
        real_records: real held-out records (with ``mask``).
        fake: the synthetic images ``(S, 1, *spatial)``.
        fake_labels: the class each was drawn for.
        features: encoder features of ``(train_records, real_records, fake)``, rows aligned.
        seed: the detector's seed.

    Returns:
        Lesion presence/area metrics (:func:`~evaluation.factor_fidelity.lesion_fidelity`) and
        per-factor read-back metrics (:func:`~evaluation.factor_fidelity.factor_readback`);
        empty when the records carry no masks. Parts that cannot be computed (no validation
        section with both kinds of image, no ``factors.csv``, ids missing from it) are left out
        with a log message.
    """
    records = train_records + real_records
    if not records or not all(r.get(Keys.MASK) for r in records):
        return {}
    train_f, real_f, fake_f = features
    out: dict[str, float] = {}
    val_records = [
        r for r in load_datalist(trained.config.datalist, "validation", required=False) if r.get(Keys.MASK)
    ]
    fit_x, fit_m = _balanced(*_with_masks(trained, train_records), FIDELITY_MAX_TRAIN, seed)
    val_x, val_m = _with_masks(trained, val_records) if val_records else (None, None)
    present = val_m.flatten(1).any(dim=1).numpy() if val_m is not None else np.zeros(0, bool)
    if fit_m.any() and present.any() and not present.all():
        epochs = max(6, math.ceil(FIDELITY_MIN_STEPS / math.ceil(len(fit_x) / 16)))
        detector = train_lesion_detector(fit_x, fit_m, epochs=epochs, batch_size=16, seed=seed)
        threshold = calibrate_area_threshold(predicted_lesion_area(detector, val_x), present)
        real_x, real_m = _with_masks(trained, real_records)
        real_labels = np.array([int(r.get(Keys.LABEL, -1)) for r in real_records])
        out.update(
            lesion_fidelity(
                detector,
                threshold,
                real_x,
                real_m.flatten(1).any(dim=1).numpy(),
                real_labels,
                fake,
                fake_labels,
            )
        )
    else:
        logger.info(
            "factor fidelity: no lesion read-back (needs masks with and without lesions in validation)"
        )
    factors = Path(trained.config.datalist).parent / "factors.csv"
    try:
        values, names, continuous = factor_table(factors, [str(r.get("id")) for r in records])
    except ValueError as err:
        logger.info("factor fidelity: no factor read-back (%s)", err)
        return out
    real_labels = np.array([int(r.get(Keys.LABEL, -1)) for r in real_records])
    train_v, real_v = values[: len(train_records)], values[len(train_records) :]
    out.update(
        factor_readback(train_f, train_v, names, continuous, real_f, real_v, real_labels, fake_f, fake_labels)
    )
    return out


def _generated_records(datalist: Path) -> list[dict[str, Any]]:
    data = json.loads(datalist.read_text()) if datalist.is_file() else None
    if not isinstance(data, dict):
        raise ValueError(f"generated datalist {datalist}: not a readable datalist JSON file")
    records = []
    for section in ("training", "validation", "test"):
        if section in data:
            records += load_datalist(datalist, section)
    if not records:
        raise ValueError(f"generated datalist {datalist}: no records")
    if not all(r.get("synthetic") is True for r in records):
        raise ValueError(
            f"generated datalist {datalist}: every record must be marked synthetic (written by medglass generate)"
        )
    return records


def _grid(images: torch.Tensor, path: Path, title: str, columns: int = 8) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(len(images), 4 * columns)
    rows = max(1, math.ceil(n / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.4 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            image = images[i, 0].numpy()
            image = image[..., image.shape[-1] // 2] if image.ndim == 3 else image
            ax.imshow(image.T, cmap="gray", vmin=0, vmax=1)  # (x, y) -> rows are y
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _pairs(fake: torch.Tensor, train: torch.Tensor, memo: dict[str, Any], path: Path, k: int = 6) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(-np.asarray(memo["nearest_ssim"]))[:k]
    fig, axes = plt.subplots(2, len(order), figsize=(1.6 * len(order), 3.4), squeeze=False)
    for j, i in enumerate(order):
        for row, image in enumerate((fake[i, 0], train[int(memo["nearest_index_ssim"][i]), 0])):
            array = image.numpy()
            array = array[..., array.shape[-1] // 2] if array.ndim == 3 else array
            axes[row, j].imshow(array.T, cmap="gray", vmin=0, vmax=1)
            axes[row, j].axis("off")
        axes[0, j].set_title(f"SSIM {memo['nearest_ssim'][i]:.2f}", fontsize=8)
    axes[0, 0].text(
        -0.1, 0.5, "synthetic", transform=axes[0, 0].transAxes, rotation=90, va="center", ha="right"
    )
    axes[1, 0].text(
        -0.1, 0.5, "nearest training", transform=axes[1, 0].transAxes, rotation=90, va="center", ha="right"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _share(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.0f} %"


def evaluate_generation(
    model: str | PathLike,
    generated: str | PathLike,
    out_dir: str | PathLike,
    real_section: str = "test",
    max_images: int = 1000,
    track: bool = True,
    progress: bool = True,
    seed: int = 0,
    factor_fidelity: bool = True,
) -> dict[str, Any]:
    """Quality report of a generated datalist against the model's real images.

    Args:
        model: the model that generated the images (run folder, checkpoint or MLflow reference).
        generated: the datalist ``medglass generate`` wrote.
        out_dir: folder of ``metrics.json``, ``report.html`` and the figures.
        real_section: the section of the model's datalist holding held-out real images.
        max_images: at most this many images of each set (real, training, synthetic).
        track: log to MLflow as a child run of the model's training run.
        progress: progress bars.
        seed: seed of the random pairings and splits.
        factor_fidelity: add :func:`factor_fidelity_metrics` when the model's datalist has masks.

    Returns:
        ``metrics`` (flat numbers: :func:`~evaluation.generation_metrics.quality_metrics` plus
        ``class_fidelity_<c>`` and, with masks, the factor-fidelity metrics), ``report`` (path)
        and ``run_id``.

    Raises:
        ValueError: an unusable model or datalist (named), records not marked synthetic, or too
            few images.
    """
    if not isinstance(max_images, int) or max_images < 4:
        raise ValueError(f"max_images must be an int >= 4, got {max_images!r}")
    trained = load_trained_model(model)
    records = _generated_records(Path(generated))[:max_images]
    real_records = load_datalist(trained.config.datalist, real_section)[:max_images]
    train_records = load_datalist(trained.config.datalist, "training")[:max_images]
    real_paths = [r[Keys.IMAGE] for r in real_records]
    train_paths = [r[Keys.IMAGE] for r in train_records]
    fake = _load(trained, [r[Keys.IMAGE] for r in records], "synthetic images", progress)
    real = _load(trained, real_paths, f"real {real_section} images", progress)
    train = _load(trained, train_paths, "training images", progress)
    fake_f, real_f, train_f = (encoder_features(trained, t) for t in (fake, real, train))
    metrics = quality_metrics(
        real.numpy(),
        real_f,
        fake.numpy(),
        fake_f,
        train_images=train.numpy(),
        train_features=train_f,
        seed=seed,
    )
    metrics = {k: float(v) for k, v in metrics.items()}
    with torch.no_grad(), eval_mode(trained.network):
        logits = torch.cat(
            [trained.network(fake[i : i + 64].to(trained.device))["logits"] for i in range(0, len(fake), 64)]
        )
    predicted = logits.argmax(dim=1).cpu().numpy()
    labels = np.array([int(r.get(Keys.LABEL, -1)) for r in records])
    for cls in sorted(set(labels.tolist()) - {-1}):
        metrics[f"class_fidelity_{cls}"] = float(np.mean(predicted[labels == cls] == cls))
    if factor_fidelity:
        metrics.update(
            factor_fidelity_metrics(
                trained, train_records, real_records, fake, labels, (train_f, real_f, fake_f), seed=seed
            )
        )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    memo = memorisation(train.numpy(), train_f, fake.numpy(), fake_f)
    report = HtmlReport(f"Generation quality of {Path(generated).name}")
    report.paragraph(
        f"{len(fake)} synthetic images against {len(real)} held-out real images ({real_section}) and {len(train)} "
        f"training images of {trained.source}; features from the model's own encoder."
    )
    report.paragraph(
        f"FID {metrics['fid']:.3g} beside the real-vs-real floor {metrics['fid_floor']:.3g} (two halves of the real "
        f"images); precision {metrics['precision']:.2f} (synthetic images inside the real manifold), recall "
        f"{metrics['recall']:.2f} (real images covered); a linear probe tells real from synthetic with AUC "
        f"{metrics['auc_real_vs_fake']:.2f} (0.5: indistinguishable). Memorisation: "
        f"{100 * metrics['memorisation_share_ssim']:.1f} % of the synthetic images are closer (SSIM) to a training "
        f"image than the closest two training images are to each other ({100 * metrics['memorisation_expected_share_if_independent']:.1f} % "
        f"expected by chance): {'FLAGGED' if metrics['memorisation_flagged'] else 'not flagged'}."
    )
    figures = out / "figures"
    if "lesion_present_share_class1" in metrics or "lesion_absent_share_class0" in metrics:
        report.paragraph(
            f"Factor fidelity (the cohort's ground truth): a lesion detector fitted on the training images' masks "
            f"(balanced accuracy {metrics['detector_balanced_accuracy']:.2f} on the real {real_section} images) reads "
            f"a lesion in {_share(metrics.get('lesion_present_share_class1'))} of the class-1 synthetic images and "
            f"none in {_share(metrics.get('lesion_absent_share_class0'))} of the class-0 ones; the factor_* rows "
            "compare the cohort's factors read off synthetic and real images by linear probes (KS, Wasserstein or "
            "total variation; 0 = same distribution)."
        )
    report.figure(_grid(fake, figures / "synthetic.png", "synthetic"), "synthetic images", root=out)
    report.figure(_grid(real, figures / "real.png", f"real ({real_section})"), "real images", root=out)
    report.figure(
        _pairs(fake, train, memo, figures / "nearest.png"),
        "the synthetic images most similar to a training image (top) and that image (bottom)",
        root=out,
    )
    report.table([{"metric": k, "value": v} for k, v in sorted(metrics.items())], caption="all metrics")
    report.paragraph("Research use only, not for diagnosis.", css_class="note")
    report_path = report.write(out / "report.html")
    write_text_atomic(
        out / "metrics.json",
        json.dumps({k: (v if math.isfinite(v) else None) for k, v in sorted(metrics.items())}, indent=1),
    )
    run_id = None
    if track:
        run_id = log_analysis(
            "generation",
            out,
            {k: v for k, v in metrics.items() if math.isfinite(v)},
            parent_run_id=trained.run_id,
            tracking_uri=trained.tracking_uri,
            params={"model": trained.source, "generated": str(generated), "real_section": real_section},
        )
    return {"metrics": metrics, "report": report_path, "run_id": run_id}
