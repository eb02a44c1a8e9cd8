"""Glass-box detector vs MONAI's RetinaNet with its ResNet backbone, side by side, at 100 % and 10 % of the boxes.

Both are MONAI ``RetinaNet`` + ``RetinaNetDetector`` with the same anchors (4, 6, 8 px at the
finest level, ×2 per level), pyramid strides (2, 4, 8), ATSS matcher, hard-negative sampler,
box selection, data, transforms, epochs, optimiser (Adam, cosine schedule) and seed; they differ
in the feature extractor only: the glass-box encoder (preset ``tiny``) with a 32-channel pyramid,
or MONAI's ``ResNetFeatures`` (``resnet18``, no pretrained weights) with the 256-channel pyramid
of MONAI's ``resnet_fpn_feature_extractor`` (:func:`networks.detection.build_resnet_retinanet`).
Each (model, label fraction) runs in its own process, so its peak resident memory is its own.
Test metrics are those of the last epoch (no model selection). Prints the table with ratios to
the baseline and, with ``--card``, writes it into the bundle model card's generated section.

    nice -n 10 python bench/bench_detection.py --card bundles/glassbox_detection/docs/README.md
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = ("glassbox", "resnet")
LABELS = {"glassbox": "glass-box (tiny, FPN 32)", "resnet": "MONAI ResNet18 RetinaNet (FPN 256)"}


def _run_one(args: argparse.Namespace) -> dict:
    """Train one model on one label fraction, test it; returns its figures (runs in a subprocess)."""
    from ignite.engine import Engine
    from monai.utils import set_determinism

    from networks.detection import build_resnet_retinanet
    from networks.summary import count_macs, count_parameters
    from pipelines.detection_config import DetectionConfig
    from pipelines.detection_data import load_detection_datalist
    from pipelines.detection_predictions import (
        build_detection_network,
        loader_for,
        make_detector,
        predict_detections,
        score_detections,
    )
    from pipelines.detection_training import DetectionStep, select_label_fraction

    torch.set_num_threads(args.threads)
    size = (args.size, args.size)
    config = DetectionConfig(
        datalist=args.datalist,
        out_dir=args.out,
        spatial_size=size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        label_fraction=args.fraction,
        seed=args.seed,
        device="cpu",
    )
    set_determinism(seed=config.seed)
    if args.model == "glassbox":
        network = build_detection_network(config)
    else:
        network = build_resnet_retinanet(2, model_name="resnet18")
    macs, _ = count_macs(_AllMaps(network), (1, 1, *size))
    detector = make_detector(config, network)
    records = select_label_fraction(
        load_detection_datalist(config.datalist, "training"), config.label_fraction, config.seed
    )
    train_loader = loader_for(config, records, training=True)
    test_loader = loader_for(config, load_detection_datalist(config.datalist, "test"), training=False)
    optimizer = torch.optim.Adam(network.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    step = DetectionStep(detector, optimizer, torch.device("cpu"))
    engine = Engine(step)
    seen, seconds, warm = 0, 0.0, False
    for _ in range(config.epochs):
        for batch in train_loader:
            start = time.perf_counter()
            step(engine, batch)
            if warm:  # the first step (allocations, first calls) is left out of the rate
                seconds += time.perf_counter() - start
                seen += len(batch)
            warm = True
        scheduler.step()
    start = time.perf_counter()
    cases = list(predict_detections(detector, test_loader, torch.device("cpu")))
    infer_seconds = time.perf_counter() - start
    metrics = score_detections(cases, config.iou_threshold)
    return {
        "model": args.model,
        "fraction": args.fraction,
        "params": count_parameters(network)[0],
        "mmacs": macs / 1e6,
        "train_img_s": seen / seconds if seconds else float("nan"),
        "infer_img_s": len(cases) / infer_seconds,
        "train_images": len(records),
        "test_images": len(cases),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        **{k: metrics[k] for k in ("map_0.1", "map_0.1_0.5", "cpm", "sensitivity", "fp_per_image")},
    }


class _AllMaps(torch.nn.Module):
    """A RetinaNet as a module returning one tensor (every head map, flattened), for ``count_macs``."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(x)
        return torch.cat([m.flatten(1) for m in [*out["classification"], *out["box_regression"]]], dim=1)


