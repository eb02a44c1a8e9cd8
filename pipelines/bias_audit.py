"""``medglass audit``: per-attribute bias audit of a trained model on a datalist section.

For every attribute of the datalist records (sex, age band, site, scanner, marker, ...):

- **subgroup performance** — AUC, accuracy, sensitivity, FPR, calibration error per group
  (fairlearn ``MetricFrame``) with bootstrap confidence intervals, and the gaps between groups;
- **latent leakage** — cross-validated linear-probe AUC of the attribute from the latent mean,
  the dimensions that carry it, and a permutation test;
- **within-label reliance** — how much the classifier's logit moves with the attribute's group
  means in latent space *within each label*, tested by permuting the attribute within each label
  (so an attribute that is merely correlated with the disease is not mistaken for one the
  classifier reads, and one anti-correlated with it in the audited data does not hide);
- **intervention** — how much the logit would change if the attribute's direction were erased
  (LEACE fitted on a calibration section): an effect, not a test of reliance. The report, the
  command line and the MLflow tags say how to read the two apart
  (:data:`~evaluation.bias_flags.INTERVENTION_READING`, :data:`~evaluation.bias_flags.RELIANCE_READING`);
- a **flag** when leakage and reliance are both significant (Holm-corrected over attributes)
  and the subgroup gap exceeds a threshold (:mod:`evaluation.bias_flags`).

Writes ``report.html`` (a sentence per attribute first, then tables and figures),
``metrics.json`` and figures to ``out`` and logs them to MLflow next to the model's run.

Example:
    >>> result = audit("runs/model", "cohort/datalist.json", "runs/audit")  # doctest: +SKIP
    >>> result["flags"]  # doctest: +SKIP
    {'marker': True, 'random_group': False, ...}
"""

from __future__ import annotations

import json
import math
import re
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from evaluation.bias_figures import leakage_figure, subgroup_bar_figure
from evaluation.bias_flags import (
    INTERVENTION_READING,
    RELIANCE_READING,
    AuditThresholds,
    flag_attribute,
    intervention_phrase,
    reliance_phrase,
    summary_sentence,
)
from evaluation.concept_erasure import fit_eraser
from evaluation.html_report import HtmlReport, write_text_atomic
from evaluation.latent_leakage import (
    holm_correction,
    permutation_test,
    probe_auc,
    probe_statistic,
    reliance_statistic,
)
from evaluation.subgroup_audit import bootstrap_ci, encode_attribute, subgroup_metrics
from pipelines.analysis_tracking import log_analysis
from pipelines.latent_codes import LatentCodes, encode_datalist
from pipelines.trained_model import TrainedModel, load_trained_model

__all__ = ["audit", "audit_tags", "attribute_names", "erased_scores", "head_weight", "write_metrics"]


def attribute_names(codes: LatentCodes, requested: list[str] | None) -> list[str]:
    """The attributes to audit: ``requested`` (checked to exist) or every attribute of the records."""
    present = sorted({k for a in codes.attributes for k in a})
    if requested is None:
        return present
    unknown = [a for a in requested if a not in present]
    if unknown:
        raise ValueError(f"attributes {unknown} are not in the datalist records (present: {present})")
    return list(requested)


