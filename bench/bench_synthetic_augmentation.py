"""Synthetic minority augmentation on phantoms: train real (TRTR), train synthetic (TSTR), real + synthetic (TR+S).

The experiment design of the generative-augmentation literature, on brain2d phantom cohorts with
the demo's conspicuous lesions (``pipelines.demo``), one cohort per (seed, imbalance) with the
lesion prevalence set to ``1 / (1 + r)`` for an imbalance ``1:r``, and a label fraction kept
(stratified, ``pipelines.datalists.mask_labels``) on the training split only — the rest is
unlabelled and still trains the autoencoder (semi-supervised, as ``medglass classify`` does).
Per cell (label fraction, imbalance, seed):

* **TRTR** — ``medglass classify`` on the real training split; this run is also the generator;
* **TR+S** — the same with ``synthetic_minority`` (a share of every batch, default 0.25) drawn
  from the TRTR run's latent prior (:mod:`pipelines.synthetic_augmentation`);
* **TSTR** — a classifier trained on synthetic images only (``--tstr-n`` per class from the TRTR
  run's prior, with the synthetic validation split ``medglass generate`` writes), tested on real.

Every model is scored on the real test split: AUC, minority-class (lesion) sensitivity at 90 %
specificity (the ROC point with false-positive rate <= 0.1) and balanced accuracy of the model's
own decision (class-1 probability > 0.5). For the headline cells (10 % labels, 1:20) the TR+S
synthetic images are also read back by :mod:`evaluation.factor_fidelity` (a lesion detector fitted on
the cohort's ground-truth masks): the share of class-1 synthetic images that hold a lesion is
the first thing to look at when TR+S does not help.

The headline cell runs first with every seed; then the rest of the grid, seed 0, in
``GRID_ORDER``, while the CPU budget (``--budget-minutes``) lasts; the script prints which cells
ran. Finished cells in ``--out/results.json`` are kept when it is started again. ``--card``
rewrites the bench's generated section of the model card.

Run: ``nice -n 10 .venv/bin/python bench/bench_synthetic_augmentation.py --out runs/bench_synaug
--card bundles/glassbox_generation/docs/README.md``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score, roc_curve

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.model_card import write_card_section  # noqa: E402
from phantoms import PhantomConfig, generate_cohort  # noqa: E402
from pipelines.datalists import load_datalist, mask_labels  # noqa: E402
from pipelines.demo import DEMO_LESION_CONTRAST, DEMO_LESION_RADIUS  # noqa: E402
from pipelines.generation import generate  # noqa: E402
from pipelines.generation_report import encoder_features, factor_fidelity_metrics  # noqa: E402
from pipelines.latent_codes import encode_datalist, load_model_input  # noqa: E402
from pipelines.synthetic_augmentation import SYNTHETIC_DIR  # noqa: E402
from pipelines.trained_model import load_trained_model  # noqa: E402
from pipelines.training import train  # noqa: E402
from pipelines.training_config import TrainConfig, run_intensity_range  # noqa: E402

ARMS = ("TRTR", "TSTR", "TR+S")
FRACTIONS = (1.0, 0.25, 0.1)
RATIOS = (1, 5, 20)
HEADLINE = (0.1, 20)
GRID_ORDER = ((0.1, 5), (0.1, 1), (0.25, 20), (1.0, 20), (0.25, 5), (1.0, 5), (0.25, 1), (1.0, 1))
"""The cells after the headline, most informative first (seed 0)."""
SPECIFICITY = 0.9


def sensitivity_at_specificity(
    labels: np.ndarray, scores: np.ndarray, specificity: float = SPECIFICITY
) -> float:
    """Highest true-positive rate on the ROC curve with a false-positive rate <= ``1 - specificity``."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= 1.0 - specificity + 1e-12].max())


def score_on_test(run: Path, datalist: Path) -> dict[str, float]:
    """AUC, sensitivity at 90 % specificity and balanced accuracy of a run on the real test split."""
    codes = encode_datalist(load_trained_model(run), datalist, "test", progress=False)
    labels, scores = codes.labels, codes.scores
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "sens_at_90spec": sensitivity_at_specificity(labels, scores),
        "balanced_accuracy": float(balanced_accuracy_score(labels, scores > 0.5)),
    }


