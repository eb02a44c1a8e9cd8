"""Segmentation benchmark: the glass-box segmenter beside MONAI UNet and SegResNet, at 100 % and 10 % of the masks.

Every variant trains with the same workflow (``pipelines.segmentation_training.train_segmentation``:
same cohort, transforms, patch size, loss, optimiser, epochs and seed; ``architecture`` picks the
network) in its own process, so that its peak resident memory is its own. At 10 % of the masks
the glass-box encoder starts either from scratch or from a ``medglass pretrain`` run on the same
cohort's training images (no labels), fine-tuned. One table: parameters, MMACs per image
(``networks.summary.count_macs``), training and inference images/s, test Dice/HD95/NSD and
lesion-wise sensitivity, peak resident memory; ``--card`` writes it into the bundle's model card
(``bench/model_card.py``).

Speeds vary with whatever else shares the machine; the ratios to UNet in the same run are the
comparable figures.

Example:
    nice -n 10 python bench/bench_segmentation.py --epochs 15 --out bench/out/segmentation \\
        --card bundles/glassbox_segmentation/docs/README.md
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.model_card import write_card_section  # noqa: E402

VARIANTS = {
    "unet_100": {"architecture": "unet", "label_fraction": 1.0},
    "glassbox_100": {"architecture": "glassbox", "label_fraction": 1.0},
    "glassbox_10": {"architecture": "glassbox", "label_fraction": 0.1},
    "glassbox_10_pretrained": {"architecture": "glassbox", "label_fraction": 0.1, "pretrained": True},
    "segresnet_100": {"architecture": "segresnet", "label_fraction": 1.0},
    "unet_10": {"architecture": "unet", "label_fraction": 0.1},
}
"""Variant name → SegmentationConfig fields (``pretrained``: start from the bench's pretraining run)."""


def _cohort(out: Path, n: int, size: int, seed: int) -> Path:
    from phantoms import PhantomConfig, generate_cohort

    datalist = out / "cohort" / "datalist.json"
    if not datalist.is_file():
        generate_cohort(
            PhantomConfig(kind="brain2d", n=n, seed=seed, size=size), out / "cohort", progress=False
        )
    return datalist


def _pretrain(out: Path, datalist: Path, size: int, epochs: int, seed: int, threads: int) -> Path:
    """A ``medglass pretrain`` run (preset ``tiny``, the segmenter's) on the cohort's training images."""
    import torch

    from pipelines.training import train
    from pipelines.training_config import TrainConfig

    torch.set_num_threads(threads)
    run = out / "pretrain"
    if not (run / "metrics.json").is_file():
        train(
            TrainConfig(
                datalist=datalist,
                out_dir=run,
                mode="pretrain",
                size="tiny",
                spatial_size=(size, size),
                epochs=epochs,
                seed=seed,
                device="cpu",
                tracking_uri=f"sqlite:///{out.resolve()}/mlruns.db",
            )
        )
    return run


def _variant(name: str, fields: dict, args: dict) -> dict[str, Any]:
    """Train and test one variant (in its own process); returns its figures."""
    import torch

    from networks.summary import count_macs, count_parameters
    from pipelines.segmentation_config import SegmentationConfig
    from pipelines.segmentation_data import load_segmentation_records
    from pipelines.segmentation_engines import (
        build_inferer,
        evaluation_loader,
        load_segmentation_run,
        segmentation_batch,
    )
    from pipelines.segmentation_training import train_segmentation

    torch.set_num_threads(args["threads"])
    out = Path(args["out"])
    values = dict(fields)
    if values.pop("pretrained", False):
        values["pretrained"] = str(out / "pretrain")
    config = SegmentationConfig(
        datalist=args["datalist"],
        out_dir=out / name,
        patch_size=(args["size"], args["size"]),
        epochs=args["epochs"],
        batch_size=8,
        seed=args["seed"],
        figures=0,
        device="cpu",
        tracking_uri=f"sqlite:///{out.resolve()}/mlruns.db",
        **values,
    )
    metrics = train_segmentation(config)
    network, config = load_segmentation_run(out / name)
    records = load_segmentation_records(config.datalist, "test")
    inferer = build_inferer(config)
    images = [segmentation_batch(batch)[0] for batch in evaluation_loader(config, records)]
    start = time.perf_counter()
    with torch.no_grad():
        for image in images:
            inferer(image, network)
    infer_seconds = time.perf_counter() - start
    total, _ = count_parameters(network)
    macs, _ = count_macs(network, (1, 1, args["size"], args["size"]))
    return {
        "variant": name,
        **{k: metrics.get(k, math.nan) for k in metrics if k.startswith("test_")},
        "train_img_s": metrics["train_img_s"],
        "infer_img_s": len(images) / infer_seconds,
        "train_images": metrics["train_images"],
        "params": total,
        "mmacs": macs / 1e6,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _fmt(value: float, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _table(rows: dict[str, dict], args: argparse.Namespace, split: dict[str, int]) -> list[str]:
    unet = rows.get("unet_100", {})
    lines = [
        f"brain2d phantoms, {args.size}×{args.size}, n={args.n} (train/val/test {split['training']}/"
        f"{split['validation']}/{split['test']}), seed {args.seed}; **{args.epochs} epochs** for every variant "
        f"(batch 8, patch {args.size}×{args.size}, DiceCELoss, Adam 1e-3 cosine), pretraining {args.pretrain_epochs} "
        f"epochs; on cpu with {args.threads} torch threads. Test metrics of the epoch best by validation mean Dice; "
        "Dice: MONAI MeanDice over the test images with a lesion; Dice (all): every test image (both masks "
        "empty: 1, so an empty prediction scores on lesion-free images); HD95 in pixels (one mask empty: the image "
        "diagonal), NSD at 1 px, lesion sensitivity at IoU > 0.1. Images/s vary with whatever else shares the "
        "machine: compare the ratios.",
        "",
        "| variant | masks | params | MMACs | train img/s | × UNet | infer img/s | Dice | Dice (all) | HD95 | NSD "
        "| lesion sens. | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        ratio = row["train_img_s"] / unet["train_img_s"] if unet else math.nan
        lines.append(
            f"| {name} | {int(row['train_images'])} | {row['params']:,} | {row['mmacs']:.1f} | "
            f"{row['train_img_s']:.1f} | {_fmt(ratio, 2)} | {row['infer_img_s']:.1f} | "
            f"{_fmt(row['test_mean_dice'])} | {_fmt(row['test_dice'])} | "
            f"{_fmt(row['test_hd95'], 2)} | {_fmt(row['test_nsd'])} | {_fmt(row['test_lesion_sensitivity'])} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    goals = []
    learned = 0.5  # below this test Dice a model has not learned the lesions: a goal is not judged on it
    gb = rows.get("glassbox_100")
    if gb and unet:
        gap = gb["test_mean_dice"] - unet["test_mean_dice"]
        speed = gb["train_img_s"] / unet["train_img_s"]
        if unet["test_mean_dice"] < learned:
            verdict = (
                f"not judged: UNet's test Dice is {unet['test_mean_dice']:.3f} after {args.epochs} epochs"
            )
        else:
            verdict = "met" if gap >= -0.02 and speed >= 2 else "missed"
        goals.append(
            f"- Goal: Dice within 0.02 of UNet at ≥ 2× its training img/s — {verdict}: Dice {gap:+.3f}, "
            f"speed {speed:.2f}× (on a shared machine)."
        )
    pre, scratch = rows.get("glassbox_10_pretrained"), rows.get("glassbox_10")
    if pre and scratch:
        gain = pre["test_mean_dice"] - scratch["test_mean_dice"]
        if max(pre["test_mean_dice"], scratch["test_mean_dice"]) < learned:
            verdict = f"not judged: neither has learned the lesions after {args.epochs} epochs"
        else:
            verdict = "met" if gain >= 0.05 else "missed"
        goals.append(
            f"- Goal: with 10 % of the masks the pretrained encoder beats training from scratch by ≥ 0.05 Dice — "
            f"{verdict}: {gain:+.3f}."
        )
    return lines + [""] + goals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="images of the brain2d cohort (default 200)")
    parser.add_argument("--size", type=int, default=64, help="image edge in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="cohort and training seed (default 0)")
    parser.add_argument("--epochs", type=int, default=15, help="training epochs per variant (default 15)")
    parser.add_argument(
        "--pretrain-epochs", type=int, default=5, help="epochs of the pretraining run (default 5)"
    )
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--out", default="bench/out/segmentation", help="work folder (runs are reused)")
    parser.add_argument("--card", default=None, help="model card whose generated section to rewrite")
    parser.add_argument(
        "--table-only", action="store_true", help="rebuild the table from OUT/results.json of a finished run"
    )
    args = parser.parse_args()
    for name in ("n", "epochs", "pretrain_epochs", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.size < 16 or args.size % 8:
        parser.error(f"--size must be a multiple of 8 (the networks' stride), >= 16, got {args.size}")
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    datalist = _cohort(out, args.n, args.size, args.seed)
    split = {k: len(v) for k, v in json.loads(datalist.read_text()).items() if isinstance(v, list)}
    shared = {**vars(args), "datalist": str(datalist), "out": str(out)}
    rows: dict[str, dict] = {}
    if args.table_only:
        rows = json.loads((out / "results.json").read_text())
        args.variants = []
    context = get_context("spawn")  # a fresh process per variant: its own peak memory, no shared state
    if any(VARIANTS[v].get("pretrained") for v in args.variants):
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            pool.submit(
                _pretrain, out, datalist, args.size, args.pretrain_epochs, args.seed, args.threads
            ).result()
    for name in args.variants:
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            rows[name] = pool.submit(_variant, name, VARIANTS[name], shared).result()
        print(json.dumps(rows[name]), flush=True)
        # after each variant, so that --table-only can show the finished ones of an interrupted run
        (out / "results.json").write_text(json.dumps(rows, indent=1, default=str))
    lines = _table(rows, args, split)
    print("\n".join(lines))
    print(f"bench seconds: {time.perf_counter() - start:.0f}")
    if args.card:
        write_card_section(
            args.card,
            "bench_segmentation.py",
            "Segmentation benchmark",
            lines,
            "python bench/bench_segmentation.py " + " ".join(sys.argv[1:]),
        )
        print(f"wrote the generated section of {args.card}")


if __name__ == "__main__":
    main()
