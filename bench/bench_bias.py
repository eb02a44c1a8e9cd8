"""Ground-truth validation of the bias audit and of mitigation without retraining, over seeds.

For each seed: a shortcut cohort (``phantoms.generate_shortcut_cohort``: marker agreement 0.9 in
training/validation/test, a shifted test section with agreement 0.1) and a control cohort
(agreement 0.5, same shifted section); the classifier (``--size``, default the training default)
is trained on each with the training defaults; then

- ``audit`` on the in-distribution test section and on the shifted one (agreement 0.1): is the
  spurious ``marker`` flagged on the biased model, and the null attribute ``random_group`` never?
- ``mitigate --attribute marker`` (plain LEACE, conditional LEACE pooled over the labels, and
  LEACE inside each label), fitted on a held-out calibration cohort of ``--n-calibration``
  images with the training agreement (default 3,000; with 0, on the 300-image validation
  section — the network's codes of its own training images are not representative):
  worst-group accuracy on the reversed section before/after, marker probe AUC after (also
  within each label), AUC change on the in-distribution test set, DFR alongside, and how the
  marker's effect on the calibration codes differs between the labels
  (:mod:`evaluation.attribute_overlap`); the network's weights are checked unchanged.

Prints flag rates and the mitigation figures (means, per-seed ranges and one line per seed);
``results.json`` holds every seed's figures and is written after each run: started again with
the same ``--out``, the bench keeps the finished runs and does the rest. ``--summarize`` prints
the summary of one or more ``results.json`` files (e.g. seeds run in parallel processes).

Run: ``.venv/bin/python bench/bench_bias.py --seeds 0 1 2 3 4 --lesion-contrast 0.08 0.25 --card
bundles/glassbox_classification/docs/README.md`` (n 3,000, the default 20 epochs; ``--card`` writes
the summary into the model card's generated section). Too few epochs leave a shortcut model with
the marker alone, and then there is no lesion information for an eraser to keep.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.model_card import write_card_section  # noqa: E402
from networks.presets import SIZE_PRESETS  # noqa: E402
from phantoms import SHIFTED_SECTION, PhantomConfig, generate_shortcut_cohort  # noqa: E402
from pipelines.bias_audit import audit  # noqa: E402
from pipelines.bias_mitigation import mitigate  # noqa: E402
from pipelines.training import train  # noqa: E402
from pipelines.training_config import TrainConfig  # noqa: E402

ATTRIBUTES = ["marker", "random_group", "sex", "site"]


def run_one(work: Path, seed: int, correlation: float, args: argparse.Namespace) -> dict:
    """Cohort → train → audit → mitigate for one seed and one training marker agreement."""
    tag = f"seed{seed}_r{correlation}"
    cohort = work / f"cohort_{tag}"
    if not (cohort / "datalist.json").is_file():
        generate_shortcut_cohort(
            cohort,
            n=args.n,
            seed=seed,
            train_correlation=correlation,
            shifted_correlation=0.1,
            n_shifted=args.n_shifted,
            n_calibration=args.n_calibration,
            progress=False,
            **({"lesion_contrast_range": tuple(args.lesion_contrast)} if args.lesion_contrast else {}),
        )
    datalist = cohort / "datalist.json"
    model = work / f"model_{tag}"
    uri = f"sqlite:///{work / 'mlruns.db'}"
    metrics = train(
        TrainConfig(
            datalist=datalist,
            out_dir=model,
            epochs=args.epochs,
            batch_size=32,
            seed=seed,
            size=args.size,
            latent=args.latent,
            spatial_size=(64, 64),
            tracking_uri=uri,
            experiment="bench_bias",
            progress=False,
        )
    )
    row = {
        "seed": seed,
        "train_correlation": correlation,
        "test_auc": metrics.get("test_auc", float("nan")),
    }
    # the in-distribution test section (marker agreement as in training) and the shifted one
    # (agreement 0.1): a model that leans on the marker shows its subgroup gap on the latter
    for section, suffix in (("test", ""), (SHIFTED_SECTION, "_shifted")):
        audited = audit(
            model,
            datalist,
            work / f"audit_{tag}{suffix}",
            section=section,
            attributes=ATTRIBUTES,
            n_permutations=args.permutations,
            seed=seed,
            track=True,
            progress=False,
        )
        row[f"flags{suffix}"] = audited["flags"]
        row[f"marker_reliance_p{suffix}"] = audited["metrics"]["marker/reliance_p_holm"]
        row[f"marker_gap{suffix}"] = audited["metrics"]["marker/gap"]
    for name in args.variants:
        m = mitigate(
            model,
            "marker",
            datalist,
            work / f"mitigate_{tag}_{name}",
            calibration_section=args.calibration,
            conditional=name != "plain",
            per_label=name == "per_label",
            seed=seed,
            track=True,
            progress=False,
        )["metrics"]
        row[name] = {
            "id_auc_before": m["test/before/auc"],
            "id_auc_erased": m["test/erased/auc"],
            "shifted_wga_before": m[f"{SHIFTED_SECTION}/before/worst_group_accuracy"],
            "shifted_wga_erased": m[f"{SHIFTED_SECTION}/erased/worst_group_accuracy"],
            "shifted_wga_recalibrated": m[f"{SHIFTED_SECTION}/erased_recalibrated/worst_group_accuracy"],
            "shifted_wga_dfr": m[f"{SHIFTED_SECTION}/dfr/worst_group_accuracy"],
            "id_wga_before": m["test/before/worst_group_accuracy"],
            "id_wga_recalibrated": m["test/erased_recalibrated/worst_group_accuracy"],
            "shifted_auc_before": m[f"{SHIFTED_SECTION}/before/auc"],
            "shifted_auc_erased": m[f"{SHIFTED_SECTION}/erased/auc"],
            "shifted_auc_dfr": m[f"{SHIFTED_SECTION}/dfr/auc"],
            "probe_before": m["test/before/probe_auc"],
            "probe_erased": m["test/erased/probe_auc"],
            "probe_erased_shifted": m[f"{SHIFTED_SECTION}/erased/probe_auc"],
            "probe_within_erased": m["test/erased/probe_auc_within_label"],
            "probe_within_erased_shifted": m[f"{SHIFTED_SECTION}/erased/probe_auc_within_label"],
            "weights_unchanged": m["weights_unchanged"],
            # how the marker's effect on the calibration codes differs between the labels (NaN: not measured)
            "effect_difference_disease_cosine": m.get(
                "calibration/effect_difference_disease_cosine", float("nan")
            ),
            "effect_difference_ratio": m.get("calibration/effect_difference_ratio", float("nan")),
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--n", type=int, default=3000, help="main cohort size (70/10/20 split)")
    parser.add_argument("--n-shifted", type=int, default=400)
    parser.add_argument(
        "--n-calibration",
        type=int,
        default=3000,
        help="images of a held-out calibration cohort (training agreement; section 'calibration'); "
        "0: none, calibrate on the validation section",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=TrainConfig.epochs,
        help=f"training epochs (default {TrainConfig.epochs})",
    )
    parser.add_argument(
        "--size",
        choices=tuple(SIZE_PRESETS),
        default=TrainConfig.size,
        help=f"network preset (default {TrainConfig.size}, the training default)",
    )
    parser.add_argument(
        "--latent",
        choices=("spatial", "vector"),
        default=TrainConfig.latent,
        help=f"generative core (default {TrainConfig.latent}, the training default)",
    )
    parser.add_argument(
        "--card",
        default=None,
        help="model card whose generated bias section to rewrite with the summary, the date and the command",
    )
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument(
        "--lesion-contrast",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="lesion contrast range of both cohorts (default: PhantomConfig's)",
    )
    parser.add_argument("--out", default="runs/bench_bias")
    parser.add_argument(
        "--summarize",
        nargs="+",
        default=None,
        metavar="RESULTS_JSON",
        help="print the summary of finished runs saved in these results.json files (merged) and exit",
    )
    parser.add_argument(
        "--calibration",
        nargs="+",
        default=None,
        help="held-out sections the eraser and DFR are fitted on (default: calibration, or validation "
        "with --n-calibration 0)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=["plain", "conditional", "per_label"],
        default=["plain", "conditional", "per_label"],
        help="erasures compared: LEACE, LEACE within labels (pooled), LEACE inside each label",
    )
    parser.add_argument(
        "--agreements",
        type=float,
        nargs="+",
        default=[0.9, 0.5],
        help="training marker-label agreements (0.9: the shortcut; 0.5: the no-shortcut control)",
    )
    args = parser.parse_args()
    if args.summarize:
        rows = [row for path in args.summarize for row in json.loads(Path(path).read_text())]
        print(f"{len(rows)} runs from {', '.join(args.summarize)}")
        _summarize_to_card(rows, args)
        return
    if args.calibration is None:
        args.calibration = ["calibration"] if args.n_calibration > 0 else ["validation"]
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    results = work / "results.json"
    # runs already finished in this folder are kept, not repeated: a crash loses nothing measured
    rows = json.loads(results.read_text()) if results.is_file() else []
    if rows:
        print(f"kept {len(rows)} finished runs from {results} (delete it to run them again)", flush=True)
    done = {(r["seed"], r["train_correlation"]) for r in rows}
    start = time.perf_counter()
    for seed in args.seeds:
        for correlation in args.agreements:
            if (seed, correlation) in done:
                continue
            row = run_one(work, seed, correlation, args)
            rows.append(row)
            print(json.dumps(row), flush=True)
            results.write_text(json.dumps(rows, indent=1))
    contrast = args.lesion_contrast or PhantomConfig().lesion_contrast_range
    print(
        f"\n{len(rows)} runs in {time.perf_counter() - start:.0f} s; {args.size}, main cohort n={args.n}, "
        f"epochs={args.epochs}, "
        f"lesion contrast {tuple(contrast)}, calibration {'+'.join(args.calibration)}"
    )
    _summarize_to_card(rows, args)


def _summarize_to_card(rows: list[dict], args: argparse.Namespace) -> None:
    """Print the summary; with ``--card``, also write it into the model card's generated section."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        summarize(rows, args.variants)
    text = buffer.getvalue()
    print(text, end="")
    if not args.card:
        return
    card = Path(args.card)
    command = "python bench/bench_bias.py " + " ".join(sys.argv[1:])
    lines = ["```", text.strip("\n"), "```"]
    heading = "Bias audit and mitigation on the default core"
    write_card_section(card, "bench_bias.py", heading, lines, command, note=f"({len(rows)} runs)")
    print(f"wrote the generated section of {card}")