def _table(rows: dict, fractions: list[float], args: argparse.Namespace) -> list[str]:
    def cell(model: str, fraction: float, key: str, fmt: str) -> str:
        value = rows[(model, fraction)][key]
        return format(value, fmt) if value == value else "nan"

    header = (
        "| figure | label fraction | " + " | ".join(LABELS[m] for m in MODELS) + " | glass-box / ResNet |"
    )
    lines = [header, "|---|---|" + "---|" * len(MODELS) + "---|"]
    figures = [
        ("parameters", "params", ",d"),
        ("MMACs per image (backbone + pyramid + heads)", "mmacs", ".1f"),
        ("train img/s (optimisation steps after the first)", "train_img_s", ".1f"),
        ("infer img/s (batch, incl. box decoding and NMS)", "infer_img_s", ".1f"),
        ("mAP@0.1 (test)", "map_0.1", ".3f"),
        ("mAP@0.1:0.5 (test)", "map_0.1_0.5", ".3f"),
        ("CPM (test)", "cpm", ".3f"),
        ("sensitivity, all boxes kept (test)", "sensitivity", ".3f"),
        ("peak RSS MiB (whole process)", "peak_rss_mib", ".0f"),
    ]
    for fraction in fractions:
        for name, key, fmt in figures:
            if key in ("params", "mmacs") and fraction != fractions[0]:
                continue
            a, b = rows[("glassbox", fraction)][key], rows[("resnet", fraction)][key]
            ratio = f"{a / b:.2f}" if b and a == a and b == b else "–"
            shown = f"{fraction:.0%}" if key not in ("params", "mmacs") else "–"
            lines.append(
                f"| {name} | {shown} | {cell('glassbox', fraction, key, fmt)} | {cell('resnet', fraction, key, fmt)} | {ratio} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=100, help="images in the brain2d phantom cohort (70/10/20 split)"
    )
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "detection"))
    parser.add_argument("--card", help="model card whose generated section gets the table")
    parser.add_argument("--model", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--fraction", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--datalist", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model:
        print(json.dumps(_run_one(args)))
        return

    from phantoms import PhantomConfig, generate_cohort

    out = Path(args.out)
    cohort = out / f"cohort_n{args.n}_s{args.size}_seed{args.seed}"
    if not (cohort / "datalist.json").is_file():
        generate_cohort(
            PhantomConfig(kind="brain2d", n=args.n, seed=args.seed, size=args.size), cohort, progress=False
        )
    rows = {}
    for fraction in args.fractions:
        for model in MODELS:
            cmd = [
                sys.executable,
                __file__,
                "--model",
                model,
                "--fraction",
                str(fraction),
                "--datalist",
                str(cohort / "datalist.json"),
            ]
            cmd += [
                "--size",
                str(args.size),
                "--epochs",
                str(args.epochs),
                "--batch-size",
                str(args.batch_size),
            ]
            cmd += ["--seed", str(args.seed), "--threads", str(args.threads), "--out", str(out)]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{model} at {fraction:.0%} failed:\n{proc.stderr[-3000:]}")
            rows[(model, fraction)] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{model} {fraction:.0%}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    first = rows[("glassbox", args.fractions[0])]
    intro = (
        f"brain2d phantoms, {args.size}×{args.size}, n={args.n} ({first['train_images']} training images at 100 %, "
        f"{first['test_images']} test), seed {args.seed}; {args.epochs} epochs, batch {args.batch_size}, Adam lr 2e-3 "
        f"(cosine), on cpu with {args.threads} torch threads; test metrics of the last epoch (no model selection); "
        "lesion hit at IoU ≥ 0.1 for FROC/CPM. Images/s vary with whatever else shares the machine."
    )
    lines = [intro, "", *_table(rows, args.fractions, args)]
    print("\n".join(lines))
    (out / "results.json").write_text(json.dumps([rows[k] for k in rows], indent=1))
    if args.card:
        from bench.model_card import write_card_section

        command = "python bench/bench_detection.py " + " ".join(sys.argv[1:])
        write_card_section(args.card, "bench_detection.py", "Detection benchmark", lines, command)
        print(f"model card: {args.card}", file=sys.stderr)


if __name__ == "__main__":
    main()