def make_cohort(out: Path, seed: int, ratio: int, n: int, size: int) -> Path:
    """The cohort of one (seed, imbalance): prevalence ``1 / (1 + ratio)``, 60/10/30 % splits."""
    datalist = out / "datalist.json"
    if not datalist.is_file():
        config = PhantomConfig(
            kind="brain2d",
            n=n,
            seed=seed,
            size=size,
            lesion_prevalence=1.0 / (1.0 + ratio),
            lesion_contrast_range=DEMO_LESION_CONTRAST,
            lesion_radius_range=DEMO_LESION_RADIUS,
            split_fractions=(0.6, 0.1, 0.3),
        )
        generate_cohort(config, out, progress=False)
    return datalist


def label_datalist(cohort: Path, fraction: float, seed: int) -> Path:
    """The cohort's datalist with only ``fraction`` of the training labels kept (absolute paths)."""
    path = cohort.parent / f"labels_{round(100 * fraction)}.json"
    if not path.is_file():
        sections = {s: load_datalist(cohort, s) for s in ("training", "validation", "test")}
        masked = mask_labels(sections["training"], fraction, seed=seed)
        # labelled records first: the generator's latent prior reads the first 500 training records
        # of its datalist (pipelines.generation.fit_latent_prior), and must see every labelled one
        sections["training"] = sorted(masked, key=lambda r: int(r.get("label", -1)) < 0)
        path.write_text(json.dumps(sections))
    return path


def _config(datalist: Path, run: Path, args: argparse.Namespace, seed: int, **extra: object) -> TrainConfig:
    return TrainConfig(
        datalist=datalist,
        out_dir=run,
        epochs=args.epochs,
        spatial_size=(args.size, args.size),
        seed=seed,
        tracking_uri=f"sqlite:///{Path(args.out).resolve()}/mlruns.db",
        experiment="bench-synthetic-augmentation",
        **extra,
    )


def _trained(run: Path) -> bool:
    metrics = run / "metrics.json"
    return metrics.is_file() and "test_auc" in json.loads(metrics.read_text())


def tstr_datalist(generator: Path, out: Path, real: Path, n_per_class: int, seed: int) -> Path:
    """Synthetic training/validation images of both classes from ``generator``, the real test split."""
    path = out / "datalist.json"
    if path.is_file():
        return path
    sections: dict[str, list] = {"training": [], "validation": []}
    for cls in (0, 1):
        summary = generate(generator, out / f"class{cls}", n=n_per_class, cls=cls, seed=seed)
        for section in sections:
            sections[section] += load_datalist(summary["datalist"], section, required=False)
    sections["test"] = load_datalist(real, "test")
    path.write_text(json.dumps(sections))
    return path


def fidelity(generator: Path, synthetic: Path, datalist: Path, seed: int) -> dict[str, float]:
    """Lesion read-back of the TR+S synthetic images (the cohort's mask detector) and the model's own reading."""
    trained = load_trained_model(generator)
    records = load_datalist(synthetic / "datalist.json", "training") + load_datalist(
        synthetic / "datalist.json", "validation", required=False
    )
    fake = torch.cat(
        [
            load_model_input(r["image"], trained.spatial_size, intensity_range=trained.intensity_range)[0]
            for r in records
        ]
    ).clamp(0, 1)
    train_records = load_datalist(datalist, "training")
    real_records = load_datalist(datalist, "test")
    images = [
        torch.cat(
            [
                load_model_input(r["image"], trained.spatial_size, intensity_range=trained.intensity_range)[0]
                for r in group
            ]
        ).clamp(0, 1)
        for group in (train_records, real_records)
    ]
    features = (*(encoder_features(trained, x) for x in images), encoder_features(trained, fake))
    labels = np.array([int(r["label"]) for r in records])
    # the generator's prior saw the masked labels: only labelled training images define a class
    metrics = factor_fidelity_metrics(trained, train_records, real_records, fake, labels, features, seed=seed)
    predicted = json.loads((synthetic / "generation.json").read_text())["summary"]["predicted_as_label"]
    return {
        "lesion_present_share": metrics.get("lesion_present_share_class1", float("nan")),
        "detector_balanced_accuracy": metrics.get("detector_balanced_accuracy", float("nan")),
        "lesion_area_real_mean": metrics.get("lesion_area_real_mean", float("nan")),
        "lesion_area_fake_mean": metrics.get("lesion_area_fake_mean", float("nan")),
        "predicted_as_minority": float(predicted),
    }


