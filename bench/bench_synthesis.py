"""Pre- → post-contrast synthesis on the dce2d phantoms: L1 alone, L1 + adversarial, and no model.

One dce2d cohort (``--n`` subjects at ``--size``, ``--seed``; the phantoms' default 70/10/20
split), then, on the same data with the same epochs and seed:

* **L1 only**: :func:`pipelines.synthesis_training.train_synthesis` with ``adversarial_weight=0``
  (no critic);
* **L1 + adversarial**: the pix2pix weights (L1 100, adversarial 1, conditional PatchGAN critic;
  :class:`SynthesisConfig`'s default is L1 alone, as this bench measured);
* **unchanged source**: no model, the prediction is the pre-contrast source itself (the floor a
  model has to beat; its enhancement Dice is 0 wherever something enhances);
* **noise-free target (ceiling)**: no model, the prediction is the noise-free post-contrast
  image (the same cohort generated again with ``noise_sigma=0``: same anatomy, lesions, bias
  field and scale, only the noise draws left out), brought to the noisy source's intensity map.
  It is what a model that predicted everything but the target's own (unpredictable) noise would
  score: the reference for the errors and the enhancement figures. Not a strict bound for SSIM,
  which can rate a smoother prediction higher against a noisy target.

For each: generator parameters and MMACs per image (:func:`networks.summary.model_summary`,
FLOPs / 2), train img/s (training images × epochs / seconds of the whole ``train_synthesis``
call, which includes per-epoch validation, checkpoints and MLflow; the bare optimisation step is
timed apart as "step img/s"), inference img/s (best generator, forward passes over the test
images, batch 16, no grad) and the test metrics of the best generator
(:mod:`evaluation.synthesis_metrics`): whole-image SSIM/PSNR/MAE, in-lesion SSIM/MAE,
enhancement correlation and enhancement Dice. The goals of the synthesis issue are printed next
to the figures (met/missed). MLflow tracks into ``<out>/mlruns.db``.

Finished variants in ``--out`` are kept when the bench is started again with the same settings
(``--rerun`` trains them anew). ``--card`` rewrites the generated section of a model card with
the table, the date and the command.

Run: ``.venv/bin/python bench/bench_synthesis.py`` (``--n 40 --epochs 2`` for a smoke run;
``--out runs/bench_synthesis --card bundles/<synthesis bundle>/docs/README.md`` to keep the runs
and update the card).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monai.data import DataLoader, Dataset  # noqa: E402

from bench.model_card import write_card_section  # noqa: E402
from evaluation.synthesis_metrics import synthesis_metrics  # noqa: E402
from networks.summary import model_summary  # noqa: E402
from phantoms.contrast_cohort import generate_contrast_cohort  # noqa: E402
from phantoms.contrast_config import ContrastPhantomConfig  # noqa: E402
from pipelines.synthesis_config import SynthesisConfig  # noqa: E402
from pipelines.synthesis_data import PairKeys, load_paired_datalist, paired_transforms  # noqa: E402
from pipelines.synthesis_inference import load_translator  # noqa: E402
from pipelines.synthesis_predictions import mean_metrics, plain_tensor, predict_cases  # noqa: E402
from pipelines.synthesis_training import Pix2PixStep, build_synthesis_networks, train_synthesis  # noqa: E402

VARIANTS = {
    "l1": "L1 only",
    "l1_adv": "L1 + adversarial",
    "source": "unchanged source",
    "ceiling": "noise-free target (ceiling)",
}
TRAINED = ("l1", "l1_adv")
INFER_BATCH = 16
# (key, label, format, goal: (">=" or "<=", threshold) or None)
FIGURES = (
    ("test_ssim", "whole-image SSIM", "{:.3f}", (">=", 0.90)),
    ("test_psnr", "whole-image PSNR (dB)", "{:.2f}", None),
    ("test_mae", "whole-image MAE", "{:.4f}", None),
    ("test_lesion_ssim", "in-lesion SSIM (dilated lesion box)", "{:.3f}", (">=", 0.75)),
    ("test_lesion_mae", "in-lesion MAE", "{:.4f}", None),
    ("test_enhancement_correlation", "enhancement correlation (in body)", "{:.3f}", None),
    ("test_enhancement_dice", "enhancement Dice (in body)", "{:.3f}", (">=", 0.7)),
    ("params", "generator parameters", "{:,.0f}", None),
    ("critic_params", "critic parameters", "{:,.0f}", None),
    ("mmacs", "generator MMACs per image", "{:.1f}", None),
    (
        "train_img_s",
        "train img/s (whole run: steps, validation, checkpoints, MLflow)",
        "{:.1f}",
        (">=", 50.0),
    ),
    ("step_img_s", "step img/s (optimisation steps alone, one epoch)", "{:.1f}", None),
    ("infer_img_s", f"infer img/s (batch {INFER_BATCH}, no grad)", "{:.0f}", None),
    ("train_seconds", "train seconds (whole run)", "{:.0f}", None),
    ("best_epoch", "best epoch (by the validation metric select_by)", "{:.0f}", None),
)


def make_cohort(
    out: Path, n: int, size: int, seed: int, noise_sigma: float | None = None
) -> tuple[Path, dict]:
    """The dce2d cohort of the bench; reused when ``out`` already holds one of the same settings."""
    datalist = out / "datalist.json"
    settings = {"kind": "dce2d", "n": n, "size": size, "seed": seed, "noise_sigma": noise_sigma}
    stamp = out / "bench_settings.json"
    if datalist.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == settings:
        return datalist, json.loads((out / "bench_summary.json").read_text())
    summary = generate_contrast_cohort(ContrastPhantomConfig(**settings), out, progress=False)
    summary = {k: summary[k] for k in ("n", "counts", "lesions", "time_points")}
    (out / "bench_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    stamp.write_text(json.dumps(settings))
    return datalist, summary


def _scaled_like(image: torch.Tensor, own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``image``, scaled by the ``(lo, hi)`` map ``own``, re-expressed in the map ``other``."""
    (lo, hi), (lo2, hi2) = (float(v) for v in own), (float(v) for v in other)
    return (image * (hi - lo) + lo - lo2) / (hi2 - lo2)


