"""Training-loader cost with MONAI metadata tracking on (MONAI's default) and off (``train()``).

``pipelines.training.train`` runs with ``monai.data.set_track_meta(False)``: with tracking on,
every cached image is deep-copied as a ``MetaTensor`` on each access and every random flip
records its inverse. This benchmark times one pass of the training loader of ``train()``
(``build_transforms(training=True)``, ``CacheDataset``, batch 32, shuffled, no workers) over a
generated ``brain2d`` cohort both ways, on one torch thread, and prints ms per image and the
ratio. Data preparation (loading, caching) is outside the timing.

Run: ``.venv/bin/python bench/bench_loader.py [--n 1000] [--repeats 3]`` (keep the other core
idle: the figures are wall-clock times).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from monai.data import CacheDataset, DataLoader, get_track_meta, set_track_meta  # noqa: E402

from phantoms import PhantomConfig, generate_cohort  # noqa: E402
from pipelines.datalists import load_datalist  # noqa: E402
from pipelines.training import build_transforms, resolve_intensity_range  # noqa: E402
from pipelines.training_config import TrainConfig  # noqa: E402


def time_loader(config: TrainConfig, records: list[dict], track_meta: bool, repeats: int) -> list[float]:
    """Milliseconds per image of ``repeats`` passes over the training loader.

    Args:
        config: the run settings the transforms are built from.
        records: training records (``image``, ``label``).
        track_meta: MONAI metadata tracking during caching and iteration.
        repeats: timed passes.

    Returns:
        One ms/image figure per pass.
    """
    previous = get_track_meta()
    set_track_meta(track_meta)
    try:
        dataset = CacheDataset(
            records, transform=build_transforms(config, True), cache_rate=1.0, progress=False
        )
        loader = DataLoader(dataset, batch_size=32, shuffle=True, num_workers=0)
        figures = []
        for _ in range(repeats):
            start, n = time.perf_counter(), 0
            for batch in loader:
                n += batch["image"].shape[0]
            figures.append(1000.0 * (time.perf_counter() - start) / n)
        return figures
    finally:
        set_track_meta(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=1000, help="phantoms generated (their training section is timed)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per setting")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        generate_cohort(
            PhantomConfig(kind="brain2d", n=args.n, seed=args.seed, size=64), Path(tmp), progress=False
        )
        datalist = Path(tmp) / "datalist.json"
        config = TrainConfig(
            datalist=datalist, out_dir=Path(tmp) / "run", spatial_size=(64, 64), progress=False
        )
        records = [
            {"image": r["image"], "label": int(r["label"])} for r in load_datalist(datalist, "training")
        ]
        resolve_intensity_range(config, records, verbose=False)
        rows = {
            "metadata tracked (MONAI default)": time_loader(config, records, True, args.repeats),
            "metadata off (train())": time_loader(config, records, False, args.repeats),
        }
    base = statistics.median(rows["metadata tracked (MONAI default)"])
    print(f"training loader, {len(records)} images 64x64, batch 32, 1 thread, {args.repeats} passes (median)")
    print(f"{'setting':34s} {'ms/img':>7s} {'x tracked':>10s}  passes")
    for name, figures in rows.items():
        median = statistics.median(figures)
        print(f"{name:34s} {median:7.2f} {base / median:10.2f}  {', '.join(f'{f:.2f}' for f in figures)}")


if __name__ == "__main__":
    main()