def run_cell(args: argparse.Namespace, fraction: float, ratio: int, seed: int, with_fidelity: bool) -> dict:
    """Train and score the three arms of one cell; returns ``{arm: metrics, ...}``."""
    root = Path(args.out).resolve() / f"r{ratio}_s{seed}"
    cohort = make_cohort(root / "cohort", seed, ratio, args.n, args.size)
    datalist = label_datalist(cohort, fraction, seed)
    cell = root / f"labels_{round(100 * fraction)}"
    runs = {arm: cell / arm.lower().replace("+", "") for arm in ARMS}
    start, cpu = time.perf_counter(), time.process_time()
    if not _trained(runs["TRTR"]):
        train(_config(datalist, runs["TRTR"], args, seed))
    if not _trained(runs["TR+S"]):
        train(
            _config(
                datalist,
                runs["TR+S"],
                args,
                seed,
                synthetic_minority=args.share,
                generator=str(runs["TRTR"]),
            )
        )
    if not _trained(runs["TSTR"]):
        synthetic = tstr_datalist(runs["TRTR"], cell / "tstr_data", datalist, args.tstr_n, seed)
        # the real images' intensity range: one computed from the synthetic images would scale the
        # real test images differently from what the classifier learnt on
        train(_config(synthetic, runs["TSTR"], args, seed, intensity_range=run_intensity_range(runs["TRTR"])))
    row: dict = {arm: score_on_test(run, datalist) for arm, run in runs.items()}
    labelled = [r for r in load_datalist(datalist, "training") if int(r.get("label", -1)) >= 0]
    row["labelled_minority"] = sum(int(r["label"]) == 1 for r in labelled)
    row["labelled"] = len(labelled)
    row["synthetic"] = json.loads((runs["TR+S"] / "metrics.json").read_text()).get("train_synthetic")
    if with_fidelity:
        row["fidelity"] = fidelity(runs["TRTR"], runs["TR+S"] / SYNTHETIC_DIR, datalist, seed)
    row["seconds"] = time.perf_counter() - start
    row["cpu_seconds"] = time.process_time() - cpu
    return row


def _key(fraction: float, ratio: int) -> str:
    return f"{round(100 * fraction)}%/1:{ratio}"


def _mean(rows: list[dict], arm: str, metric: str) -> tuple[float, float, float]:
    values = [r[arm][metric] for r in rows]
    return statistics.mean(values), min(values), max(values)


def _drawn_as_minority(out: Path, fraction: float, ratio: int, seeds: list[str]) -> str:
    """Mean share of the TR+S synthetic minority images the generator itself classifies as the minority class."""
    shares = []
    for seed in seeds:
        path = (
            out
            / f"r{ratio}_s{seed}"
            / f"labels_{round(100 * fraction)}"
            / "trs"
            / SYNTHETIC_DIR
            / "generation.json"
        )
        if path.is_file():
            shares.append(json.loads(path.read_text())["summary"]["predicted_as_label"])
    return f"{100 * statistics.mean(shares):.0f} %" if shares else "n/a"


