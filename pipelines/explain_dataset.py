"""``medglass explain --datalist``: explanations of a datalist section, methods compared against the masks.

The maps of :mod:`pipelines.explain` (attention, contribution, counterfactual difference, GradCAM,
occlusion) on every correctly classified positive (up to ``max_images``), scored against the true lesion
masks — pointing game, IoU of the top-5 % pixels, deletion/insertion AUC — in one table per
method; the counterfactual flip rate and the median fraction of changed pixels; active units;
MIG/DCI/SAP against the phantom's ``factors.csv`` when there is one beside the datalist; a
latent × attribute association heatmap. Writes figures, ``report.html`` and ``metrics.json``
and logs them to MLflow next to the model's run.

Example:
    >>> explain_dataset("runs/demo/classify", "runs/demo/cohort/datalist.json", "runs/explain_all")  # doctest: +SKIP
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from evaluation.counterfactuals import CounterfactualResult
from evaluation.explanation_figures import (
    counterfactual_figure,
    infill_figure,
    overlay_figure,
    traversal_figure,
)
from evaluation.html_report import HtmlReport
from evaluation.infill_counterfactuals import InfillCounterfactual
from evaluation.latent_traversal import (
    aggregate_posterior_std,
    kl_per_dimension,
    rank_dimensions,
)
from pipelines.explain import (
    ACTIVE_KL,
    METHODS,
    ExplainSettings,
    finish_analysis,
    image_explanations,
    traversal_of,
    write_metrics,
)
from pipelines.latent_codes import LatentCodes, encode_datalist, load_model_input
from pipelines.trained_model import load_trained_model

OUTSIDE_BODY_LIMIT = 0.05
"""A counterfactual with more than this share of its difference outside the body is reported as drawn outside the anatomy."""

__all__ = ["explain_dataset"]


def _method_table(per_image: list[dict[str, float]]) -> tuple[list[dict[str, Any]], dict[str, float]]:
    rows, metrics = [], {}
    for method in METHODS:
        row: dict[str, Any] = {"method": method}
        for key in (
            "pointing_game",
            "pointing_game_strict",
            "topk_iou",
            "dice",
            "deletion_auc",
            "insertion_auc",
        ):
            values = [s[f"{method}/{key}"] for s in per_image if f"{method}/{key}" in s]
            if values:
                row[key] = float(np.mean(values))
                metrics[f"{method}_{key}"] = row[key]
        row["images"] = len(per_image)
        rows.append(row)
    return rows, metrics


def _disentanglement(
    codes: LatentCodes, datalist: Path, out_dir: Path, report: HtmlReport
) -> dict[str, float]:
    from evaluation.disentanglement import disentanglement_scores
    from evaluation.generative_factors import factor_table
    from evaluation.latent_attributes import (
        attribute_matrix,
        correlation_heatmap,
        latent_attribute_correlation,
    )

    metrics: dict[str, float] = {}
    factors_csv = datalist.parent / "factors.csv"
    report.heading("Disentanglement")
    if factors_csv.is_file():
        factors, names, continuous = factor_table(factors_csv, codes.ids)
        scores = disentanglement_scores(codes.mu, factors, names, continuous)
        metrics.update(
            {
                f"disentanglement/{k}" if "/" not in k else f"disentanglement/{k}": float(v)
                for k, v in scores.items()
            }
        )
        report.table(
            [
                {"score": k, "value": float(scores[k])}
                for k in ("mig", "sap", "dci_disentanglement", "dci_completeness", "dci_informativeness")
                if k in scores
            ],
            caption=f"Against the generative factors of {factors_csv.name}: {', '.join(names)} (1 = perfectly disentangled).",
        )
    else:
        report.paragraph(
            f"No factors.csv beside {datalist.name}: MIG/DCI/SAP need known generative factors.",
            css_class="note",
        )
    attrs, _ = attribute_matrix(codes.records)
    if attrs:
        matrix, names = latent_attribute_correlation(codes.mu, attrs)
        heatmap = correlation_heatmap(
            matrix,
            names,
            out_dir / "latent_attribute_correlation.png",
            title="latent × attribute association",
        )
        report.figure(
            heatmap,
            "Association of each latent with each attribute (|r| or η); strong cells show which latents encode an attribute.",
            root=out_dir,
        )
        for i, name in enumerate(names):
            metrics[f"max_latent_association/{name}"] = float(np.nanmax(np.abs(matrix[i])))
    return metrics


def explain_dataset(
    model: str | PathLike,
    datalist: str | PathLike,
    out: str | PathLike,
    section: str = "test",
    settings: ExplainSettings | None = None,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Explain a datalist section: method comparison on true positives, counterfactual flips, disentanglement.

    Args:
        model: run folder, checkpoint or MLflow reference.
        datalist: the datalist JSON (records with ``label``, ``mask`` for localisation scores,
            ``attributes``; a ``factors.csv`` beside it adds MIG/DCI/SAP).
        out: output folder (created).
        section: the datalist section.
        settings: explanation knobs (``max_images`` bounds the per-image work).
        track: log the report to MLflow.
        progress: show progress bars.

    Returns:
        ``{"metrics": ..., "report": path, "run_id": MLflow run or None}``.

    Raises:
        ValueError: the model or the datalist cannot be used (naming it).
    """
    settings = settings or ExplainSettings()
    trained = load_trained_model(model)
    datalist = Path(datalist)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    codes = encode_datalist(trained, datalist, section, progress=progress)
    mu_t, logvar_t = torch.from_numpy(codes.mu).float(), torch.from_numpy(codes.logvar).float()
    sigma = aggregate_posterior_std(mu_t, logvar_t)
    kl = kl_per_dimension(mu_t, logvar_t)
    scores = codes.scores
    predicted = scores >= settings.threshold
    positives = np.flatnonzero(codes.labels == settings.target_class)
    true_pos = [i for i in positives if predicted[i]][: settings.max_images]
    metrics: dict[str, float] = {
        "images": float(len(codes)),
        "positives": float(len(positives)),
        "true_positives_explained": float(len(true_pos)),
        "active_units": float((kl > ACTIVE_KL).sum()),
    }
    from pipelines.ood_reference import image_ood, ood_reference

    reference = ood_reference(trained)
    if reference is not None:
        ood_flags = []
        for record in tqdm(codes.records, desc="out-of-distribution", disable=not progress, leave=False):
            x, _ = load_model_input(
                record["image"], trained.spatial_size, intensity_range=trained.intensity_range
            )
            ood_flags.append(image_ood(trained, x, reference)["flagged"])
        metrics["ood_flagged_share"] = float(np.mean(ood_flags)) if ood_flags else 0.0
    labelled = codes.labels >= 0
    if labelled.any():
        metrics["accuracy"] = float(
            (predicted[labelled] == (codes.labels[labelled] == settings.target_class)).mean()
        )

    per_image, flips, changed, distances, reencoded = [], [], [], [], []
    infill_flips, infill_changed, infill_regions = [], [], []
    examples: list[
        tuple[int, torch.Tensor, CounterfactualResult, InfillCounterfactual, dict, torch.Tensor | None]
    ] = []
    for i in tqdm(true_pos, desc="explaining", disable=not progress, leave=False):
        record = codes.records[i]
        x, m = load_model_input(
            record["image"],
            trained.spatial_size,
            mask=record.get("mask"),
            intensity_range=trained.intensity_range,
        )
        cf, infill, maps, image_scores = image_explanations(trained, x, settings, sigma, m)
        infill_flips.append(infill.flipped)
        infill_changed.append(infill.changed_fraction)
        infill_regions.append(infill.region_fraction)
        per_image.append(image_scores)
        flips.append(cf.flipped)
        reencoded.append((cf.reencoded_prob >= settings.threshold) != (cf.probs[0] >= settings.threshold))
        changed.append(cf.changed_fraction)
        distances.append(cf.latent_distance_sigma)
        if len(examples) < 3:
            examples.append((i, x, cf, infill, maps, m))
    rows, table_metrics = _method_table(per_image)
    metrics.update(table_metrics)
    if flips:
        metrics["cf_flip_rate"] = float(np.mean(flips))
        # the decoded counterfactual, encoded again, is also classified across the threshold
        metrics["cf_reencoded_flip_rate"] = float(np.mean(reencoded))
        metrics["cf_median_changed_fraction"] = float(np.median(changed))
        metrics["cf_median_latent_distance_sigma"] = float(np.median(distances))
        outside = [scores["counterfactual/outside_body_share"] for scores in per_image]
        metrics["cf_mean_outside_body_share"] = float(np.mean(outside))
        metrics["cf_outside_body_rate"] = float(np.mean([share > OUTSIDE_BODY_LIMIT for share in outside]))
        metrics["infill_flip_rate"] = float(np.mean(infill_flips))
        metrics["infill_median_changed_fraction"] = float(np.median(infill_changed))
        metrics["infill_median_region_fraction"] = float(np.median(infill_regions))

    report = HtmlReport(f"Explanations over {datalist.name} [{section}]")
    summary = [
        f"{len(codes)} images, {len(positives)} positives; {len(true_pos)} correctly classified positives explained.",
        *(
            [
                f"{100 * metrics['ood_flagged_share']:.1f} % of the images are unlike the model's training images "
                f"(a reconstruction error, unexplained variance or latent distance above its threshold, the "
                f"{100 * reference.quantile:g}th percentile of the training images' scores)."
            ]
            if "ood_flagged_share" in metrics
            else []
        ),
        f"{int(metrics['active_units'])} of {trained.network.latent_dim} latent variables are active (KL > {ACTIVE_KL} nats).",
    ]
    if flips:
        summary.append(
            f"Counterfactuals flip the decision for {100 * metrics['cf_flip_rate']:.0f} % of them; the median counterfactual changes "
            f"{100 * metrics['cf_median_changed_fraction']:.1f} % of the pixels and moves the latent {metrics['cf_median_latent_distance_sigma']:.2f} σ; "
            f"re-encoded, {100 * metrics['cf_reencoded_flip_rate']:.0f} % of the counterfactual images are classified across the threshold too."
        )
        summary.append(
            f"On average {100 * metrics['cf_mean_outside_body_share']:.1f} % of a counterfactual's difference lies outside the body "
            f"(estimated from the image); {100 * metrics['cf_outside_body_rate']:.0f} % of the counterfactuals put more than "
            f"{100 * OUTSIDE_BODY_LIMIT:.0f} % of it there — a decision flipped by drawing outside the anatomy (a corner marker, "
            "the frame) is a shortcut, not a finding."
        )
        summary.append(
            f"Replacing a region by the network's own reconstruction (infill counterfactual) changes the decision for "
            f"{100 * metrics['infill_flip_rate']:.0f} % of them; the median region covers "
            f"{100 * metrics['infill_median_region_fraction']:.1f} % of the image and changes "
            f"{100 * metrics['infill_median_changed_fraction']:.1f} % of the pixels."
        )
    best = max((r for r in rows if "pointing_game" in r), key=lambda r: r["topk_iou"], default=None)
    if best is not None:
        summary.append(
            f"Best localisation of the lesion: {best['method']} (pointing game {best['pointing_game']:.2f}, IoU of the top "
            f"{100 * settings.topk_fraction:.0f} % pixels {best['topk_iou']:.2f})."
        )
    report.bullets(summary)
    report.heading("Saliency methods compared")
    report.table(
        rows,
        columns=[
            "method",
            "pointing_game",
            "pointing_game_strict",
            "topk_iou",
            "dice",
            "deletion_auc",
            "insertion_auc",
            "images",
        ],
        caption="Means over correctly classified positives. Pointing game: the most salient pixel lies in the lesion "
        f"or within {settings.pointing_tolerance * min(trained.spatial_size):.1f} px of it (the original's 15 px at 224 px, "
        "scaled); strict: inside the lesion. Dice: the map thresholded at half its maximum against the lesion mask. "
        "Deletion AUC: lower is more faithful; insertion AUC: higher is more faithful.",
    )
    for n, (i, x, cf, infill, maps, m) in enumerate(examples):
        fig = overlay_figure(x[0], maps, out_dir / f"maps_{n}.png", mask=m)
        report.figure(fig, f"{codes.ids[i]}: maps with the true lesion contour.", root=out_dir)
        if n == 0:
            cf_fig = counterfactual_figure(x[0], cf, out_dir / "counterfactual_0.png")
            report.figure(cf_fig, f"{codes.ids[i]}: counterfactual and difference map.", root=out_dir)
            infill_fig = infill_figure(infill, out_dir / "infill_counterfactual_0.png", mask=m)
            report.figure(
                infill_fig,
                f"{codes.ids[i]}: infill counterfactual (region outlined), difference with the lesion contour.",
                root=out_dir,
            )
            ranking = rank_dimensions(
                trained.network, torch.from_numpy(codes.mu[i]).float(), kl, target_class=settings.target_class
            )
            dims = [r["dim"] for r in ranking[: settings.traversal_dims]]
            traversal = traversal_of(trained, x, sigma, dims, settings)
            tr_fig = traversal_figure(traversal, out_dir / "traversal_0.png", ranking=ranking)
            report.figure(
                tr_fig, f"{codes.ids[i]}: traversals of the most influential latents.", root=out_dir
            )
    metrics.update(_disentanglement(codes, datalist, out_dir, report))
    report.paragraph("Research use only, not for diagnosis.", css_class="note")
    report_path = report.write(out_dir / "report.html")
    write_metrics(out_dir, metrics)
    run_id = finish_analysis(
        "explain",
        trained,
        out_dir,
        metrics,
        track,
        {"model": trained.source, "datalist": str(datalist), "section": section},
    )
    return {"metrics": metrics, "report": report_path, "run_id": run_id}
