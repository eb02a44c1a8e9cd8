"""The vector core against the spatial-latent core, side by side on the bench cohort, over seeds.

For each seed: one brain2d cohort (64×64, the benchmark's default lesions, clean images and
body masks written beside it), one model per core trained the same way (classify mode, all
labels, ``--epochs``), then on the test set:

* test AUC; train and inference images/s; parameters and MMACs;
* the reconstruction: in-lesion contrast (lesion mean less the mean of a 3-pixel ring around it,
  inside the body) as a share of the clean image's, for lesions of >= 10 pixels; PSNR of the
  input and of the reconstruction against the clean image (no noise, no bias field);
* the latent-shift counterfactual (the ``medglass explain`` default settings) on correctly
  classified positives: flip rate, re-encoded flip rate (the decoded counterfactual given to the
  whole network again), strict pointing game of ``|difference|``, Dice of ``|difference| > 0.5 max``
  against the lesion mask, the share of ``|difference|`` outside the body, and realism (AUROC
  of a logistic regression on the model's own pooled encoder features telling counterfactuals
  from real test images of the cohort, 5-fold cross-validated; 0.5 = indistinguishable);
* MIG and DCI disentanglement of the global code (the whole ``mu`` for the vector core) against
  the phantoms' generative factors.

Finished runs in ``--out`` are kept when the bench is started again (nothing lost on a crash).
``--card`` rewrites the generated section of the model card with the figures, the date and the
command.

Run: ``.venv/bin/python bench/bench_generative_core.py --seeds 0 1 2 --out runs/bench_core
--card bundles/glassbox_classification/docs/README.md``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.model_card import write_card_section  # noqa: E402
from evaluation.counterfactuals import latent_shift_counterfactual  # noqa: E402
from evaluation.disentanglement import disentanglement_scores  # noqa: E402
from evaluation.generative_factors import factor_table  # noqa: E402
from evaluation.map_scores import pointing_game, thresholded_dice  # noqa: E402
from networks.summary import model_summary  # noqa: E402
from phantoms import PhantomConfig, generate_cohort  # noqa: E402
from pipelines.explain import ExplainSettings  # noqa: E402
from pipelines.latent_codes import load_model_input  # noqa: E402
from pipelines.trained_model import load_trained_model  # noqa: E402
from pipelines.training import train  # noqa: E402
from pipelines.training_config import TrainConfig  # noqa: E402

CORES = ("vector", "spatial")
METRICS = (
    ("test_auc", "test AUC", "{:.3f}"),
    ("lesion_contrast_ratio", "in-lesion recon contrast / true (lesions >= 10 px, median)", "{:.2f}"),
    ("psnr_input", "PSNR input vs clean (dB, median)", "{:.1f}"),
    ("psnr_recon", "PSNR recon vs clean (dB, median)", "{:.1f}"),
    ("cf_flip_rate", "counterfactual flip rate", "{:.2f}"),
    ("cf_reencoded_flip_rate", "re-encoded flip rate", "{:.2f}"),
    ("cf_pointing_strict", "pointing game (strict)", "{:.2f}"),
    ("cf_dice", "Dice of the difference map thresholded at half its maximum vs lesion (mean)", "{:.2f}"),
    ("cf_outside_body", "share of the absolute difference outside the body (mean)", "{:.3f}"),
    ("cf_realism_auroc", "realism: real-vs-counterfactual AUROC", "{:.2f}"),
    ("mig", "MIG of the global code", "{:.3f}"),
    ("dci_disentanglement", "DCI disentanglement of the global code", "{:.3f}"),
    ("params", "parameters", "{:,.0f}"),
    ("mmacs", "MMACs per image", "{:.1f}"),
    ("train_img_s", "train img/s", "{:.0f}"),
    ("infer_img_s", "infer img/s (batch 64)", "{:.0f}"),
)


def make_cohort(out: Path, seed: int, n_train: int, n_val: int, n_test: int) -> Path:
    """The bench cohort of one seed, with clean images and body masks; reused when present."""
    datalist = out / "datalist.json"
    if datalist.is_file():
        return datalist
    n = n_train + n_val + n_test
    config = PhantomConfig(
        kind="brain2d", n=n, seed=seed, size=64, split_fractions=(n_train / n, n_val / n, n_test / n)
    )
    generate_cohort(config, out, progress=False, references=True)
    return datalist


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 10.0 * np.log10(1.0 / max(mse, 1e-12))


def _contrast(image: torch.Tensor, lesion: np.ndarray, ring: np.ndarray) -> float:
    return float(image[torch.from_numpy(lesion)].mean() - image[torch.from_numpy(ring)].mean())


def _pooled_features(net: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return net.encoder(images).flatten(2).mean(dim=2).numpy()


def _realism_auroc(net: torch.nn.Module, real: list[torch.Tensor], fake: list[torch.Tensor]) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = min(len(real), len(fake))
    if n < 10:
        return float("nan")
    features = np.concatenate(
        [_pooled_features(net, torch.cat(real[:n])), _pooled_features(net, torch.cat(fake[:n]))]
    )
    labels = np.r_[np.zeros(n), np.ones(n)]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(np.mean(cross_val_score(model, features, labels, cv=5, scoring="roc_auc")))


def _upgrade_checkpoints(run: Path) -> None:
    """Rename the posterior layers of checkpoints saved before they were grouped under ``latent.``."""
    for name in ("best.pt", "last.pt"):
        path = run / name
        if not path.is_file():
            continue
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = state["model"] if "model" in state else state
        if "to_spatial.weight" not in model:
            continue
        renamed = {
            (f"latent.{k}" if k.split(".")[0] in ("to_spatial", "reduce", "to_global") else k): v
            for k, v in model.items()
        }
        if "model" in state:
            state["model"] = renamed
        else:
            state = renamed
        torch.save(state, path)


def evaluate(run: Path, datalist: Path, max_positives: int) -> dict[str, float]:
    """Every figure of the comparison for one trained run on its cohort's test set."""
    _upgrade_checkpoints(run)
    trained = load_trained_model(run)
    net = trained.network.eval()
    base = datalist.parent
    records = json.loads(datalist.read_text())["test"]
    settings = ExplainSettings()
    ratios, psnr_in, psnr_rec = [], [], []
    cf_rows, real_images, cf_images, mus, ids = [], [], [], [], []
    for record in records:
        x, lesion = load_model_input(
            base / record["image"],
            trained.spatial_size,
            mask=base / record["mask"],
            intensity_range=trained.intensity_range,
        )
        clean, body = load_model_input(
            base / record["clean"],
            trained.spatial_size,
            mask=base / record["body"],
            intensity_range=trained.intensity_range,
        )
        with torch.no_grad():
            out = net(x)
        mus.append(out["mu"][0].numpy())
        ids.append(record["id"])
        recon = out["recon"][0, 0]
        psnr_in.append(_psnr(x[0, 0], clean[0, 0]))
        psnr_rec.append(_psnr(recon, clean[0, 0]))
        if record["label"] != 1:
            if len(real_images) < max_positives:
                real_images.append(x)
            continue
        m = lesion.numpy()
        if m.sum() >= 10:
            ring = ndimage.binary_dilation(m, iterations=3) & ~m & body.numpy()
            truth = _contrast(clean[0, 0], m, ring)
            if truth > 0:
                ratios.append(_contrast(recon, m, ring) / truth)
        prob = float(torch.softmax(out["logits"], dim=1)[0, 1])
        if prob < 0.5 or len(cf_rows) >= max_positives or not m.any():
            continue
        cf = latent_shift_counterfactual(
            net,
            x,
            threshold=settings.threshold,
            step_size=settings.cf_step_size,
            max_steps=settings.cf_max_steps,
            frames=settings.cf_frames,
            overshoot=settings.cf_overshoot,
            readout=settings.cf_readout,
            focus=settings.cf_focus,
        )
        diff = cf.diff_map.abs().amax(dim=0)
        dice = thresholded_dice(diff, lesion)
        total = float(diff.sum())
        outside = float(diff[~body].sum()) / total if total > 0 else 0.0
        cf_rows.append(
            {
                "flipped": float(cf.flipped),
                "reencoded": float(cf.reencoded_prob < settings.threshold),
                "pointing": float(pointing_game(diff, lesion)),
                "dice": dice,
                "outside": outside,
            }
        )
        cf_images.append(cf.counterfactual[None])
    mu = np.stack(mus)
    code = (
        mu[:, getattr(net, "spatial_channels", 0) :]
        if getattr(net, "latent_kind", "vector") == "spatial"
        else mu
    )
    factors, names, continuous = factor_table(base / "factors.csv", ids)
    dis = disentanglement_scores(code, factors, names, continuous)
    summary = model_summary(net, (1, 1, *trained.spatial_size))
    batch = torch.rand(64, 1, *trained.spatial_size)
    with torch.no_grad():
        net(batch)
        start = time.perf_counter()
        for _ in range(5):
            net(batch)
        infer = 5 * 64 / (time.perf_counter() - start)
    metrics = json.loads((run / "metrics.json").read_text())
    mean = lambda key: float(np.mean([r[key] for r in cf_rows])) if cf_rows else float("nan")  # noqa: E731
    return {
        "test_auc": float(metrics["test_auc"]),
        "lesion_contrast_ratio": float(np.median(ratios)) if ratios else float("nan"),
        "lesions_scored": len(ratios),
        "psnr_input": float(np.median(psnr_in)),
        "psnr_recon": float(np.median(psnr_rec)),
        "cf_images": len(cf_rows),
        "cf_flip_rate": mean("flipped"),
        "cf_reencoded_flip_rate": mean("reencoded"),
        "cf_pointing_strict": mean("pointing"),
        "cf_dice": mean("dice"),
        "cf_outside_body": mean("outside"),
        "cf_realism_auroc": _realism_auroc(net, real_images, cf_images),
        "mig": float(dis["mig"]),
        "dci_disentanglement": float(dis["dci_disentanglement"]),
        "params": float(summary["params_total"]),
        "mmacs": float(summary["macs"]) / 1e6,
        "train_img_s": float(metrics["train_img_s"]),
        "infer_img_s": infer,
    }