def head_weight(trained: TrainedModel) -> np.ndarray:
    """The linear head's weight ``(C, D)``.

    Raises:
        ValueError: the model has an MLP head (reliance needs a linear one).
    """
    weight = getattr(trained.network.head, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(
            f"model {trained.source}: reliance needs the linear classifier head, got {trained.network.head_type!r}"
        )
    return weight.detach().cpu().double().numpy()


def erased_scores(
    trained: TrainedModel, eraser: torch.nn.Module, mu: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positive-class probabilities and logits from ``classify(eraser(mu))`` (network untouched)."""
    with torch.no_grad():
        erased = eraser(torch.from_numpy(mu).double()).float().to(trained.device)
        logits = trained.network.classify(erased).cpu().double()
    probs = torch.softmax(logits, dim=1).numpy()
    return (probs[:, 1] if probs.shape[1] > 1 else probs[:, 0]), logits.numpy()


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


def write_metrics(out_dir: Path, metrics: dict[str, float]) -> Path:
    """``metrics.json``: flat name → number (NaN written as null), written atomically."""
    clean = {k: (float(v) if math.isfinite(float(v)) else None) for k, v in sorted(metrics.items())}
    return write_text_atomic(out_dir / "metrics.json", json.dumps(clean, indent=1))


def _labelled(codes: LatentCodes, where: str) -> np.ndarray:
    keep = codes.labels >= 0
    if len(np.unique(codes.labels[keep])) < 2:
        raise ValueError(f"{where}: the audit needs labelled images of both classes")
    return keep


MIN_GROUP_SIZE = 5
"""Groups smaller than this are left out of the probes and permutation tests (5-fold probes need 5)."""


def _common_groups(groups: np.ndarray, min_count: int = MIN_GROUP_SIZE) -> tuple[np.ndarray, list[str]]:
    """``groups`` with values seen fewer than ``min_count`` times set to missing, and those values."""
    coded = encode_attribute(groups)
    counts = np.bincount(coded.codes, minlength=len(coded.categories))
    rare = [str(c) for c, n in zip(coded.categories, counts, strict=True) if n < min_count]
    out = np.array([None if (v is None or str(v) in rare) else v for v in groups], dtype=object)
    return out, rare


def _audit_attribute(
    name: str,
    codes: LatentCodes,
    calib: LatentCodes,
    trained: TrainedModel,
    weight: np.ndarray,
    n_permutations: int,
    n_boot: int,
    seed: int,
) -> dict[str, Any] | str:
    """Everything about one attribute, or the reason it was skipped."""
    groups = np.asarray(codes.attribute(name), dtype=object)
    if len(set(encode_attribute(groups, name=name).codes.tolist())) < 2:
        return f"{name}: fewer than two groups in this section"
    labels, scores, mu = codes.labels, codes.scores, codes.mu
    report = subgroup_metrics(labels, scores, groups, attribute=name)
    ci = bootstrap_ci(
        labels, scores, groups, metrics=("auc", "accuracy", "tpr", "fpr"), n_boot=n_boot, seed=seed
    )
    common, rare = _common_groups(groups)
    coded_common = encode_attribute(common)
    if len(set(coded_common.codes.tolist())) < 2:
        return f"{name}: fewer than two groups with {MIN_GROUP_SIZE} or more images"
    valid = coded_common.valid
    probe = probe_auc(mu, common, seed=seed)
    _, leak_p = permutation_test(probe_statistic(seed=seed), mu, common, n_perm=n_permutations, seed=seed)
    rel_obs, rel_p = permutation_test(
        reliance_statistic(weight, strata=labels[valid]),  # within each label: see its docstring
        mu[valid],
        common[valid],
        n_perm=n_permutations,
        seed=seed,
        strata=labels[valid],
    )
    result: dict[str, Any] = {
        "report": report,
        "rare_groups": rare,
        "ci": ci,
        "probe": probe,
        "leakage_p": leak_p,
        "reliance": rel_obs,
        "reliance_p": rel_p,
    }
    calib_groups, _ = _common_groups(np.asarray(calib.attribute(name), dtype=object))
    if len(set(encode_attribute(calib_groups, name=name).codes.tolist())) >= 2:
        eraser = fit_eraser(calib.mu, calib_groups, attribute=name)
        after, logits_after = erased_scores(trained, eraser, mu)
        diff_before = codes.logits[:, -1] - codes.logits[:, 0]
        diff_after = logits_after[:, -1] - logits_after[:, 0]
        result["erasure_delta_auc"] = _auc(labels, after) - _auc(labels, scores)
        result["erasure_mean_abs_delta_logit"] = float(np.mean(np.abs(diff_after - diff_before)))
        spread = float(np.std(diff_before))
        result["erasure_reliance"] = {
            "mean_abs_delta_logit": result["erasure_mean_abs_delta_logit"],
            "delta_logit_fraction_of_std": result["erasure_mean_abs_delta_logit"] / spread
            if spread > 0
            else float("nan"),
        }
    return result


def audit(
    model: str | PathLike,
    datalist: str | PathLike,
    out: str | PathLike,
    section: str = "test",
    attributes: list[str] | None = None,
    gap_threshold: float = 0.05,
    alpha: float = 0.01,
    n_permutations: int = 1000,
    n_boot: int = 200,
    calibration_section: str = "validation",
    seed: int = 0,
    track: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Audit a model for bias on one datalist section, attribute by attribute.

    Args:
        model: run folder, checkpoint or MLflow reference.
        datalist: datalist JSON whose records carry ``label`` and ``attributes``.
        out: output folder (created).
        section: the section audited.
        attributes: attributes to audit (default: every attribute in the records).
        gap_threshold: subgroup gap (equalised-odds difference) above which a gap counts.
        alpha: significance level after Holm correction over the audited attributes.
        n_permutations: permutations per test (p-values resolve to ``1 / (1 + n)``).
        n_boot: bootstrap replicates of the confidence intervals.
        calibration_section: section the LEACE erasers of the "erasing changes AUC" figures are
            fitted on (never the audited section).
        seed: seed of probes, permutations and bootstrap.
        track: log the report to MLflow.
        progress: show progress bars.

    Returns:
        ``{"metrics", "flags": {attribute: bool}, "summary": [sentences], "skipped": [reasons],
        "report": path, "run_id"}``.

    Raises:
        ValueError: unusable model, datalist, section or attribute names (naming them), or a
            section without labelled images of both classes.
    """
    if calibration_section == section:
        raise ValueError(f"calibration_section must differ from the audited section, both are {section!r}")
    thresholds = AuditThresholds(alpha=alpha, gap_threshold=gap_threshold)
    trained = load_trained_model(model)
    weight = head_weight(trained)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    codes = encode_datalist(trained, datalist, section, progress=progress)
    keep = _labelled(codes, f"datalist {datalist} section {section!r}")
    if not keep.all():
        codes = LatentCodes(
            ids=[i for i, k in zip(codes.ids, keep, strict=True) if k],
            mu=codes.mu[keep],
            logvar=codes.logvar[keep],
            logits=codes.logits[keep],
            labels=codes.labels[keep],
            attributes=[a for a, k in zip(codes.attributes, keep, strict=True) if k],
            records=[r for r, k in zip(codes.records, keep, strict=True) if k],
        )
    calib = encode_datalist(trained, datalist, calibration_section, progress=progress)
    names = attribute_names(codes, attributes)
    smallest = len(names) / (1 + n_permutations)  # the smallest Holm-corrected permutation p-value
    if smallest >= alpha:
        raise ValueError(
            f"n_permutations={n_permutations} cannot reach alpha={alpha} after Holm correction over "
            f"{len(names)} attributes (smallest p = {smallest:.3g}); use at least {math.ceil(len(names) / alpha)}"
        )
    results: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for i, name in enumerate(names):
        outcome = _audit_attribute(name, codes, calib, trained, weight, n_permutations, n_boot, seed + i)
        if isinstance(outcome, str):
            skipped.append(outcome)
        else:
            results[name] = outcome
    if not results:
        raise ValueError(
            f"datalist {datalist} section {section!r}: no attribute with two or more groups to audit"
        )
    leak_adj = holm_correction({a: r["leakage_p"] for a, r in results.items()})
    rel_adj = holm_correction({a: r["reliance_p"] for a, r in results.items()})

    metrics: dict[str, float] = {"auc": _auc(codes.labels, codes.scores), "images": float(len(codes))}
    flags: dict[str, bool] = {}
    sentences: list[str] = []
    for name, r in results.items():
        gap = thresholds.gap_of(r["report"])
        flagged, reason = flag_attribute(
            leak_adj[name], rel_adj[name], gap, thresholds, probe_auc=r["probe"].auc
        )
        flags[name] = flagged
        r["reason"] = reason
        sentence = summary_sentence(
            name, r["report"], r["probe"], r.get("erasure_reliance"), r.get("erasure_delta_auc")
        )
        sentences.append(f"{'FLAGGED — ' if flagged else ''}{sentence}. {reason}")
        metrics.update(
            {
                f"{name}/flagged": float(flagged),
                f"{name}/probe_auc": r["probe"].auc,
                f"{name}/leakage_p_holm": leak_adj[name],
                f"{name}/reliance": r["reliance"],
                f"{name}/reliance_p_holm": rel_adj[name],
                f"{name}/gap": gap,
                f"{name}/worst_group_accuracy": r["report"].gaps["worst_group_accuracy"],
                f"{name}/tpr_gap": r["report"].gaps["tpr_gap"],
                f"{name}/erasure_delta_auc": r.get("erasure_delta_auc", float("nan")),
                f"{name}/erasure_mean_abs_delta_logit": r.get("erasure_mean_abs_delta_logit", float("nan")),
            }
        )
    report_path = _write_report(
        out_dir,
        trained,
        Path(datalist),
        section,
        results,
        leak_adj,
        rel_adj,
        flags,
        sentences,
        skipped,
        thresholds,
    )
    write_metrics(out_dir, metrics)
    run_id = None
    if track:
        finite = {k.replace("/", "_"): v for k, v in metrics.items() if math.isfinite(v)}
        run_id = log_analysis(
            "audit",
            out_dir,
            finite,
            parent_run_id=trained.run_id,
            tracking_uri=trained.tracking_uri,
            params={"model": trained.source, "datalist": str(datalist), "section": section},
            tags=audit_tags(results, rel_adj, thresholds),
        )
    return {
        "metrics": metrics,
        "flags": flags,
        "summary": sentences,
        "reading": [INTERVENTION_READING, RELIANCE_READING],
        "skipped": skipped,
        "report": report_path,
        "run_id": run_id,
    }


def audit_tags(
    results: dict[str, dict[str, Any]], rel_adj: dict[str, float], thresholds: AuditThresholds
) -> dict[str, str]:
    """MLflow tags of an audit: how to read its two numbers, and each attribute's two numbers apart.

    Args:
        results: per attribute, what ``_audit_attribute`` found (``erasure_reliance``, ``reason``).
        rel_adj: Holm-corrected p-values of the within-label reliance test.
        thresholds: the audit's thresholds (``alpha``).

    Returns:
        ``medglass.audit.reading.intervention`` / ``.reliance`` (:data:`INTERVENTION_READING`,
        :data:`RELIANCE_READING`) and, per attribute, ``medglass.audit.<attribute>.intervention``,
        ``.reliance`` and ``.flag``.
    """
    tags = {
        "medglass.audit.reading.intervention": INTERVENTION_READING,
        "medglass.audit.reading.reliance": RELIANCE_READING,
    }
    for name, r in results.items():
        erasure = r.get("erasure_reliance")
        key = re.sub(r"[^\w.\- /]", "_", name)  # characters MLflow accepts in a tag name
        tags[f"medglass.audit.{key}.intervention"] = (
            intervention_phrase(name, erasure)
            if erasure is not None
            else "intervention not computed (fewer than two groups in the calibration section)"
        )
        tags[f"medglass.audit.{key}.reliance"] = reliance_phrase(rel_adj[name], thresholds.alpha)
        tags[f"medglass.audit.{key}.flag"] = r.get("reason", "")
    return tags


def _write_report(
    out_dir: Path,
    trained: TrainedModel,
    datalist: Path,
    section: str,
    results: dict[str, dict[str, Any]],
    leak_adj: dict[str, float],
    rel_adj: dict[str, float],
    flags: dict[str, bool],
    sentences: list[str],
    skipped: list[str],
    thresholds: AuditThresholds,
) -> Path:
    report = HtmlReport(f"Bias audit of {Path(trained.source).name} on {datalist.name} [{section}]")
    report.paragraph(
        "One line per attribute: the group whose sensitivity differs most, which latent dimensions encode the "
        "attribute, and what erasing it from the latent space would change. An attribute is flagged when the "
        f"latent space encodes it, the decision relies on it within each label (both p < {thresholds.alpha} after "
        "Holm correction) "
        f"and the subgroup gap ({thresholds.gap_metric.replace('_', ' ')}) exceeds {thresholds.gap_threshold}."
    )
    report.paragraph("Two different numbers in each line below, read them apart:")
    report.bullets([INTERVENTION_READING, RELIANCE_READING])
    report.bullets(sentences, flagged=[flags[a] for a in results])
    for note in skipped:
        report.paragraph(f"Not audited — {note}.", css_class="note")
    report.heading("Leakage and reliance")
    report.table(
        [
            {
                "attribute": a,
                "flagged": flags[a],
                "probe AUC": r["probe"].auc,
                "top dims": ", ".join(f"z{d}" for d in r["probe"].top_dims(3)),
                "leakage p (Holm)": leak_adj[a],
                "intervention: |Δ logit| if removed": r.get("erasure_mean_abs_delta_logit", float("nan")),
                "within-label reliance (logit shift)": r["reliance"],
                "within-label reliance p (Holm)": rel_adj[a],
                "gap": thresholds.gap_of(r["report"]),
                "ΔAUC if erased": r.get("erasure_delta_auc", float("nan")),
            }
            for a, r in results.items()
        ]
    )
    probes = {a: r["probe"] for a, r in results.items()}
    report.figure(
        leakage_figure(probes, out_dir / "leakage.png"),
        "How well a linear probe recovers each attribute from the latent mean (0.5 = not at all), and which dims carry it.",
        root=out_dir,
    )
    for a, r in results.items():
        report.heading(f"{a}: subgroups")
        if r["rare_groups"]:
            report.paragraph(
                f"Groups with fewer than {MIN_GROUP_SIZE} images ({', '.join(r['rare_groups'])}) are left out of the "
                "probe and the permutation tests.",
                css_class="note",
            )
        rows = []
        for group, row in r["report"].per_group.iterrows():
            ci = r["ci"].get(str(group), {})
            cell = {"group": group, "n": int(row["n"]), "positives": int(row["positives"])}
            for metric in ("auc", "accuracy", "tpr", "fpr"):
                low, high = ci.get(metric, (float("nan"), float("nan")))
                cell[metric] = (
                    f"{row[metric]:.3f} [{low:.2f}, {high:.2f}]" if row[metric] == row[metric] else "n/a"
                )
            cell["ece"] = row["ece"]
            rows.append(cell)
        report.table(
            rows, caption="95 % bootstrap intervals in brackets; tpr = sensitivity, fpr = 1 - specificity."
        )
        report.table([{"gap": k.replace("_", " "), "value": v} for k, v in r["report"].gaps.items()])
        fig = subgroup_bar_figure(r["report"], out_dir / f"subgroups_{a}.png", metric="tpr", ci=r["ci"])
        report.figure(fig, f"Sensitivity by {a} with 95 % intervals.", root=out_dir)
    report.paragraph("Research use only, not for diagnosis.", css_class="note")
    return report.write(out_dir / "report.html")