def summarize(rows: list[dict], variants: list[str]) -> None:
    """Print flag rates and mitigation figures per training agreement (means and per-seed ranges).

    Args:
        rows: one dict per finished run (``run_one``'s); a run without a variant is left out of
            that variant's figures.
        variants: the erasure variants to report.
    """
    for correlation in sorted({r["train_correlation"] for r in rows}, reverse=True):
        sub = [r for r in rows if r["train_correlation"] == correlation]
        print(
            f"\ntraining marker agreement {correlation} ({len(sub)} seeds: {sorted(r['seed'] for r in sub)})"
        )
        for suffix, where in (("", "in-distribution test"), ("_shifted", f"{SHIFTED_SECTION} section")):
            print(f"  audit of the {where}:")
            for attr in ATTRIBUTES:
                rate = statistics.mean(float(r[f"flags{suffix}"].get(attr, False)) for r in sub)
                print(f"    flag rate {attr:13s} {rate:.2f}")
        aucs = ", ".join(f"{r['test_auc']:.3f}" for r in sub)
        print(
            f"  test AUC (training run)           {statistics.mean(r['test_auc'] for r in sub):.3f} ({aucs})"
        )
        for name in variants:
            have = [r for r in sub if name in r]
            if not have:
                continue

            def mean(key: str, have: list[dict] = have, name: str = name) -> float:
                return statistics.mean(r[name][key] for r in have)

            def spread(key: str, base: str | None = None, scale: float = 1.0, have=have, name=name) -> str:
                values = [scale * (r[name][key] - (r[name][base] if base else 0.0)) for r in have]
                return (
                    f"{min(values):+.3f} … {max(values):+.3f}"
                    if base
                    else f"{min(values):.3f} … {max(values):.3f}"
                )

            print(f"  LEACE {name} ({len(have)} seeds):")
            print(
                f"    in-distribution AUC before/after  {mean('id_auc_before'):.3f} / {mean('id_auc_erased'):.3f} "
                f"(change {mean('id_auc_erased') - mean('id_auc_before'):+.3f}; per seed "
                f"{spread('id_auc_erased', 'id_auc_before')})"
            )
            print(
                f"    shifted worst-group acc before / erased@0.5 / erased@recalibrated / DFR  "
                f"{mean('shifted_wga_before'):.3f} / {mean('shifted_wga_erased'):.3f} / "
                f"{mean('shifted_wga_recalibrated'):.3f} / {mean('shifted_wga_dfr'):.3f} "
                f"({100 * (mean('shifted_wga_recalibrated') - mean('shifted_wga_before')):+.1f} points; per seed "
                f"{spread('shifted_wga_recalibrated', 'shifted_wga_before', 100.0)})"
            )
            print(
                f"    in-distribution worst-group acc before / recalibrated  {mean('id_wga_before'):.3f} / "
                f"{mean('id_wga_recalibrated'):.3f}"
            )
            print(
                f"    shifted AUC before/erased/DFR     {mean('shifted_auc_before'):.3f} / "
                f"{mean('shifted_auc_erased'):.3f} / {mean('shifted_auc_dfr'):.3f}"
            )
            print(
                f"    marker probe AUC test before/after {mean('probe_before'):.3f} / {mean('probe_erased'):.3f} "
                f"(shifted after {mean('probe_erased_shifted'):.3f}; within label after: test "
                f"{mean('probe_within_erased'):.3f}, shifted {mean('probe_within_erased_shifted'):.3f})"
            )
            print(
                f"    per seed: probe after {spread('probe_erased')}, within label after {spread('probe_within_erased')}"
            )
            print(
                f"    weights unchanged in all runs     {all(r[name]['weights_unchanged'] == 1.0 for r in have)}"
            )
            for r in have:
                v = r[name]
                print(
                    f"      seed {r['seed']}: AUC {v['id_auc_before']:.3f} → {v['id_auc_erased']:.3f}, shifted WGA "
                    f"{v['shifted_wga_before']:.2f} → {v['shifted_wga_recalibrated']:.2f}, probe within label "
                    f"{v['probe_within_erased']:.2f}, marker effect difference along the disease: cosine "
                    f"{v.get('effect_difference_disease_cosine', float('nan')):+.2f}, "
                    f"{v.get('effect_difference_ratio', float('nan')):.2f} of its length"
                )


if __name__ == "__main__":
    main()