def _table(results: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Markdown rows: mean (min–max over seeds) per core, and the new/old ratio of the means."""
    seeds = sorted({seed for core in results.values() for seed in core})
    lines = [
        f"| figure ({len(seeds)} seeds: {', '.join(seeds)}) | vector core | spatial core | spatial / vector |",
        "|---|---|---|---|",
    ]
    for key, label, fmt in METRICS:
        cells, means = [], []
        for core in CORES:
            values = [r[key] for r in results.get(core, {}).values() if key in r and np.isfinite(r[key])]
            if not values:
                cells.append("–")
                means.append(float("nan"))
                continue
            mean = statistics.fmean(values)
            means.append(mean)
            spread = f" ({fmt.format(min(values))}–{fmt.format(max(values))})" if len(values) > 1 else ""
            cells.append(fmt.format(mean) + spread)
        ratio = f"{means[1] / means[0]:.2f}" if np.isfinite(means).all() and means[0] != 0 else "–"
        lines.append(f"| {label} | {cells[0]} | {cells[1]} | {ratio} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cores", nargs="+", default=list(CORES), choices=CORES)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=250)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--max-positives", type=int, default=40, help="true positives given a counterfactual")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--beta",
        type=float,
        default=None,
        help="KL weight of the global code (default: TrainConfig's, 0 in classify mode)",
    )
    parser.add_argument("--out", default="runs/bench_core")
    parser.add_argument("--card", default=None, help="model card whose generated section to rewrite")
    parser.add_argument(
        "--reevaluate",
        action="store_true",
        help="evaluate the trained runs again (e.g. after changing explain's settings)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results: dict = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for seed in args.seeds:
        datalist = make_cohort(out / f"cohort_s{seed}", seed, args.n_train, args.n_val, args.n_test)
        for core in args.cores:
            if str(seed) in results.get(core, {}) and not args.reevaluate:
                continue
            run = out / f"{core}_s{seed}"
            if not (run / "metrics.json").is_file() or "test_auc" not in json.loads(
                (run / "metrics.json").read_text()
            ):
                train(
                    TrainConfig(
                        datalist=datalist,
                        out_dir=run,
                        mode="classify",
                        latent=core,
                        epochs=args.epochs,
                        beta=args.beta,
                        seed=seed,
                        spatial_size=(64, 64),
                        tracking_uri=f"sqlite:///{out.resolve()}/mlruns.db",
                        experiment="bench-generative-core",
                    )
                )
            row = evaluate(run, datalist, args.max_positives)
            results.setdefault(core, {})[str(seed)] = row
            results_path.write_text(json.dumps(results, indent=1))
            print(f"seed {seed} {core}: " + ", ".join(f"{k} {v:.3g}" for k, v in row.items()), flush=True)
    settings = ExplainSettings()
    lines = [
        f"brain2d 64×64 cohorts ({args.n_train} train / {args.n_val} validation / {args.n_test} test per seed, "
        f"the phantoms' default lesions), classify mode with all labels, {args.epochs} epochs, {args.threads} threads; "
        f"counterfactuals on up to {args.max_positives} correctly classified test positives per model with the "
        f"`medglass explain` defaults (readout {settings.cf_readout!r}, focus {settings.cf_focus!r}, "
        f"{settings.cf_frames} frames, {settings.cf_overshoot} log-odds past the threshold). Means over seeds "
        "(min–max); images/s were measured while other work shared the two cores, so they vary between runs.",
        "",
        *_table(results),
    ]
    print("\n".join(lines))
    if args.card:
        command = "python bench/bench_generative_core.py " + " ".join(sys.argv[1:])
        write_card_section(
            args.card, "bench_generative_core.py", "Generative core: vector vs spatial latent", lines, command
        )
        print(f"wrote the generated section of {args.card}")


if __name__ == "__main__":
    main()
