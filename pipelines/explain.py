"""``medglass explain``: explanations of one image, or of a whole datalist section, as figures + HTML.

One image (:func:`explain_image`): the prediction and each latent's contribution to it
(weight × value), latent traversals of the most influential dimensions (±3σ of the aggregate
posterior) with difference maps, a latent-shift counterfactual (original, reconstruction,
counterfactual, difference map; how far the latent and the image had to move), an infill
counterfactual (the smallest region found whose replacement by the network's reconstruction
changes the decision, :mod:`evaluation.infill_counterfactuals`), and the attention,
contribution (each position's exact share of the logit margin), counterfactual, infill,
GradCAM and occlusion maps overlaid on the input (with the lesion
mask contour and localisation scores when a mask is given).

A dataset (:func:`pipelines.explain_dataset.explain_dataset`): the same maps on every correctly classified positive
(up to ``max_images``) scored against the true lesion masks — pointing game, IoU of the top-5 %
pixels, deletion/insertion AUC — in one table per method; the flip rates of both
counterfactuals and their median fractions of changed pixels; active units; MIG/DCI/SAP against the phantom's
``factors.csv`` when there is one beside the datalist; a latent × attribute correlation heatmap.

Both write PNG figures, ``report.html`` and ``metrics.json`` (flat name → number) to ``out``
and log them to MLflow as a child run of the model's training run
(:mod:`pipelines.analysis_tracking`).

Example:
    >>> explain_image("runs/demo/classify", "scan.dcm", "runs/explain")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from monai.networks.utils import eval_mode

from evaluation.body_mask import estimate_body_mask, outside_share
from evaluation.counterfactuals import CounterfactualResult, latent_shift_counterfactual
from evaluation.explanation_figures import (
    counterfactual_figure,
    infill_figure,
    overlay_figure,
    traversal_figure,
)
from evaluation.html_report import HtmlReport, write_text_atomic
from evaluation.infill_counterfactuals import InfillCounterfactual, infill_counterfactual
from evaluation.latent_traversal import (
    TraversalResult,
    aggregate_posterior_std,
    kl_per_dimension,
    latent_traversal,
    rank_dimensions,
)
from evaluation.map_scores import deletion_insertion_auc, pointing_game, thresholded_dice, topk_iou
from evaluation.saliency_maps import compute_maps
from pipelines.analysis_tracking import log_analysis
from pipelines.datalists import load_datalist
from pipelines.latent_codes import load_model_input
from pipelines.trained_model import TrainedModel, load_trained_model

__all__ = [
    "ExplainSettings",
    "explain_image",
    "image_explanations",
    "finish_analysis",
    "write_metrics",
    "METHODS",
    "ACTIVE_KL",
]

logger = logging.getLogger("medglass.explain")

METHODS = ("attention", "contribution", "counterfactual", "infill", "gradcam", "occlusion")
ACTIVE_KL = 0.01  # nats: a latent whose KL to the prior is below this carries no information


@dataclass
class ExplainSettings:
    """Knobs of the explanations (defaults suit 64×64 phantoms).

    Args:
        target_class: the class whose probability is explained.
        threshold: decision threshold on that probability.
        traversal_dims: how many latent dimensions to traverse (the most influential).
        traversal_steps: images per traversal row.
        traversal_span: traversal range in σ of the aggregate posterior.
        cf_step_size: latent-shift step (in σ units along the gradient).
        cf_max_steps: maximum latent-shift steps.
        cf_frames: the latent shift walks to its target in this many evenly spaced steps
            (``None``: fixed ``cf_step_size`` steps, as the first version did).
        cf_overshoot: the latent shift's target, in log-odds beyond the threshold (2: the
            counterfactual is decided as firmly as p = 0.12 against 0.5).
        cf_readout: where the latent shift reads the decision, ``"image"`` (default: the network
            on the decoded latent, Cohen et al.) or ``"latent"`` (the head on the latent); see
            :func:`evaluation.counterfactuals.latent_shift_counterfactual`.
        cf_focus: what the latent shift may move on the spatial core: ``"attention"`` (default:
            the grid cells the head reads, weighted by the attention map, so the edit stays where
            the classifier looks), ``"all"`` (the whole latent) or ``"contribution"`` (the cells
            whose share of the margin speaks for the decision).
        infill_window: edge in pixels of the windows the infill counterfactual tries first (a
            second pass tries windows of half that edge inside the region found).
        infill_stride: step between those windows; ``None`` (default): half the window in 2D
            (225 windows at 64 × 64, 1.3–1.6 s per image for ``tiny`` on one core), the whole
            window in 3D (512 windows at 64³ instead of 3,375).
        topk_fraction: fraction of the most salient pixels compared with the mask.
        pointing_tolerance: how far (as a fraction of the image's shortest edge) the most salient
            pixel may lie from the mask and still count as a hit in ``pointing_game``, as in the
            original pointing game (15 px at 224 px; about 4 px at 64). ``pointing_game_strict``
            is always reported too (tolerance 0).
        deletion_steps: steps of the deletion/insertion curves.
        max_images: images explained in a dataset report (correctly classified positives).
        scale_images: training images encoded to estimate σ of the aggregate posterior.
    """

    target_class: int = 1
    threshold: float = 0.5
    traversal_dims: int = 6
    traversal_steps: int = 7
    traversal_span: float = 3.0
    cf_step_size: float = 0.1
    cf_max_steps: int = 80
    cf_frames: int | None = 20
    cf_overshoot: float = 2.0
    cf_readout: str = "image"
    cf_focus: str = "attention"
    infill_window: int = 8
    infill_stride: int | None = None
    topk_fraction: float = 0.05
    pointing_tolerance: float = 15 / 224
    deletion_steps: int = 20
    max_images: int = 100
    scale_images: int = 256

    def __post_init__(self) -> None:
        for name in (
            "traversal_dims",
            "traversal_steps",
            "cf_max_steps",
            "infill_window",
            "deletion_steps",
            "max_images",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        from evaluation.counterfactuals import FOCUSES, READOUTS

        if self.cf_readout not in READOUTS:
            raise ValueError(f"cf_readout must be one of {READOUTS}, got {self.cf_readout!r}")
        if self.cf_focus not in FOCUSES:
            raise ValueError(f"cf_focus must be one of {FOCUSES}, got {self.cf_focus!r}")
        stride = self.infill_stride
        if stride is not None and (isinstance(stride, bool) or not isinstance(stride, int) or stride < 1):
            raise ValueError(f"infill_stride must be None or an int >= 1, got {stride!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        if not 0.0 < self.topk_fraction <= 1.0:
            raise ValueError(f"topk_fraction must be in (0, 1], got {self.topk_fraction!r}")
        if not 0.0 <= self.pointing_tolerance < 1.0:
            raise ValueError(f"pointing_tolerance must be in [0, 1), got {self.pointing_tolerance!r}")
        if not self.traversal_span > 0 or not self.cf_step_size > 0:
            raise ValueError(
                f"traversal_span and cf_step_size must be > 0, got {self.traversal_span!r}, {self.cf_step_size!r}"
            )


LATENT_SCALE_FILE = "latent_scale.json"
"""Cache of σ and KL per dimension beside a run's checkpoint, keyed by the checkpoint's size and time."""


def _scale_cache(trained: TrainedModel) -> tuple[Path | None, dict[str, Any]]:
    """Where the run's latent-scale cache lives, and the stamp that must match for it to be reused."""
    if trained.checkpoint is None or not Path(trained.checkpoint).is_file():
        return None, {}
    stat = Path(trained.checkpoint).stat()
    stamp = {"checkpoint": Path(trained.checkpoint).name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return Path(trained.checkpoint).parent / LATENT_SCALE_FILE, stamp


def _latent_scale(
    trained: TrainedModel, settings: ExplainSettings, progress: bool
) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """σ of the aggregate posterior and KL per dimension, from the model's training images when readable.

    The result is cached in the run folder (:data:`LATENT_SCALE_FILE`) for the checkpoint it was
    computed from, so explaining one image does not encode the training images again; a newer
    checkpoint or another ``scale_images`` recomputes it. A folder that cannot be written is not
    an error (nothing is cached).
    """
    cache, stamp = _scale_cache(trained)
    stamp["scale_images"] = settings.scale_images
    if cache is not None and cache.is_file():
        try:
            stored = json.loads(cache.read_text())
            if stored.get("stamp") == stamp:
                kl = stored.get("kl")
                return (
                    torch.tensor(stored["sigma"]),
                    None if kl is None else torch.tensor(kl),
                    stored["source"],
                )
        except (ValueError, KeyError, TypeError):
            logger.warning("%s: unreadable latent-scale cache, computing it again", cache)
    try:
        records = load_datalist(trained.config.datalist, "training")[: settings.scale_images]
        from pipelines.latent_codes import encode_records

        codes = encode_records(trained, records, progress=progress)
    except (ValueError, OSError) as err:
        logger.warning("training images of the model unavailable (%s): σ = 1 (the prior) for traversals", err)
        dim = trained.network.latent_dim
        return torch.ones(dim), None, "the prior (training images unavailable)"
    mu, logvar = torch.from_numpy(codes.mu).float(), torch.from_numpy(codes.logvar).float()
    sigma, kl, source = (
        aggregate_posterior_std(mu, logvar),
        kl_per_dimension(mu, logvar),
        f"{len(records)} training images",
    )
    if cache is not None:
        payload = {"stamp": stamp, "sigma": sigma.tolist(), "kl": kl.tolist(), "source": source}
        tmp = cache.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(payload))
            tmp.replace(cache)
        except OSError as err:
            logger.warning("%s: latent scale not cached (%s)", cache, err)
    return sigma, kl, source


def _prob(trained: TrainedModel, x: torch.Tensor, target_class: int) -> float:
    with eval_mode(trained.network):
        return float(torch.softmax(trained.network(x)["logits"], dim=1)[0, target_class])


def _score_fn(trained: TrainedModel, target_class: int):
    def score(batch: torch.Tensor) -> torch.Tensor:
        # eval mode whatever the caller left: in training mode the deletion/insertion images
        # would move the batch-norm statistics of the model being explained
        with eval_mode(trained.network):
            return torch.softmax(trained.network(batch)["logits"], dim=1)[:, target_class]

    return score


def traversal_of(
    trained: TrainedModel, x: torch.Tensor, sigma: torch.Tensor, dims: list[int], settings: ExplainSettings
) -> TraversalResult:
    """Traversals of the head's dimensions ``dims`` for one image, on the latent the model's decoder draws."""
    with torch.no_grad(), eval_mode(trained.network):
        enc = trained.network.encode(x)
    return latent_traversal(
        trained.network,
        enc["latent"][0],
        sigma,
        dims=dims,
        steps=settings.traversal_steps,
        span=settings.traversal_span,
        target_class=settings.target_class,
        attention=enc.get("latent_attention"),
    )


def image_explanations(
    trained: TrainedModel,
    x: torch.Tensor,
    settings: ExplainSettings,
    sigma: torch.Tensor,
    mask: torch.Tensor | None,
) -> tuple[CounterfactualResult, InfillCounterfactual, dict[str, torch.Tensor], dict[str, float]]:
    """Both counterfactuals, the saliency maps (:data:`METHODS`) and their scores for one input."""
    cf = latent_shift_counterfactual(
        trained.network,
        x,
        target_class=settings.target_class,
        threshold=settings.threshold,
        step_size=settings.cf_step_size,
        max_steps=settings.cf_max_steps,
        frames=settings.cf_frames,
        overshoot=settings.cf_overshoot,
        readout=settings.cf_readout,
        focus=settings.cf_focus,
        # the spatial core's latent grid is held to N(0, I) cell by cell: unit steps there
        sigma=None if getattr(trained.network, "latent_kind", "vector") == "spatial" else sigma,
    )
    stride = settings.infill_stride
    if stride is None:
        stride = max(1, settings.infill_window // 2) if x.dim() == 4 else settings.infill_window
    infill = infill_counterfactual(
        trained.network,
        x,
        target_class=settings.target_class,
        threshold=settings.threshold,
        window=settings.infill_window,
        stride=stride,
        fine_window=settings.infill_window // 2 or None,
        fine_stride=max(1, stride // 2),
    )
    maps = compute_maps(
        trained.network,
        x,
        target_class=settings.target_class,
        methods=METHODS,
        counterfactual=cf,
        infill=infill,
    )
    scores: dict[str, float] = {
        # a counterfactual drawn outside the anatomy (a corner marker, the frame) is a shortcut
        "counterfactual/outside_body_share": outside_share(cf.diff_map, estimate_body_mask(x[0], 0.1)),
    }
    score_fn = _score_fn(trained, settings.target_class)
    for method, saliency in maps.items():
        curves = deletion_insertion_auc(score_fn, x, saliency, steps=settings.deletion_steps)
        scores[f"{method}/deletion_auc"] = float(curves["deletion_auc"])
        scores[f"{method}/insertion_auc"] = float(curves["insertion_auc"])
        if mask is not None and bool(mask.any()):
            tolerance_px = settings.pointing_tolerance * min(trained.spatial_size)
            scores[f"{method}/pointing_game"] = float(
                pointing_game(saliency, mask, tolerance_px=tolerance_px)
            )
            scores[f"{method}/pointing_game_strict"] = float(pointing_game(saliency, mask))
            scores[f"{method}/topk_iou"] = float(topk_iou(saliency, mask, fraction=settings.topk_fraction))
            scores[f"{method}/dice"] = float(thresholded_dice(saliency, mask))
    return cf, infill, maps, scores


def write_metrics(out: Path, metrics: dict[str, float]) -> Path:
    """``out/metrics.json``: flat name → number (NaN as null), written whole or not at all."""
    clean = {k: (float(v) if math.isfinite(float(v)) else None) for k, v in sorted(metrics.items())}
    return write_text_atomic(out / "metrics.json", json.dumps(clean, indent=1))


def finish_analysis(
    kind: str, trained: TrainedModel, out: Path, metrics: dict[str, float], track: bool, params: dict
) -> str | None:
    if not track:
        return None
    finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
    return log_analysis(
        kind, out, finite, parent_run_id=trained.run_id, tracking_uri=trained.tracking_uri, params=params
    )


def explain_image(
    model: str | PathLike,
    image: str | PathLike,
    out: str | PathLike,
    mask: str | PathLike | None = None,
    settings: ExplainSettings | None = None,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Explain one image: prediction, latent contributions, traversals, counterfactual, maps.

    Args:
        model: run folder, checkpoint or MLflow reference (see :func:`~pipelines.trained_model.load_trained_model`).
        image: the image file (DICOM, NIfTI, PNG, ...).
        out: output folder (created).
        mask: optional lesion mask of the image: adds pointing game and top-k IoU per map.
        settings: explanation knobs.
        track: log the report to MLflow.
        progress: show progress bars.

    Returns:
        ``{"metrics": ..., "report": path, "figures": [paths], "run_id": MLflow run or None}``.

    Raises:
        ValueError: the model, the image or the mask cannot be used (naming it).
    """
    settings = settings or ExplainSettings()
    trained = load_trained_model(model)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    x, m = load_model_input(image, trained.spatial_size, mask=mask, intensity_range=trained.intensity_range)
    sigma, kl, sigma_source = _latent_scale(trained, settings, progress)
    with torch.no_grad():
        outputs = trained.network(x)
    mu = outputs["mu"][0]
    prob = float(torch.softmax(outputs["logits"], dim=1)[0, settings.target_class])
    ranking = rank_dimensions(trained.network, mu, kl, target_class=settings.target_class)
    dims = [r["dim"] for r in ranking[: settings.traversal_dims]]
    traversal = traversal_of(trained, x, sigma, dims, settings)
    cf, infill, maps, scores = image_explanations(trained, x, settings, sigma, m)
    figures = [
        traversal_figure(traversal, out_dir / "traversal.png", ranking=ranking),
        counterfactual_figure(x[0], cf, out_dir / "counterfactual.png"),
        infill_figure(infill, out_dir / "infill_counterfactual.png", mask=m),
        overlay_figure(x[0], maps, out_dir / "maps.png", mask=m),
    ]
    metrics: dict[str, float] = {
        "prob": prob,
        "predicted": float(prob >= settings.threshold),
        "cf_flipped": float(cf.flipped),
        "cf_steps": float(cf.steps),
        "cf_latent_distance": float(cf.latent_distance),
        "cf_latent_distance_sigma": float(cf.latent_distance_sigma),
        "cf_changed_fraction": float(cf.changed_fraction),
        "cf_final_prob": float(cf.probs[-1]),
        "infill_flipped": float(infill.flipped),
        "infill_final_prob": float(infill.final_prob),
        "infill_region_fraction": float(infill.region_fraction),
        "infill_changed_fraction": float(infill.changed_fraction),
    }
    metrics.update({f"{k.replace('/', '_')}": v for k, v in scores.items()})
    for r in ranking:
        metrics[f"contribution_z{r['dim']}"] = float(r["contribution"])
    from evaluation.out_of_distribution import describe as describe_ood
    from pipelines.ood_reference import image_ood, ood_reference

    reference = ood_reference(trained)
    ood = image_ood(trained, x, reference) if reference is not None else None
    if ood is not None:
        metrics.update({f"ood_{k}": float(v) for k, v in ood.items()})

    report = HtmlReport(f"Explanation of {Path(image).name}")
    if ood is None:
        report.paragraph("No out-of-distribution check: the run's training images are unavailable.")
    elif ood["flagged"]:
        warning = describe_ood(ood, Path(image).name)
        logger.warning(warning)
        report.paragraph("Warning: " + warning, css_class="note")
    else:
        report.paragraph(describe_ood(ood, Path(image).name))
    decision = "positive" if prob >= settings.threshold else "negative"
    report.paragraph(
        f"The model ({trained.source}) predicts class {settings.target_class} with probability {prob:.3f} "
        f"(decision: {decision} at threshold {settings.threshold})."
    )
    top = ", ".join(f"z{r['dim']} ({r['contribution']:+.2f})" for r in ranking[:3])
    report.paragraph(f"The latent variables that push the decision most (contribution to the logit): {top}.")
    moved = "flips" if cf.flipped else "does not flip"
    report.paragraph(
        f"Moving the latent along the classifier's gradient {moved} the decision after {cf.steps} steps "
        f"(latent moved {cf.latent_distance_sigma:.2f} σ; {100 * cf.changed_fraction:.1f} % of the pixels changed); "
        f"the difference map shows where the image had to change."
    )
    report.heading("Latent contributions")
    report.table(
        [
            {
                "latent": f"z{r['dim']}",
                "contribution": r["contribution"],
                "KL (nats)": r.get("kl", float("nan")),
                "active": r.get("active", ""),
            }
            for r in ranking
        ],
        caption=f"weight × value of each latent for the class-{settings.target_class} logit; σ from {sigma_source}",
    )
    report.heading("Latent traversals")
    report.figure(
        figures[0],
        "Each row sweeps one latent over ±3σ; the rows below show the change from the reconstruction.",
        root=out_dir,
    )
    report.heading("Counterfactual")
    report.figure(
        figures[1],
        "Original, reconstruction, counterfactual and difference map (latent shift).",
        root=out_dir,
    )
    infill_moved = "changes" if infill.flipped else "does not change"
    report.paragraph(
        f"Replacing {100 * infill.region_fraction:.1f} % of the image (outlined) by the network's own reconstruction "
        f"{infill_moved} the decision (probability {infill.prob:.2f} → {infill.final_prob:.2f}): the region holds "
        f"what the decision rests on, and the difference map shows what would have to be different there."
    )
    report.figure(
        figures[2],
        "Infill counterfactual: input, reconstruction, the input with the region replaced by the reconstruction, difference.",
        root=out_dir,
    )
    report.heading("Saliency maps")
    report.figure(
        figures[3],
        "Attention, contribution (each position's share of the logit margin), latent-shift counterfactual difference, "
        "infill counterfactual difference, GradCAM and occlusion overlaid on the input.",
        root=out_dir,
    )
    if scores:
        rows = []
        for method in METHODS:
            row: dict[str, Any] = {"method": method}
            for key in ("pointing_game", "pointing_game_strict", "topk_iou", "deletion_auc", "insertion_auc"):
                if f"{method}/{key}" in scores:
                    row[key] = scores[f"{method}/{key}"]
            rows.append(row)
        report.table(
            rows,
            caption="Localisation (with a mask) and faithfulness: lower deletion AUC and higher insertion AUC are better.",
        )
    report.paragraph("Research use only, not for diagnosis.", css_class="note")
    report_path = report.write(out_dir / "report.html")
    write_metrics(out_dir, metrics)
    run_id = finish_analysis(
        "explain", trained, out_dir, metrics, track, {"model": trained.source, "image": str(image)}
    )
    return {"metrics": metrics, "report": report_path, "figures": figures, "run_id": run_id}
