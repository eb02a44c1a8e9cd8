"""``medglass mitigate``: erase an attribute from the latent space (LEACE) without retraining.

A LEACE eraser (:mod:`evaluation.concept_erasure`) is fitted on the latent means of a
calibration section with the attribute's labels and saved as a small file (``eraser.pt``); at
inference it sits between the encoder and the classifier head (``ErasedClassifier``, or the
classification bundle's ``inference`` config with ``--eraser``). No weight of the trained network
changes: the network's ``state_dict`` hash and the checkpoint file's hash are compared before and
after, and the run fails loudly if they differ.

For every evaluation section (``test`` and, when present, the shifted-shortcut section
``test_shifted``) the report compares the model before and after erasure — AUC, accuracy,
worst-group accuracy over (label × attribute) cells, the subgroup gaps, and the probe AUC of the
attribute from the (erased) latent — with Deep Feature Reweighting (Kirichenko et al. 2022: the
last layer retrained on group-balanced calibration latents, here the erased ones) as the stronger
reference that *does* retrain something.

Example:
    >>> result = mitigate("runs/model", "marker", "cohort/datalist.json", "runs/mitigate")  # doctest: +SKIP
    >>> result["eraser"]  # doctest: +SKIP
    PosixPath('runs/mitigate/eraser.pt')
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from evaluation.attribute_overlap import attribute_overlap
from evaluation.bias_figures import before_after_figure
from evaluation.concept_erasure import dfr_head, dfr_scores, fit_eraser, state_dict_sha256
from evaluation.html_report import HtmlReport, write_text_atomic
from evaluation.latent_leakage import probe_auc
from evaluation.subgroup_audit import encode_attribute, subgroup_metrics
from phantoms.shortcut_cohort import SHIFTED_SECTION
from pipelines.analysis_tracking import log_analysis
from pipelines.bias_audit import erased_scores, write_metrics
from pipelines.datalists import load_datalist
from pipelines.latent_codes import LatentCodes, encode_datalist, encode_records
from pipelines.trained_model import load_trained_model

__all__ = ["mitigate", "balanced_threshold", "file_sha256", "within_label_probe_auc", "VARIANTS"]

logger = logging.getLogger("medglass.mitigate")

VARIANTS = ("before", "erased", "erased_recalibrated", "dfr")
"""The model as trained; with the attribute erased from its latent; the same with the decision
threshold recalibrated on the calibration images; DFR (last layer retrained) on the erased latent."""


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sections(datalist: Path, requested: list[str] | None) -> list[str]:
    data = json.loads(datalist.read_text()) if datalist.is_file() else {}
    if requested:
        return list(requested)
    return [s for s in ("test", SHIFTED_SECTION) if isinstance(data.get(s), list) and data[s]]


def balanced_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The decision threshold on ``scores`` that maximises balanced accuracy (mean of TPR and TNR).

    Erasing a shortcut leaves the head's bias tuned to a latent that no longer exists, so its
    decisions at 0.5 can be all one class even when the ranking (AUC) recovered. One number fitted
    on the calibration images restores usable decisions without touching a weight.

    Args:
        labels: ``(N,)`` 0/1 labels (both present).
        scores: ``(N,)`` positive-class probabilities.

    Returns:
        The threshold (a score value; a sample is positive when ``score >= threshold``).

    Raises:
        ValueError: fewer than two classes.

    Example:
        >>> balanced_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.9]))
        0.3
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if len(np.unique(y)) != 2:
        raise ValueError(f"labels: a balanced threshold needs both classes, got {sorted(set(y.tolist()))}")
    candidates = np.unique(s)
    positive = s[None, :] >= candidates[:, None]
    tpr = positive[:, y == 1].mean(axis=1)
    tnr = (~positive[:, y == 0]).mean(axis=1)
    return float(candidates[int(np.argmax(tpr + tnr))])


def _variant_metrics(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, attribute: str, threshold: float = 0.5
) -> dict[str, float]:
    known = encode_attribute(groups).valid
    y, s, g = labels[known], scores[known], groups[known]
    cells = np.array([f"label {int(a)}, {attribute} {b}" for a, b in zip(y, g, strict=True)], dtype=object)
    by_cell = subgroup_metrics(y, s, cells, attribute="cell", threshold=threshold)
    by_attr = subgroup_metrics(y, s, g, attribute=attribute, threshold=threshold)
    return {
        "auc": float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else float("nan"),
        "accuracy": float(np.mean((s >= threshold) == y)),
        "threshold": float(threshold),
        "worst_group_accuracy": by_cell.gaps["worst_group_accuracy"],
        "worst_group": by_cell.worst_group,
        "equalized_odds_difference": by_attr.gaps["equalized_odds_difference"],
        "tpr_gap": by_attr.gaps["tpr_gap"],
    }


def within_label_probe_auc(mu: np.ndarray, groups: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Mean over labels of the attribute's probe AUC among images of that label.

    The leakage a shortcut leaves *beyond* the disease: where the attribute agrees with the label,
    an unconditional probe also reads the attribute off the disease features. Labels whose images
    hold fewer than 5 of either attribute value are skipped (NaN when none is left).
    """
    values = []
    for value in np.unique(labels):
        rows = labels == value
        coded = encode_attribute(groups[rows])
        counts = np.bincount(coded.codes, minlength=len(coded.categories))
        if len(coded.categories) >= 2 and counts.min() >= 5:
            values.append(probe_auc(mu[rows], groups[rows], seed=seed).auc)
    return float(np.mean(values)) if values else float("nan")


