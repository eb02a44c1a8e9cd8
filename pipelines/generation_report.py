"""``medglass evaluate-generation``: how realistic, diverse, new and faithful a set of synthetic images is.

:func:`evaluate_generation` reads a generated datalist (``medglass generate``: records marked
``synthetic``), the model's held-out real images (its datalist's ``test`` section) and training
images, takes features from the model's **own encoder** (the encoder's globally pooled last
stage beside the latent mean ``mu``; no ImageNet network is downloaded), and computes
:func:`evaluation.generation_metrics.quality_metrics`: FID with its real-vs-real floor, MMD,
precision/recall/density/coverage, MS-SSIM diversity, memorisation against the training images
and a real-vs-synthetic classifier's AUC. Class fidelity: the share of each class's synthetic
images the model itself classifies as that class. Writes ``metrics.json``, ``report.html`` (a
sample grid, the synthetic images nearest to a training image beside it, the metrics table) and
logs them to MLflow as a child run of the model's training run.
"""

from __future__ import annotations

import json
import math
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.networks.utils import eval_mode
from tqdm.auto import tqdm

from evaluation.generation_metrics import memorisation, quality_metrics
from evaluation.html_report import HtmlReport, write_text_atomic
from networks.keys import Keys
from pipelines.analysis_tracking import log_analysis
from pipelines.datalists import load_datalist
from pipelines.latent_codes import load_model_input
from pipelines.trained_model import TrainedModel, load_trained_model

__all__ = ["evaluate_generation", "encoder_features"]


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


def evaluate_generation(
    model: str | PathLike,
    generated: str | PathLike,
    out_dir: str | PathLike,
    real_section: str = "test",
    max_images: int = 1000,
    track: bool = True,
    progress: bool = True,
    seed: int = 0,
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

    Returns:
        ``metrics`` (flat numbers: :func:`~evaluation.generation_metrics.quality_metrics` plus
        ``class_fidelity_<c>``), ``report`` (path) and ``run_id``.

    Raises:
        ValueError: an unusable model or datalist (named), records not marked synthetic, or too
            few images.
    """
    if not isinstance(max_images, int) or max_images < 4:
        raise ValueError(f"max_images must be an int >= 4, got {max_images!r}")
    trained = load_trained_model(model)
    records = _generated_records(Path(generated))[:max_images]
    real_paths = [r[Keys.IMAGE] for r in load_datalist(trained.config.datalist, real_section)][:max_images]
    train_paths = [r[Keys.IMAGE] for r in load_datalist(trained.config.datalist, "training")][:max_images]
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
