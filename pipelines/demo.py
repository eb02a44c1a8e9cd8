"""The demo behind ``make demo``: a phantom cohort, generated, ingested and summarised.

Later workflows (training, explanations, audits) extend this one function.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from os import PathLike
from pathlib import Path

__all__ = ["run_demo"]


def run_demo(out: str | PathLike = "runs/demo", n: int = 400, seed: int = 0, progress: bool = True) -> dict:
    """Generate a brain2d phantom cohort, ingest its image folder and print a summary.

    Args:
        out: output folder (cohort in ``out/cohort``, ingestion in ``out/ingest``).
        n: number of phantom images.
        seed: phantom seed.
        progress: progress bars.

    Returns:
        The summary dict that is also written to ``out/demo_summary.json``.

    Raises:
        ValueError: ``n`` < 10.
    """
    from evaluation.cohort_figures import cohort_montage
    from phantoms.brain_cohort import PhantomConfig, generate_cohort
    from pipelines.ingest import ingest_folder

    if n < 10:
        raise ValueError(f"n must be >= 10 for a meaningful demo, got {n!r}")
    out_path = Path(out)
    started = time.perf_counter()
    print(f"[1/3] generating {n} brain2d phantoms (seed {seed}) -> {out_path / 'cohort'}")
    cohort = generate_cohort(
        PhantomConfig(kind="brain2d", n=n, seed=seed), out_path / "cohort", progress=progress
    )
    print(f"[2/3] ingesting {out_path / 'cohort' / 'images'} -> {out_path / 'ingest'}")
    ingest = ingest_folder(
        out_path / "cohort" / "images", out_path / "ingest", progress=progress, salt="demo"
    )
    print("[3/3] drawing a montage")
    montage = cohort_montage(out_path / "cohort" / "datalist.json", out_path / "cohort_montage.png")

    datalist = json.loads((out_path / "cohort" / "datalist.json").read_text())
    records = [r for section in ("training", "validation", "test") for r in datalist.get(section, [])]
    agreement = sum((r["attributes"]["marker"] == "present") == bool(r["label"]) for r in records) / len(
        records
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
        "ingest_files_per_s": round(ingest.n_files / max(ingest.seconds, 1e-9), 1),
        "phantom_seconds": cohort.get("seconds"),
        "total_seconds": round(time.perf_counter() - started, 1),
        "montage": str(montage),
    }
    (out_path / "demo_summary.json").write_text(json.dumps(summary, indent=1))
    print("\nmedglass demo summary")
    for key, value in summary.items():
        print(f"  {key:24s} {value}")
    print(f"\nlook at {montage} for sample images with lesion outlines")
    return summary
