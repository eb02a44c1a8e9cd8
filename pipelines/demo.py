"""The demo behind ``make demo``: phantoms → ingestion → self-supervised pretraining →
semi-supervised fine-tuning with 10 % of the labels → explanations of the test set → bias
audit → test metrics, the reports and the MLflow UI command.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from os import PathLike
from pathlib import Path

__all__ = ["run_demo", "MIN_AUDIT_IMAGES", "DEMO_LESION_CONTRAST", "DEMO_LESION_RADIUS"]

DEMO_LESION_CONTRAST = (0.15, 0.35)
"""Lesion contrast range of the demo cohort: more conspicuous than the benchmark default
(``PhantomConfig``: 0.02–0.25), so that the demo's few labelled images (10 % of the training
split) can teach the lesion in one short run; ``demo_summary.json`` holds what the run measured."""

DEMO_LESION_RADIUS = (2.5, 4.5)
"""Lesion radius range of the demo cohort in px at 64×64 (benchmark default 1.5–3.5)."""

MIN_AUDIT_IMAGES = 40
"""Test images below which the demo skips the bias audit (subgroups would be too small)."""


def run_demo(
    out: str | PathLike = "runs/demo",
    n: int = 1200,
    seed: int = 0,
    progress: bool = True,
    pretrain_epochs: int = 6,
    classify_epochs: int = 20,
    label_fraction: float = 0.1,
    explain_images: int = 10,
    lesion_contrast: tuple[float, float] = DEMO_LESION_CONTRAST,
    lesion_radius: tuple[float, float] = DEMO_LESION_RADIUS,
) -> dict:
    """Run the end-to-end demo on a generated brain2d phantom cohort.

    Args:
        out: output folder (cohort in ``out/cohort``, ingestion in ``out/ingest``, training
            runs in ``out/pretrain`` and ``out/classify``, MLflow store ``out/mlruns.db``).
        n: number of phantom images (70 % training, 10 % validation, 20 % test).
        seed: phantom and training seed.
        progress: progress bars.
        pretrain_epochs: epochs of self-supervised pretraining (all training images).
        classify_epochs: epochs of fine-tuning (reconstruction on all images,
            classification on the labelled fraction).
        label_fraction: fraction of training labels kept.
        explain_images: correctly classified test positives explained one by one.
        lesion_contrast: lesion contrast range of the demo cohort (see ``DEMO_LESION_CONTRAST``).
        lesion_radius: lesion radius range in px at 64×64 (see ``DEMO_LESION_RADIUS``).

    Returns:
        The summary dict that is also written to ``out/demo_summary.json``.

    Raises:
        ValueError: ``n`` < 10, epochs < 1, or ``label_fraction`` outside (0, 1].
    """
    from evaluation.auc_interval import auc_verdict
    from evaluation.cohort_figures import cohort_montage
    from evaluation.html_report import write_text_atomic
    from phantoms.brain_cohort import PhantomConfig, generate_cohort
    from pipelines.bias_audit import audit
    from pipelines.explain import ExplainSettings
    from pipelines.explain_dataset import explain_dataset
    from pipelines.ingest import ingest_folder
    from pipelines.training import train
    from pipelines.training_config import TrainConfig

    if n < 10:
        raise ValueError(f"n must be >= 10 for a meaningful demo, got {n!r}")
    if pretrain_epochs < 1 or classify_epochs < 1:
        raise ValueError(
            f"epochs must be >= 1, got pretrain {pretrain_epochs!r}, classify {classify_epochs!r}"
        )
    if isinstance(label_fraction, bool) or not 0.0 < float(label_fraction) <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1], got {label_fraction!r}")
    out_path = Path(out)
    started = time.perf_counter()
    phantoms = PhantomConfig(
        kind="brain2d",
        n=n,
        seed=seed,
        lesion_contrast_range=tuple(lesion_contrast),
        lesion_radius_range=tuple(lesion_radius),
    )
    print(
        f"[1/7] generating {n} brain2d phantoms (seed {seed}; lesion contrast {phantoms.lesion_contrast_range}, "
        f"radius {phantoms.lesion_radius_range} px: more conspicuous than the benchmark default) "
        f"-> {out_path / 'cohort'}"
    )
    cohort = generate_cohort(phantoms, out_path / "cohort", progress=progress)
    print(f"[2/7] ingesting {out_path / 'cohort' / 'images'} -> {out_path / 'ingest'}")
    ingest = ingest_folder(
        out_path / "cohort" / "images", out_path / "ingest", progress=progress, salt="demo"
    )
    montage = cohort_montage(out_path / "cohort" / "datalist.json", out_path / "cohort_montage.png")

    tracking_uri = f"sqlite:///{(out_path / 'mlruns.db').resolve()}"
    common = {
        "datalist": out_path / "cohort" / "datalist.json",
        "spatial_size": (64, 64),
        "seed": seed,
        "progress": progress,
        "tracking_uri": tracking_uri,
        "experiment": "medglass-demo",
    }
    print(f"[3/7] self-supervised pretraining, {pretrain_epochs} epochs (patch erasing, all images)")
    train(
        TrainConfig(
            out_dir=out_path / "pretrain", mode="pretrain", epochs=pretrain_epochs, erase_prob=0.5, **common
        )
    )
    print(f"[4/7] fine-tuning with {label_fraction:.0%} of the labels, {classify_epochs} epochs")
    metrics = train(
        TrainConfig(
            out_dir=out_path / "classify",
            mode="classify",
            epochs=classify_epochs,
            label_fraction=label_fraction,
            pretrained=out_path / "pretrain" / "best.pt",
            **common,
        )
    )
    explain_dir, audit_dir = out_path / "explain", out_path / "audit"
    print(f"[5/7] explaining the test set (traversals, counterfactuals, saliency maps) -> {explain_dir}")
    explained = explain_dataset(
        out_path / "classify",
        out_path / "cohort" / "datalist.json",
        explain_dir,
        settings=ExplainSettings(max_images=explain_images),
        progress=progress,
    )
    test_size = len(json.loads((out_path / "cohort" / "datalist.json").read_text()).get("test", []))
    audited = None
    if test_size >= MIN_AUDIT_IMAGES:
        print(f"[6/7] bias audit of every attribute on the test set -> {audit_dir}")
        audited = audit(
            out_path / "classify", out_path / "cohort" / "datalist.json", audit_dir, progress=progress
        )
    else:
        print(f"[6/7] bias audit skipped: {test_size} test images (needs {MIN_AUDIT_IMAGES})")
    print("[7/7] summary")

    datalist = json.loads((out_path / "cohort" / "datalist.json").read_text())
    records = [r for section in ("training", "validation", "test") for r in datalist.get(section, [])]
    agreement = sum((r["attributes"]["marker"] == "present") == bool(r["label"]) for r in records) / len(
        records
    )
    test_labels = [int(r["label"]) for r in datalist.get("test", [])]
    n_pos = sum(1 for label in test_labels if label == 1)
    n_neg = len(test_labels) - n_pos
    verdict = (
        "test " + auc_verdict(float(metrics["test_auc"]), n_pos, n_neg)
        if "test_auc" in metrics and n_pos and n_neg
        else None
    )
    summary = {
        "images": len(records),
        "splits": {s: len(datalist.get(s, [])) for s in ("training", "validation", "test")},
        "positives": sum(int(r["label"]) for r in records),
        "marker_label_agreement": round(agreement, 3),
        "sex": dict(Counter(r["attributes"]["sex"] for r in records)),
        "site": dict(Counter(r["attributes"]["site"] for r in records)),
        "ingested_images": len(ingest.records),
        "ingest_rejects": len(ingest.rejects),
        "phantom_seconds": round(float(cohort.get("seconds", 0.0)), 1),
        "label_fraction": label_fraction,
        "train_labelled": int(metrics.get("train_labelled", 0)),
        "lesion_contrast": list(lesion_contrast),
        "lesion_radius": list(lesion_radius),
        **{k: round(v, 4) for k, v in metrics.items() if k.startswith("test_")},
        "test_auc_verdict": verdict,
        "total_seconds": round(time.perf_counter() - started, 1),
        "montage": str(montage),
        "metrics_json": str(out_path / "classify" / "metrics.json"),
        "explain_report": str(explained["report"]),
        **{
            key: round(explained["metrics"][key], 3) if key in explained["metrics"] else None
            for key in (
                "cf_flip_rate",
                "cf_reencoded_flip_rate",
                "counterfactual_pointing_game",
                "counterfactual_pointing_game_strict",
                "cf_mean_outside_body_share",
                "ood_flagged_share",
                "attention_pointing_game",
                "infill_flip_rate",
                "occlusion_pointing_game",
            )
        },
        "audit_report": str(audited["report"]) if audited else None,
        "audit_flagged": [a for a, f in audited["flags"].items() if f] if audited else None,
    }
    write_text_atomic(out_path / "demo_summary.json", json.dumps(summary, indent=1))
    print("\nmedglass demo summary")
    for key, value in summary.items():
        print(f"  {key:24s} {value}")
    if verdict:
        print(f"\n{verdict}")
        if not verdict.endswith("better than chance"):
            print(
                f"  {summary['train_labelled']} labelled training images were not enough to learn the lesions "
                f"of this cohort (lesion contrast {tuple(lesion_contrast)}); the explanations and the bias audit "
                "describe that weak model. More epochs (--classify-epochs), images (--n), labels "
                "(--label-fraction) or more conspicuous lesions (--lesion-contrast) are the levers; measured "
                "figures: bundles/glassbox_classification/docs/README.md."
            )
    print(f"\nsample images with lesion outlines: {montage}")
    print(f"explanations: {explained['report']}")
    if audited:
        print(f"bias audit: {audited['report']}")
    print(f"review the runs:  .venv/bin/mlflow ui --backend-store-uri {tracking_uri}")
    return summary