def _table(results: dict, out: Path) -> list[str]:
    lines = [
        "| labels / imbalance | seeds | labelled (minority) | arm | test AUC | sensitivity at 90 % specificity | "
        "balanced accuracy | synthetic minority images the generator classifies as minority |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fraction, ratio in (HEADLINE, *GRID_ORDER):
        rows = list(results.get(_key(fraction, ratio), {}).values())
        if not rows:
            continue
        labelled = f"{statistics.mean(r['labelled'] for r in rows):.0f} ({statistics.mean(r['labelled_minority'] for r in rows):.1f})"
        drawn = _drawn_as_minority(out, fraction, ratio, list(results[_key(fraction, ratio)]))
        for arm in ARMS:
            cells = []
            for metric in ("auc", "sens_at_90spec", "balanced_accuracy"):
                mean, lo, hi = _mean(rows, arm, metric)
                cells.append(f"{mean:.3f}" + (f" ({lo:.3f}–{hi:.3f})" if len(rows) > 1 else ""))
            lines.append(
                f"| {_key(fraction, ratio)} | {len(rows)} | {labelled} | {arm} | "
                + " | ".join(cells)
                + f" | {drawn if arm == 'TR+S' else ''} |"
            )
    return lines


def _goals(results: dict) -> list[str]:
    rows = list(results.get(_key(*HEADLINE), {}).values())
    if not rows:
        return ["Headline cell not run."]
    gain = 100 * (_mean(rows, "TR+S", "sens_at_90spec")[0] - _mean(rows, "TRTR", "sens_at_90spec")[0])
    auc_drop = _mean(rows, "TRTR", "auc")[0] - _mean(rows, "TR+S", "auc")[0]
    ratio = _mean(rows, "TSTR", "auc")[0] / _mean(rows, "TRTR", "auc")[0]
    lines = [
        f"- Goal: TR+S raises minority sensitivity at 90 % specificity by >= 10 points over TRTR at 10 % labels, "
        f"1:20 (mean of {len(rows)} seeds) without lowering AUC by more than 0.01: **{gain:+.1f} points, AUC "
        f"{-auc_drop:+.3f}** — {'met' if gain >= 10 and auc_drop <= 0.01 else 'missed'}.",
        f"- Goal: TSTR AUC >= 0.9 × TRTR AUC: **{ratio:.2f} ×** — {'met' if ratio >= 0.9 else 'missed'}.",
    ]
    trtr_auc, trtr_max = _mean(rows, "TRTR", "auc")[0], _mean(rows, "TRTR", "auc")[2]
    if trtr_auc < 0.6:
        overlap = _mean(rows, "TR+S", "auc")[1] <= trtr_max
        lines.append(
            f"- Measured cause: TRTR itself is near chance (AUC {trtr_auc:.3f}) with "
            f"{statistics.mean(r['labelled_minority'] for r in rows):.1f} labelled minority images at these settings, "
            "so the generator is the TRTR run of a classifier that has not learnt the finding"
            + ("; the TR+S and TRTR AUC ranges over seeds overlap" if overlap else "")
            + ". The goals need a TRTR (and so a generator) that learns the finding first: more epochs, a larger "
            "image or a pretrained encoder."
        )
    fid = [r["fidelity"] for r in rows if "fidelity" in r]
    detector = statistics.mean(f["detector_balanced_accuracy"] for f in fid) if fid else float("nan")
    if fid and not detector >= 0.6:
        lines.append(
            f"- The lesion detector fitted on the cohort's masks did not learn (balanced accuracy {detector:.2f} on "
            "real test images): its read-back of the synthetic images says nothing. The generator itself classifies "
            f"{100 * statistics.mean(f['predicted_as_minority'] for f in fid):.0f} % of its minority-class draws as "
            "the minority class."
        )
    elif fid:
        lines.append(
            "- Synthetic minority images (TR+S, headline cell, mean over seeds): "
            f"{100 * statistics.mean(f['lesion_present_share'] for f in fid):.0f} % hold a lesion read back by a "
            "detector fitted on the cohort's ground-truth masks (its balanced accuracy on real test images "
            f"{statistics.mean(f['detector_balanced_accuracy'] for f in fid):.2f}); predicted lesion area "
            f"{statistics.mean(f['lesion_area_fake_mean'] for f in fid):.1f} px vs "
            f"{statistics.mean(f['lesion_area_real_mean'] for f in fid):.1f} px on real class-1 test images; the "
            f"generator classifies {100 * statistics.mean(f['predicted_as_minority'] for f in fid):.0f} % of them as "
            "the minority class."
        )
    return lines


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the headline cell")
    parser.add_argument("--n", type=int, default=1200, help="images per cohort (60/10/30 %% splits)")
    parser.add_argument("--size", type=int, default=32, help="image side")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--share", type=float, default=0.25, help="synthetic_minority of TR+S")
    parser.add_argument("--tstr-n", type=int, default=200, help="synthetic images per class for TSTR")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=20.0,
        help="CPU minutes of this process after which no grid cell starts",
    )
    parser.add_argument(
        "--cells",
        choices=("all", "headline", "grid", "none"),
        default="all",
        help="which cells to run (processes sharing --out merge their results; none: report only)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (one wastes less on a busy machine)"
    )
    parser.add_argument("--out", default="runs/bench_synaug")
    parser.add_argument("--card", default=None, help="model card whose generated section to rewrite")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = _read(results_path)
    start = time.process_time()
    plan = []
    if args.cells in ("all", "headline"):
        plan += [(*HEADLINE, seed, True) for seed in args.seeds]
    if args.cells in ("all", "grid"):
        plan += [(f, r, 0, False) for f, r in GRID_ORDER]
    ran, skipped = [], []
    for fraction, ratio, seed, headline in plan:
        key = _key(fraction, ratio)
        if str(seed) in results.get(key, {}):
            ran.append(f"{key} seed {seed} (kept)")
            continue
        if not headline and (time.process_time() - start) / 60 > args.budget_minutes:
            skipped.append(f"{key} seed {seed}")
            continue
        row = run_cell(args, fraction, ratio, seed, with_fidelity=headline)
        results = _read(results_path)  # another process may have added cells meanwhile
        results.setdefault(key, {})[str(seed)] = row
        tmp = results_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(results, indent=1))
        tmp.replace(results_path)
        ran.append(f"{key} seed {seed}")
        print(
            f"{key} seed {seed}: " + json.dumps({k: row[k] for k in (*ARMS, "seconds", "cpu_seconds")}),
            flush=True,
        )
    results = _read(results_path)
    ran += [
        f"{k} seed {s} (kept)"
        for k, rows in results.items()
        for s in rows
        if f"{k} seed {s}" not in " ".join(ran)
    ]
    print("cells run: " + "; ".join(ran))
    print("cells not run (budget): " + ("; ".join(skipped) or "none"))
    lines = [
        f"brain2d {args.size}×{args.size} phantom cohorts of {args.n} images (60/10/30 % splits, the demo's "
        f"lesions), lesion prevalence 1/(1+r) for imbalance 1:r, the label fraction kept on the training split "
        f"(the rest unlabelled); classify mode, {args.epochs} epochs, {args.threads} threads. TR+S: synthetic "
        f"minority share {args.share} of every batch from the TRTR run's latent prior; TSTR: {args.tstr_n} "
        "synthetic images per class from it. Test metrics on the real test split; mean (min–max) over seeds. "
        "TR+S is `medglass classify --datalist D --out runs/trs --synthetic-minority 0.25 --generator runs/trtr`.",
        "",
        *_table(results, out.resolve()),
        "",
        *_goals(results),
        "- The last column is the share of TR+S's synthetic minority images that the generator's own classifier "
        "reads as the minority class; where it is low, TR+S adds minority-labelled images that look like the "
        "majority class (label noise), the measured cause of a TR+S run below TRTR.",
        "",
        "Cells not listed did not fit the CPU budget of the run.",
    ]
    print("\n".join(lines))
    if args.card:
        command = "python bench/bench_synthetic_augmentation.py " + " ".join(sys.argv[1:])
        write_card_section(
            args.card,
            "bench_synthetic_augmentation.py",
            "Synthetic minority augmentation: TRTR / TSTR / TR+S",
            lines,
            command,
            note=f"(every cell of {results_path}, each run by a process of this script with the same settings)",
        )
        print(f"wrote the generated section of {args.card}")


if __name__ == "__main__":
    main()