def _attach_to_registered_model(trained: Any, eraser_path: Path, attribute: str) -> str | None:
    """Log the eraser into the model's training run and tag its registered versions; guarded."""
    if trained.run_id is None:
        return None
    try:
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=trained.tracking_uri)
        client.log_artifact(trained.run_id, str(eraser_path), artifact_path=f"erasers/{attribute}")
        uri = f"runs:/{trained.run_id}/erasers/{attribute}/{eraser_path.name}"
        for version in client.search_model_versions(f"run_id='{trained.run_id}'"):
            client.set_model_version_tag(version.name, version.version, f"medglass.eraser.{attribute}", uri)
        return uri
    except Exception as err:  # noqa: BLE001 - the eraser file is already written
        logger.warning(
            "could not attach the eraser to the model's MLflow run: %s", " ".join(str(err).split())[:300]
        )
        return None


def mitigate(
    model: str | PathLike,
    attribute: str,
    datalist: str | PathLike,
    out: str | PathLike,
    calibration_section: str | list[str] = "validation",
    sections: list[str] | None = None,
    seed: int = 0,
    conditional: bool = False,
    per_label: bool = False,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit and save a LEACE eraser of ``attribute``; report before/after/DFR on evaluation sections.

    Args:
        model: run folder, checkpoint or MLflow reference.
        attribute: the attribute to erase (a key of the records' ``attributes``).
        datalist: datalist JSON with ``label`` and ``attributes`` per record.
        out: output folder (created): ``eraser.pt``, ``report.html``, ``metrics.json``, figures.
        calibration_section: the section(s) the eraser and the DFR head are fitted on (a list:
            their union). Use images the network was not trained on: its latent codes of its
            own training images are fitted, not representative, and an eraser fitted on them
            leaves more of the attribute for a probe to read on new images. Including
            ``"training"`` logs a warning.
        sections: sections evaluated (default: ``test`` and ``test_shifted`` when present).
        seed: seed of the probes and DFR.
        conditional: erase the attribute *within each label* (the concept is centred per label
            before fitting; see :func:`~evaluation.concept_erasure.fit_eraser`), so that a
            shortcut attribute correlated with the disease in the calibration data is removed
            without removing the disease information it shares. Default ``False``: plain LEACE,
            whose guarantee (no linear probe recovers the attribute) holds on the calibration
            distribution; ``bench/bench_bias.py`` compares both.
        per_label: with ``conditional``, fit the erasure separately inside each label
            (:func:`~evaluation.concept_erasure.fit_eraser` with ``per_stratum``): the groups
            then have equal mean codes within every label, not only on average, at a larger cost
            in disease information (see ``fit_eraser``). Implies ``conditional``.
        track: log to MLflow (and attach the eraser to the model's run and registered versions).
        progress: show progress bars.

    Returns:
        ``{"metrics", "summary": [sentences], "eraser": path, "report": path, "run_id"}``.

    Raises:
        ValueError: unusable model/datalist/section, an attribute absent from the records or with
            fewer than two groups in the calibration section.
        RuntimeError: the network's weights changed (never expected; the check guards the promise).
    """
    trained = load_trained_model(model)
    datalist = Path(datalist)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_before = state_dict_sha256(trained.network)
    checkpoint_before = file_sha256(trained.checkpoint) if trained.checkpoint is not None else None
    calib_sections = (
        [calibration_section] if isinstance(calibration_section, str) else list(calibration_section)
    )
    if not calib_sections:
        raise ValueError("calibration_section: expected at least one datalist section, got none")
    calibration_section = "+".join(calib_sections)
    if "training" in calib_sections:
        logger.warning(
            "calibration on the 'training' section: the network was fitted on these images, so their "
            "latent codes are not representative of new ones and the eraser may not erase %r on new "
            "images; prefer held-out sections (e.g. validation)",
            attribute,
        )
    calib_records = [r for section in calib_sections for r in load_datalist(datalist, section)]
    calib = encode_records(trained, calib_records, progress=progress)
    if not any(attribute in a for a in calib.attributes):
        present = sorted({k for a in calib.attributes for k in a})
        raise ValueError(
            f"attribute {attribute!r} is not in the {calibration_section!r} records (present: {present})"
        )
    calib_groups = np.asarray(calib.attribute(attribute), dtype=object)
    conditional = conditional or per_label
    calib_labels = np.where(calib.labels >= 0, calib.labels, -1) if conditional else None
    eraser = fit_eraser(
        calib.mu, calib_groups, attribute=attribute, strata=calib_labels, per_stratum=per_label
    )
    with torch.no_grad():
        calib_erased = eraser(torch.from_numpy(calib.mu).double()).numpy()
    labelled = calib.labels >= 0
    threshold = balanced_threshold(
        calib.labels[labelled], erased_scores(trained, eraser, calib.mu[labelled])[0]
    )
    eraser_json = json.dumps(
        {
            **eraser.metadata(),
            "conditional_on_label": conditional,
            "per_label": per_label,
            "calibration_sections": calib_sections,
            "decision_threshold": threshold,
            "decision_threshold_note": "positive when P(class 1) >= threshold after erasure "
            "(maximises balanced accuracy on the calibration images)",
        },
        indent=1,
    )
    dfr = dfr_head(calib_erased[labelled], calib.labels[labelled], groups=calib_groups[labelled], seed=seed)

    metrics: dict[str, float] = {"calibration_images": float(len(calib))}
    overlap_note = _overlap(
        calib.mu[labelled], calib_groups[labelled], calib.labels[labelled], attribute, metrics
    )
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for section in _sections(datalist, sections):
        codes: LatentCodes = encode_datalist(trained, datalist, section, progress=progress)
        keep = codes.labels >= 0
        groups = np.asarray(codes.attribute(attribute), dtype=object)[keep]
        labels = codes.labels[keep]
        mu = codes.mu[keep]
        erased_probs, _ = erased_scores(trained, eraser, mu)
        with torch.no_grad():
            mu_erased = eraser(torch.from_numpy(mu).double()).numpy()
        scores = {"before": codes.scores[keep], "erased": erased_probs, "dfr": dfr_scores(dfr, mu_erased)}
        rows = {name: _variant_metrics(labels, s, groups, attribute) for name, s in scores.items()}
        rows["erased_recalibrated"] = _variant_metrics(
            labels, erased_probs, groups, attribute, threshold=threshold
        )
        rows["before"]["probe_auc"] = probe_auc(mu, groups, seed=seed).auc
        rows["erased"]["probe_auc"] = probe_auc(mu_erased, groups, seed=seed).auc
        rows["dfr"]["probe_auc"] = rows["erased"]["probe_auc"]
        rows["before"]["probe_auc_within_label"] = within_label_probe_auc(mu, groups, labels, seed)
        rows["erased"]["probe_auc_within_label"] = within_label_probe_auc(mu_erased, groups, labels, seed)
        rows["dfr"]["probe_auc_within_label"] = rows["erased"]["probe_auc_within_label"]
        for key in ("probe_auc", "probe_auc_within_label"):
            rows["erased_recalibrated"][key] = rows["erased"][key]
        rows = {name: rows[name] for name in VARIANTS}
        tables[section] = rows
        for name, row in rows.items():
            for key, value in row.items():
                if isinstance(value, float):
                    metrics[f"{section}/{name}/{key}"] = value

    weights_after = state_dict_sha256(trained.network)
    checkpoint_after = file_sha256(trained.checkpoint) if trained.checkpoint is not None else None
    if weights_after != weights_before or checkpoint_after != checkpoint_before:
        raise RuntimeError(f"model {trained.source}: weights changed during mitigation (this is a bug)")
    metrics["weights_unchanged"] = 1.0

    # written once every section is evaluated: a failed run leaves no eraser without its report
    eraser_path = eraser.save(out_dir / "eraser.pt")
    write_text_atomic(out_dir / "eraser.json", eraser_json)
    summary = _summary(attribute, tables)
    if overlap_note:  # before the closing "no weight changed" sentence
        summary.insert(len(summary) - 1, overlap_note)
    report_path = _write_report(
        out_dir,
        trained.source,
        attribute,
        calibration_section,
        tables,
        summary,
        weights_before,
        eraser_path,
        "within every label "
        if per_label
        else "that the disease label does not explain "
        if conditional
        else "",
    )
    write_metrics(out_dir, metrics)
    run_id = None
    if track:
        finite = {k.replace("/", "_"): v for k, v in metrics.items() if math.isfinite(v)}
        run_id = log_analysis(
            "mitigate",
            out_dir,
            finite,
            parent_run_id=trained.run_id,
            tracking_uri=trained.tracking_uri,
            params={
                "model": trained.source,
                "attribute": attribute,
                "datalist": str(datalist),
                "calibration_section": calibration_section,
            },
        )
        _attach_to_registered_model(trained, eraser_path, attribute)
    return {
        "metrics": metrics,
        "summary": summary,
        "eraser": eraser_path,
        "report": report_path,
        "run_id": run_id,
    }


def _overlap(
    mu: np.ndarray, groups: np.ndarray, labels: np.ndarray, attribute: str, metrics: dict[str, float]
) -> str | None:
    """Add the calibration codes' :func:`attribute_overlap` to ``metrics``; a sentence when it matters.

    Only for a two-group attribute and two labels with every (label, group) cell filled; ``None``
    otherwise, or when the attribute's effect hardly depends on the label.
    """
    try:
        overlap = attribute_overlap(mu, groups, labels)
    except ValueError:
        return None
    metrics["calibration/effect_cosine_between_labels"] = overlap.effect_cosine
    metrics["calibration/effect_difference_disease_cosine"] = overlap.difference_disease_cosine
    metrics["calibration/effect_difference_ratio"] = overlap.difference_ratio
    if not (overlap.difference_ratio >= 0.1 and abs(overlap.difference_disease_cosine) >= 0.5):
        return None
    way = "weakens" if overlap.difference_disease_cosine < 0 else "strengthens"
    return (
        f"On the calibration images {attribute} moves the latent code differently in diseased images: it "
        f"{way} the disease direction there (the difference of its effects between the labels is "
        f"{100 * overlap.difference_ratio:.0f} % of the disease direction's length, cosine "
        f"{overlap.difference_disease_cosine:+.2f}). Erasing {attribute} inside every label (--per-label) "
        f"therefore removes disease signal with it; erasing it conditional on the label (--conditional) keeps "
        f"that signal but leaves the difference for a within-label probe to read."
    )


def _summary(attribute: str, tables: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    lines = []
    for section, rows in tables.items():
        b, e, r, d = rows["before"], rows["erased"], rows["erased_recalibrated"], rows["dfr"]
        lines.append(
            f"{section}: erasing {attribute} moves the {attribute} probe AUC {b['probe_auc']:.2f} → {e['probe_auc']:.2f} "
            f"(within each label {b['probe_auc_within_label']:.2f} → {e['probe_auc_within_label']:.2f}), "
            f"AUC {b['auc']:.3f} → {e['auc']:.3f} ({e['auc'] - b['auc']:+.3f}), worst-group accuracy "
            f"{b['worst_group_accuracy']:.2f} → {e['worst_group_accuracy']:.2f} at threshold 0.5 and "
            f"{r['worst_group_accuracy']:.2f} at the recalibrated threshold {r['threshold']:.3f} "
            f"({100 * (r['worst_group_accuracy'] - b['worst_group_accuracy']):+.0f} points); "
            f"DFR (retrained last layer): AUC {d['auc']:.3f}, worst-group accuracy {d['worst_group_accuracy']:.2f}."
        )
    lines.append(
        "No weight of the trained network changed (state_dict and checkpoint hashes identical before and after)."
    )
    return lines


def _write_report(
    out_dir: Path,
    source: str,
    attribute: str,
    calibration_section: str,
    tables: dict[str, dict[str, dict[str, Any]]],
    summary: list[str],
    weights_hash: str,
    eraser_path: Path,
    scope: str,
) -> Path:
    report = HtmlReport(f"Erasing {attribute} from {Path(source).name}")
    report.paragraph(
        f"A linear eraser (LEACE) removes every linear trace of {attribute} "
        f"{scope}from the latent space; it was fitted on "
        f"the {calibration_section!r} images and is saved as {eraser_path.name} ({eraser_path.stat().st_size} bytes). "
        "The trained network is not changed: the eraser sits between its encoder and its classifier."
    )
    report.bullets(summary)
    columns = [
        "variant",
        "auc",
        "threshold",
        "accuracy",
        "worst_group_accuracy",
        "worst_group",
        "equalized_odds_difference",
        "tpr_gap",
        "probe_auc",
        "probe_auc_within_label",
    ]
    for section, rows in tables.items():
        report.heading(section)
        report.table(
            [{"variant": name, **row} for name, row in rows.items()],
            columns=columns,
            caption="before: the model as trained; erased: LEACE between encoder and head (threshold 0.5); "
            "erased_recalibrated: the same with the decision threshold that maximises balanced accuracy on the "
            "calibration images (eraser.json); dfr: last layer retrained on group-balanced erased latents "
            "(reference). Worst group: the worst (label, attribute) cell.",
        )
        keys = ("auc", "worst_group_accuracy", "probe_auc")
        fig = before_after_figure(
            {k: rows["before"][k] for k in keys},
            {k: rows["erased_recalibrated"][k] for k in keys},
            out_dir / f"before_after_{section}.png",
            labels=("before", f"{attribute} erased"),
        )
        report.figure(fig, f"{section}: before and after erasing {attribute}.", root=out_dir)
    report.paragraph(f"Network state_dict sha256: {weights_hash}", css_class="note")
    report.paragraph("Research use only, not for diagnosis.", css_class="note")
    return report.write(out_dir / "report.html")
