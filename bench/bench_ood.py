"""How well the out-of-distribution flag separates a run's own kind of image from others (AUROC).

For a trained run: its held-out test images (in-distribution) against real DICOM files that
pydicom and pydicom-data ship (CT, MR, US, ... — every readable one), and uniform-noise images;
the score is the larger of the two scores divided by its threshold
(:mod:`evaluation.out_of_distribution`). Prints the AUROC per source and overall and the share
flagged at the thresholds.

Run: ``.venv/bin/python bench/bench_ood.py --model runs/demo/classify``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.metrics import roc_auc_score  # noqa: E402

from pipelines.datalists import load_datalist  # noqa: E402
from pipelines.latent_codes import load_model_input  # noqa: E402
from pipelines.ood_reference import image_ood, ood_reference  # noqa: E402
from pipelines.trained_model import load_trained_model  # noqa: E402


def _score(trained, reference, path) -> tuple[float, bool] | None:
    try:
        x, _ = load_model_input(path, trained.spatial_size, intensity_range=trained.intensity_range)
    except ValueError:
        return None
    s = image_ood(trained, x, reference)
    return max(s["recon_error"] / s["recon_threshold"], s["latent_distance"] / s["latent_threshold"]), s[
        "flagged"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--noise", type=int, default=50, help="uniform-noise images")
    args = parser.parse_args()
    import data_store  # pydicom-data's files, installed locally
    import pydicom

    trained = load_trained_model(args.model)
    reference = ood_reference(trained)
    if reference is None:
        raise SystemExit(f"{args.model}: no reference (training images unavailable)")
    sources: dict[str, list] = {"in-distribution test": [], "pydicom DICOM": [], "noise": []}
    for record in load_datalist(trained.config.datalist, "test"):
        sources["in-distribution test"].append(_score(trained, reference, record["image"]))
    # the files on disk only (pydicom.data.get_testdata_files would try to download the rest)
    folders = [
        Path(pydicom.__file__).parent / "data" / "test_files",
        Path(data_store.__file__).parent / "data",
    ]
    for path in sorted(p for folder in folders for p in folder.rglob("*.dcm")):
        sources["pydicom DICOM"].append(_score(trained, reference, path))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        from PIL import Image

        for i in range(args.noise):
            path = Path(tmp) / f"noise{i}.png"
            Image.fromarray((rng.random(trained.spatial_size) * 65535).astype(np.uint16)).save(path)
            sources["noise"].append(_score(trained, reference, path))
    scores = {k: [v for v in rows if v is not None] for k, rows in sources.items()}
    inside = np.array([s for s, _ in scores["in-distribution test"]])
    result = {"in_distribution_flagged": float(np.mean([f for _, f in scores["in-distribution test"]]))}
    others = []
    for name in ("pydicom DICOM", "noise"):
        outside = np.array([s for s, _ in scores[name]])
        others.append(outside)
        labels = np.r_[np.zeros(inside.size), np.ones(outside.size)]
        result[f"auroc/{name}"] = float(roc_auc_score(labels, np.r_[inside, outside]))
        result[f"flagged/{name}"] = float(np.mean([f for _, f in scores[name]]))
        result[f"n/{name}"] = int(outside.size)
    outside = np.concatenate(others)
    result["auroc/all"] = float(
        roc_auc_score(np.r_[np.zeros(inside.size), np.ones(outside.size)], np.r_[inside, outside])
    )
    result["n/in_distribution"] = int(inside.size)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