def ceiling_metrics(datalist: Path, noise_free: Path, size: int, threshold: float) -> dict[str, float]:
    """Mean ``test_*`` metrics of the noise-free targets as predictions of the noisy ones.

    Raises:
        ValueError: the two cohorts differ in their test ids or lesion masks (not the same subjects).
    """
    transform = paired_transforms((size, size), training=False)
    noisy, clean = (load_paired_datalist(d, "test") for d in (datalist, noise_free))
    if [r[PairKeys.ID] for r in noisy] != [r[PairKeys.ID] for r in clean]:
        raise ValueError(f"{noise_free}: its test ids differ from those of {datalist}")
    rows = []
    for record_n, record_c in zip(noisy, clean, strict=True):
        a, b = transform(record_n), transform(record_c)
        if not torch.equal(plain_tensor(a[PairKeys.MASK]), plain_tensor(b[PairKeys.MASK])):
            raise ValueError(f"{record_c[PairKeys.ID]}: the noise-free cohort has other lesions")
        pred = _scaled_like(
            plain_tensor(b[PairKeys.TARGET]), b[PairKeys.SOURCE_SCALE], a[PairKeys.SOURCE_SCALE]
        )
        mask = plain_tensor(a[PairKeys.MASK]) if float(a[PairKeys.HAS_MASK]) > 0 else None
        rows.append(
            synthesis_metrics(
                plain_tensor(a[PairKeys.SOURCE]),
                pred,
                plain_tensor(a[PairKeys.TARGET]),
                mask,
                threshold=threshold,
            )
        )
    return mean_metrics(rows, "test_")


def _cohort_settings(datalist: Path) -> tuple[int, int, int]:
    stamp = json.loads((datalist.parent / "bench_settings.json").read_text())
    return stamp["n"], stamp["size"], stamp["seed"]


def _loader(datalist: Path, section: str, size: int, batch_size: int) -> DataLoader:
    records = load_paired_datalist(datalist, section)
    dataset = Dataset(records, transform=paired_transforms((size, size), training=False))
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def test_metrics(generator: torch.nn.Module, loader: DataLoader, threshold: float) -> dict[str, float]:
    """Mean ``test_*`` metrics of a generator over a loader, as ``train_synthesis`` computes them."""
    rows = [
        synthesis_metrics(
            case[PairKeys.SOURCE],
            case[PairKeys.PRED],
            case[PairKeys.TARGET],
            case[PairKeys.MASK],
            threshold=threshold,
        )
        for case in predict_cases(generator, loader, torch.device("cpu"))
    ]
    return mean_metrics(rows, "test_")


