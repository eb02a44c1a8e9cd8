"""Accuracy and training speed side by side, in one run on the same data and epochs.

Models: GlassBoxNet tiny/small/base/tiny_fine (``pipelines.training.train``) against MONAI
DenseNet121 and resnet18 trained the same way (same transforms, optimiser, epochs,
batch size, best-validation-AUC checkpoint, test set), plus the label-efficiency trio
for one GlassBox size: all labels, 10 % labels semi-supervised (all images for
reconstruction) and the 10 % labelled images alone, with DenseNet121 on the same 10 % subset
as the reference of what that many labels allow (``--pretrain-epochs N`` adds the demo's
recipe: self-supervised pretraining on all images, then the same 10 % fine-tuning from it).
Prints test AUC, training images/s and ratios to DenseNet121, and the phantom parameters used (the difficulty must leave
headroom: DenseNet121 at or below test AUC 0.97).

Run: ``.venv/bin/python bench/bench_training.py --epochs 8 --models tiny densenet121``
(2,000 train / 250 validation / 500 test brain2d 64×64 phantoms by default).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phantoms import PhantomConfig, generate_cohort  # noqa: E402
from pipelines.datalists import load_datalist, mask_labels  # noqa: E402
from pipelines.training import build_transforms, resolve_intensity_range, train  # noqa: E402
from pipelines.training_config import TrainConfig  # noqa: E402

GLASSBOX = ("tiny", "small", "base", "tiny_fine")
BASELINES = ("densenet121", "resnet18")


def make_cohort(
    out: Path,
    n_train: int,
    n_val: int,
    n_test: int,
    seed: int,
    marker: float,
    lesion_contrast: tuple[float, float] | None = None,
) -> tuple[Path, dict]:
    """Generate the benchmark cohort; returns its datalist and the phantom config used.

    ``lesion_contrast`` overrides the default ``PhantomConfig.lesion_contrast_range`` (to try
    another difficulty).
    """
    n = n_train + n_val + n_test
    extra = {"lesion_contrast_range": tuple(lesion_contrast)} if lesion_contrast else {}
    config = PhantomConfig(
        kind="brain2d",
        n=n,
        seed=seed,
        size=64,
        marker_correlation=marker,
        split_fractions=(n_train / n, n_val / n, n_test / n),
        **extra,
    )
    generate_cohort(config, out, progress=False)
    return out / "datalist.json", asdict(config)


def _config(
    datalist: Path,
    out: Path,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    mode: str = "classify",
    **extra,
) -> TrainConfig:
    """The settings every model of the benchmark shares (``mode="pretrain"`` for the pretraining run)."""
    return TrainConfig(
        datalist=datalist,
        out_dir=out,
        mode=mode,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        spatial_size=(64, 64),
        progress=False,
        **extra,
    )


def train_baseline(
    name: str,
    datalist: Path,
    out: Path,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> dict:
    """Train a MONAI classifier with cross-entropy exactly as the GlassBox classify mode is scheduled.

    The same transforms and in-memory cache (MONAI ``CacheDataset``) as the GlassBox runs, so
    that training images/s compare the networks, not the data loading.
    """
    from monai.data import CacheDataset, DataLoader
    from monai.metrics import ROCAUCMetric
    from monai.networks.nets import DenseNet121, resnet18
    from monai.utils import set_determinism

    set_determinism(seed)
    net = (
        DenseNet121(spatial_dims=2, in_channels=1, out_channels=2)
        if name == "densenet121"
        else resnet18(spatial_dims=2, n_input_channels=1, num_classes=2)
    )
    records = load_datalist(datalist, "training")
    records = [{"image": r["image"], "label": r["label"]} for r in records if int(r["label"]) >= 0]
    cfg = _config(datalist, out, epochs, batch_size, lr, seed)
    resolve_intensity_range(cfg, records)  # the same dataset-level scaling as the GlassBox runs
    train_loader = DataLoader(
        CacheDataset(records, build_transforms(cfg, True), progress=False),
        batch_size=batch_size,
        shuffle=True,
    )

    loaders: dict = {}  # cached like the GlassBox runs' data (pipelines.training._loader)

    def evaluate(section: str) -> float:
        if section not in loaders:
            section_records = [
                {"image": r["image"], "label": r["label"]} for r in load_datalist(datalist, section)
            ]
            dataset = CacheDataset(section_records, build_transforms(cfg, False), progress=False)
            loaders[section] = DataLoader(dataset, batch_size=64)
        loader = loaders[section]
        metric = ROCAUCMetric()
        net.eval()
        with torch.no_grad():
            for batch in loader:
                prob = torch.softmax(net(batch["image"]), dim=1)[:, 1]
                metric(prob, batch["label"].long())
        return float(metric.aggregate())

    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs)
    best, best_state, seen, seconds = -1.0, None, 0, 0.0
    for _ in range(epochs):
        net.train()
        start = time.perf_counter()
        for batch in train_loader:
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(batch["image"]), batch["label"].long().view(-1))
            loss.backward()
            optimiser.step()
            seen += len(batch["image"])
        seconds += time.perf_counter() - start
        scheduler.step()
        auc = evaluate("validation")
        if auc > best:
            best, best_state = auc, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(best_state, out / "best_state.pt")  # kept for later analyses of the same model
    return {
        "best_val_auc": best,
        "test_auc": evaluate("test"),
        "train_img_s": seen / seconds,
        "params": sum(p.numel() for p in net.parameters()),
    }


def train_glassbox(
    size: str, datalist: Path, out: Path, epochs: int, batch_size: int, lr: float, seed: int, **extra
) -> dict:
    start = time.perf_counter()
    metrics = train(
        _config(
            datalist,
            out,
            epochs,
            batch_size,
            lr,
            seed,
            size=size,
            tracking_uri=f"sqlite:///{out.parent}/mlruns.db",
            **extra,
        )
    )
    seconds = time.perf_counter() - start
    return {
        "best_val_auc": metrics.get("best_val_auc"),
        "test_auc": metrics.get("test_auc"),
        "train_img_s": metrics["train_img_s"],  # training steps only, validation excluded
        "wall_s": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["tiny", "densenet121"], choices=GLASSBOX + BASELINES)
    parser.add_argument(
        "--label-efficiency", default="tiny", help="GlassBox size for the 10%% label trio ('' to skip)"
    )
    parser.add_argument(
        "--label-efficiency-baselines",
        nargs="*",
        default=["densenet121"],
        choices=BASELINES,
        help="MONAI baselines also trained on the same 10%% labelled subset alone (the reference: "
        "is the 10%% task learnable at this difficulty at all?)",
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--pretrain-epochs",
        type=int,
        default=0,
        help="with N > 0, add the demo's recipe as a label-efficiency row: self-supervised "
        "pretraining on all training images for N epochs, then the 10%% semi-supervised fine-tuning "
        "from it (default 0: no such row)",
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=None,
        help="fine-tuning epochs of that row (default: --epochs)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--extra-seeds",
        type=int,
        nargs="*",
        default=[],
        help="also train every --models entry with these training seeds on the same cohort "
        "(initialisation and shuffling; the cohort keeps --seed) and print mean and spread",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-val", type=int, default=250)
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    parser.add_argument(
        "--lesion-contrast",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="lesion contrast range of the cohort (default: PhantomConfig's)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows already in OUT/results.json (same data and settings) and train only the rest",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    work = Path(args.out or tempfile.mkdtemp(prefix="medglass-bench-")).resolve()
    datalist, phantom = make_cohort(
        work / "cohort", args.n_train, args.n_val, args.n_test, args.seed, 0.5, args.lesion_contrast
    )
    results = work / "results.json"
    settings = {
        k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "seed", "n_train", "n_val", "n_test")
    }
    settings["lesion_contrast_range"] = list(phantom["lesion_contrast_range"])
    settings["flip_prob"] = TrainConfig.flip_prob  # training augmentation of every model
    settings["labelled_share"] = TrainConfig.labelled_share  # the semi-supervised row's batches
    rows: dict[str, dict] = {}
    if args.resume and results.is_file():
        saved = json.loads(results.read_text())
        if saved.get("settings") != settings:
            raise SystemExit(f"--resume: {results} was made with {saved.get('settings')}, not {settings}")
        rows = saved["rows"]

    def record(name: str, row: dict) -> None:
        """Keep each finished row on disk at once: a crash later loses nothing already measured."""
        rows[name] = {**row, "threads": args.threads}
        results.write_text(json.dumps({"settings": settings, "rows": rows}, indent=1))

    for name in args.models:
        for seed in [args.seed, *args.extra_seeds]:
            key = name if seed == args.seed else f"{name} seed {seed}"
            folder = work / (name if seed == args.seed else f"{name}_seed{seed}")
            if key in rows:
                continue
            print(f"training {key} ...", file=sys.stderr, flush=True)
            if name in BASELINES:
                start = time.perf_counter()
                row = train_baseline(name, datalist, folder, args.epochs, args.batch_size, args.lr, seed)
                row["wall_s"] = time.perf_counter() - start
                record(key, row)
            else:
                record(
                    key, train_glassbox(name, datalist, folder, args.epochs, args.batch_size, args.lr, seed)
                )
    size = args.label_efficiency
    if size and f"{size} 10% semi-sup" not in rows:
        print(f"label efficiency ({size}) ...", file=sys.stderr, flush=True)
        record(
            f"{size} 10% semi-sup",
            train_glassbox(
                size,
                datalist,
                work / "semi",
                args.epochs,
                args.batch_size,
                args.lr,
                args.seed,
                label_fraction=0.1,
            ),
        )
    finetune_epochs = args.finetune_epochs or args.epochs
    pretrained_row = f"{size} 10% pretrain {args.pretrain_epochs}+{finetune_epochs}"
    if size and args.pretrain_epochs > 0 and pretrained_row not in rows:
        print(
            f"label efficiency ({size}): pretraining, then 10 % fine-tuning ...", file=sys.stderr, flush=True
        )
        start = time.perf_counter()
        pretrain_dir = work / f"pretrain_{args.pretrain_epochs}"
        if not (pretrain_dir / "best.pt").is_file():
            train(
                _config(
                    datalist,
                    pretrain_dir,
                    args.pretrain_epochs,
                    args.batch_size,
                    args.lr,
                    args.seed,
                    mode="pretrain",
                    size=size,
                    erase_prob=0.5,  # context modelling, as the demo and the pretrain bundle
                    tracking_uri=f"sqlite:///{work}/mlruns.db",
                )
            )
        row = train_glassbox(
            size,
            datalist,
            work / f"semi_{pretrained_row.split()[-1]}",
            finetune_epochs,
            args.batch_size,
            args.lr,
            args.seed,
            label_fraction=0.1,
            pretrained=pretrain_dir / "best.pt",
        )
        row["wall_s"] = time.perf_counter() - start  # pretraining included; img/s: fine-tuning only
        record(pretrained_row, row)
    alone = [f"{size} 10% alone"] if size else []
    alone += [f"{name} 10% alone" for name in args.label_efficiency_baselines]
    if any(name not in rows for name in alone):
        subset = [
            r for r in mask_labels(load_datalist(datalist, "training"), 0.1, args.seed) if r["label"] >= 0
        ]
        sub_list = work / "subset_datalist.json"
        sections = {"training": subset}
        sections.update({name: load_datalist(datalist, name) for name in ("validation", "test")})
        sub_list.write_text(
            json.dumps(
                {
                    name: [{"image": str(Path(r["image"]).resolve()), "label": r["label"]} for r in recs]
                    for name, recs in sections.items()
                }
            )
        )
    if size and f"{size} 10% alone" not in rows:
        record(
            f"{size} 10% alone",
            train_glassbox(size, sub_list, work / "alone", args.epochs, args.batch_size, args.lr, args.seed),
        )
    for name in args.label_efficiency_baselines:  # is the 10 % task learnable at all by a strong CNN?
        if f"{name} 10% alone" in rows:
            continue
        print(f"training {name} on the 10 % subset ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        row = train_baseline(
            name, sub_list, work / f"{name}_alone", args.epochs, args.batch_size, args.lr, args.seed
        )
        row["wall_s"] = time.perf_counter() - start
        record(f"{name} 10% alone", row)

    print("\nphantom parameters:", json.dumps({k: v for k, v in phantom.items() if k not in ("n", "seed")}))
    print(
        f"data: {args.n_train} train / {args.n_val} val / {args.n_test} test, 64x64, {args.epochs} epochs, "
        f"batch {args.batch_size}, lr {args.lr}, {args.threads} threads, random flips p {settings['flip_prob']} "
        f"per axis, semi-supervised batches {settings['labelled_share']:.0%} labelled\n"
    )
    ref = rows.get("densenet121")
    print(
        f"{'model':22s} {'val AUC':>8s} {'test AUC':>9s} {'d AUC vs DN121':>15s} {'train img/s':>12s} "
        f"{'x DN121':>8s} {'wall s':>7s}"
    )
    for name, r in rows.items():
        d_auc = r["test_auc"] - ref["test_auc"] if ref else float("nan")
        speed = r["train_img_s"] / ref["train_img_s"] if ref else float("nan")
        print(
            f"{name:22s} {r['best_val_auc']:8.3f} {r['test_auc']:9.3f} {d_auc:15.3f} {r['train_img_s']:12.1f} "
            f"{speed:8.2f} {r['wall_s']:7.0f}"
        )
    if args.extra_seeds:
        print("\ntest AUC over training seeds (same cohort):")
        for name in args.models:
            aucs = [rows[k]["test_auc"] for k in rows if k == name or k.startswith(f"{name} seed ")]
            print(
                f"  {name:12s} n={len(aucs)}  mean {statistics.mean(aucs):.3f}  "
                f"sd {statistics.stdev(aucs) if len(aucs) > 1 else float('nan'):.3f}  "
                f"min {min(aucs):.3f}  max {max(aucs):.3f}  above 0.6: {sum(a > 0.6 for a in aucs)}/{len(aucs)}"
            )


if __name__ == "__main__":
    main()