def _sources(loader: DataLoader) -> torch.Tensor:
    return torch.cat([plain_tensor(batch[PairKeys.SOURCE]) for batch in loader])


def infer_throughput(generator: torch.nn.Module, sources: torch.Tensor, device: torch.device) -> float:
    """Images/s of forward passes over ``sources`` in batches of :data:`INFER_BATCH`, no grad."""
    generator = generator.to(device).eval()
    with torch.no_grad():
        generator(sources[:INFER_BATCH].to(device))  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(sources), INFER_BATCH):
            generator(sources[i : i + INFER_BATCH].to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return len(sources) / (time.perf_counter() - start)


def step_throughput(config: SynthesisConfig, device: torch.device) -> float:
    """Images/s of bare :class:`Pix2PixStep` calls over the training images (one epoch, fresh networks)."""
    torch.manual_seed(config.seed)
    generator, critic = build_synthesis_networks(config)
    generator.to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=(0.5, 0.999))
    opt_d = None
    if critic is not None:
        critic.to(device)
        opt_d = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=(0.5, 0.999))
    step = Pix2PixStep(generator, critic, opt_g, opt_d, config.l1_weight, config.adversarial_weight, device)
    batches = [
        {PairKeys.SOURCE: plain_tensor(b[PairKeys.SOURCE]), PairKeys.TARGET: plain_tensor(b[PairKeys.TARGET])}
        for b in _loader(Path(config.datalist), "training", config.spatial_size[0], config.batch_size)
    ]
    step(None, batches[0])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for batch in batches:
        step(None, batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return sum(len(b[PairKeys.SOURCE]) for b in batches) / (time.perf_counter() - start)


def _tracking_uri(out: Path) -> str:
    return f"sqlite:///{out.resolve()}/mlruns.db"


def _create_tracking_store(out: Path) -> None:
    """Create the MLflow database now, so that its migrations (seconds) are not timed as training."""
    import mlflow

    mlflow.MlflowClient(tracking_uri=_tracking_uri(out)).search_experiments()


def run_variant(
    variant: str, datalist: Path, out: Path, size: int, epochs: int, seed: int, device: str
) -> dict[str, float]:
    """Train one variant (or, for ``source``, evaluate no model) and measure every figure."""
    test_loader = _loader(datalist, "test", size, INFER_BATCH)
    threshold = SynthesisConfig(datalist=datalist, out_dir=out).enhancement_threshold
    if variant == "source":
        return test_metrics(torch.nn.Identity(), test_loader, threshold)
    if variant == "ceiling":
        noise_free, _ = make_cohort(out / "cohort_noise_free", *_cohort_settings(datalist), noise_sigma=0.0)
        return ceiling_metrics(datalist, noise_free, size, threshold)
    run = out / variant
    if run.exists():  # a partial run of other settings must not be resumed
        shutil.rmtree(run)
    config = SynthesisConfig(
        datalist=datalist,
        out_dir=run,
        spatial_size=(size, size),
        epochs=epochs,
        adversarial_weight=0.0 if variant == "l1" else 1.0,
        seed=seed,
        device=device,
        tracking_uri=_tracking_uri(out),
        experiment="bench-synthesis",
        run_name=f"bench-synthesis-{variant}",
    )
    start = time.perf_counter()
    result = train_synthesis(config)
    seconds = time.perf_counter() - start
    n_train = len(load_paired_datalist(datalist, "training"))
    torch_device = torch.device("cuda" if device == "cuda" else "cpu")
    generator, critic = build_synthesis_networks(config)
    summary = model_summary(generator, (1, 1, size, size))
    best, _ = load_translator(run)
    row = {k: float(v) for k, v in result.items()}
    row.update(
        {
            "params": float(summary["params_total"]),
            "critic_params": float(sum(p.numel() for p in critic.parameters()))
            if critic is not None
            else 0.0,
            "mmacs": float(summary["macs"]) / 1e6,
            "train_seconds": seconds,
            "train_img_s": n_train * epochs / seconds,
            "step_img_s": step_throughput(config, torch_device),
            "infer_img_s": infer_throughput(best, _sources(test_loader), torch_device),
        }
    )
    if not any(k.startswith("test_") for k in result):  # no best.pt: say so rather than guess
        row.update({k: math.nan for k, *_ in FIGURES if k.startswith("test_")})
    return row


def _strict(value):
    """``value`` with NaN and infinities as ``None`` (strict JSON)."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _meets(value: float, goal: tuple[str, float]) -> bool:
    op, threshold = goal
    return value >= threshold if op == ">=" else value <= threshold


def table(results: dict[str, dict[str, float]]) -> list[str]:
    """Markdown rows: one per figure, one column per variant, and the goal with met/missed."""
    lines = ["| figure | " + " | ".join(VARIANTS.values()) + " | goal |", "|---" * (len(VARIANTS) + 2) + "|"]
    for key, label, fmt, goal in FIGURES:
        cells = []
        for variant in VARIANTS:
            value = results.get(variant, {}).get(key)
            cells.append(fmt.format(value) if value is not None and math.isfinite(value) else "–")
        verdict = "–"
        if goal is not None:
            parts = []
            for variant in TRAINED:
                value = results.get(variant, {}).get(key)
                if value is None or not math.isfinite(value):
                    continue
                parts.append(f"{VARIANTS[variant]} {'met' if _meets(value, goal) else 'missed'}")
            verdict = f"{'≥' if goal[0] == '>=' else '≤'} {goal[1]:g}" + (
                ": " + ", ".join(parts) if parts else ""
            )
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {verdict} |")
    return lines


def bench(args: argparse.Namespace, out: Path) -> tuple[dict, list[str]]:
    """Generate the cohort, run every variant (reusing finished ones of the same settings)."""
    datalist, cohort = make_cohort(out / "cohort", args.n, args.size, args.seed)
    settings = {
        "n": args.n,
        "size": args.size,
        "seed": args.seed,
        "epochs": args.epochs,
        "device": args.device,
    }
    results_path = out / "results.json"
    _create_tracking_store(out)
    stored = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results = stored.get("results", {}) if stored.get("settings") == settings and not args.rerun else {}
    for variant in args.variants:
        if variant in results:
            continue
        row = run_variant(variant, datalist, out, args.size, args.epochs, args.seed, args.device)
        results[variant] = row
        results_path.write_text(json.dumps({"settings": settings, "results": results}, indent=1))
        print(f"{VARIANTS[variant]}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()), flush=True)
    counts = cohort["counts"]
    split = "/".join(str(counts.get(k, 0)) for k in ("training", "validation", "test"))
    lines = [
        f"dce2d phantoms, {args.size}×{args.size}, n={args.n} (train/val/test {split}), seed {args.seed}; "
        f"{args.epochs} epochs, batch {SynthesisConfig.batch_size}, generator channels "
        f"{SynthesisConfig.channels}, on {args.device} with {args.threads} torch threads. Test metrics "
        "of the epoch best by the validation metric select_by (in-lesion MAE by default), means over test cases (NaN cases, e.g. no lesion, "
        "left out). Images/s vary with whatever else shares the machine.",
        "",
        *table(results),
    ]
    return {"settings": settings, "cohort": cohort, "results": results}, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="subjects of the dce2d cohort (default 200)")
    parser.add_argument("--size", type=int, default=64, help="image edge in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="cohort and training seed (default 0)")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per variant (default 30)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument(
        "--out", default=None, help="folder kept for the cohort and runs (default: a temp folder)"
    )
    parser.add_argument("--rerun", action="store_true", help="train variants again even if finished in --out")
    parser.add_argument("--card", default=None, help="model card whose generated section to rewrite")
    args = parser.parse_args()
    for name in ("n", "epochs", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.size < 16 or args.size % 8:
        parser.error(f"--size must be a multiple of 8 (the generator's stride), >= 16, got {args.size}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.out is None:
        with tempfile.TemporaryDirectory(prefix="bench_synthesis_") as tmp:
            result, lines = bench(args, Path(tmp))
    else:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        result, lines = bench(args, out)
    result["bench_seconds"] = time.perf_counter() - start
    print(json.dumps(_strict(result), indent=1))
    print("\n".join(lines))
    if args.card:
        write_card_section(
            args.card,
            "bench_synthesis.py",
            "Synthesis benchmark",
            lines,
            "python bench/bench_synthesis.py " + " ".join(sys.argv[1:]),
        )
        print(f"wrote the generated section of {args.card}")


if __name__ == "__main__":
    main()
