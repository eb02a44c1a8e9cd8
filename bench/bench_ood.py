"""How well the out-of-distribution flag separates a run's own kind of image from others (AUROC per score).

For a trained 2-D run: its held-out test images (in distribution) against

- other modalities and anatomies (counted in "all other inputs"): the real DICOM files that
  pydicom and pydicom-data ship (every readable ``*.dcm``; the files on disk only, nothing is
  downloaded), slices of brain3d phantoms away from the brain2d level (axial near the top and
  bottom, mid coronal, mid sagittal; written as 16-bit PNG like the brain2d cohorts) and
  uniform-noise images;
- near shifts, reported apart (when the run's datalist is a phantom cohort): brain2d phantoms
  of the same settings with a new seed (new subjects and new site effects: a control the flag
  should mostly pass) and at another image size (resampled by the model's transforms).

For each source: how many images, the share flagged, and the AUROC against the held-out test
images of each score (:mod:`evaluation.out_of_distribution`: reconstruction error, unexplained
variance, latent distance) and of the flag rule (the largest score/threshold ratio).

Run: ``.venv/bin/python bench/bench_ood.py --model runs/demo/classify``
(``--card bundles/glassbox_classification/docs/README.md`` rewrites the model card's generated section).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sklearn.metrics import roc_auc_score  # noqa: E402

from bench.model_card import write_card_section  # noqa: E402
from evaluation.out_of_distribution import SCORE_NAMES  # noqa: E402
from phantoms import PhantomConfig, generate_cohort  # noqa: E402
from phantoms.image_files import write_png_image  # noqa: E402
from pipelines.datalists import load_datalist  # noqa: E402
from pipelines.latent_codes import load_model_input  # noqa: E402
from pipelines.ood_reference import image_ood, ood_reference  # noqa: E402
from pipelines.trained_model import load_trained_model  # noqa: E402

IN_DISTRIBUTION = "held-out test images"
FAR = ("pydicom DICOM", "brain3d slices", "noise")
COLUMNS = [*SCORE_NAMES, "flag rule"]


def _scores(trained, reference, paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        try:
            x, _ = load_model_input(path, trained.spatial_size, intensity_range=trained.intensity_range)
        except ValueError:  # unreadable, or not a 2-D image: not an input the model would be given
            continue
        result = image_ood(trained, x, reference)
        result["flag rule"] = max(result[k] / result[t] for k, (_, t) in SCORE_NAMES.items())
        rows.append(result)
    return rows


def _dicoms() -> list[Path]:
    import data_store  # pydicom-data's files, installed locally
    import pydicom

    # the files on disk only (pydicom.data.get_testdata_files would try to download the rest)
    folders = [
        Path(pydicom.__file__).parent / "data" / "test_files",
        Path(data_store.__file__).parent / "data",
    ]
    return sorted(p for folder in folders for p in folder.rglob("*.dcm"))


def _noise(folder: Path, n: int, size: tuple[int, ...]) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"noise{i}.png"
        Image.fromarray((rng.random(size) * 65535).astype(np.uint16)).save(path)
        paths.append(path)
    return paths


def _brain3d_slices(folder: Path, n: int, size: int) -> list[Path]:
    import nibabel

    generate_cohort(
        PhantomConfig(kind="brain3d", n=n, seed=99, size=size, image_format="nifti"),
        folder / "brain3d",
        progress=False,
    )
    paths = []
    for volume in sorted((folder / "brain3d" / "images").glob("*.nii.gz")):
        a = np.asarray(nibabel.load(volume).dataobj, dtype=np.float32)
        z, y, x = a.shape[2], a.shape[1], a.shape[0]
        for k, image in enumerate((a[:, :, z // 5], a[:, :, 4 * z // 5], a[:, y // 2, :], a[x // 2, :, :])):
            path = folder / f"{volume.name.removesuffix('.nii.gz')}_{k}.png"
            write_png_image(path, image)
            paths.append(path)
    return paths


def _phantoms_like(folder: Path, stored: dict, n: int, **change) -> list[Path]:
    fields = PhantomConfig.__dataclass_fields__
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in fields}
    settings.update(n=n, split_fractions=(0.0, 0.0, 1.0), **change)
    generate_cohort(PhantomConfig(**settings), folder, progress=False)
    return [folder / r["image"] for r in json.loads((folder / "datalist.json").read_text())["test"]]


def _auroc(inside: list[dict], outside: list[dict], column: str) -> float:
    labels = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    values = np.nan_to_num([r[column] for r in inside + outside], posinf=np.finfo(np.float64).max)
    return float(roc_auc_score(labels, values))


def measure(model: str, n_noise: int = 50, n_phantoms: int = 60) -> dict:
    """Per source: ``n``, ``flagged`` and ``auroc`` per column of :data:`COLUMNS`."""
    trained = load_trained_model(model)
    if len(trained.spatial_size) != 2:
        raise SystemExit(f"{model}: bench_ood measures 2-D models (this one takes {trained.spatial_size})")
    reference = ood_reference(trained)
    if reference is None:
        raise SystemExit(f"{model}: no out-of-distribution reference (training images unavailable)")
    size = trained.spatial_size
    sources: dict[str, list[dict]] = {
        IN_DISTRIBUTION: _scores(
            trained, reference, [r["image"] for r in load_datalist(trained.config.datalist, "test")]
        )
    }
    stored = json.loads(Path(trained.config.datalist).read_text()).get("phantom_config")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sources["pydicom DICOM"] = _scores(trained, reference, _dicoms())
        sources["brain3d slices"] = _scores(
            trained, reference, _brain3d_slices(root, n_phantoms // 4, size[0])
        )
        sources["noise"] = _scores(trained, reference, _noise(root, n_noise, size))
        if isinstance(stored, dict) and stored.get("kind") == "brain2d":
            other = stored.get("size", size[0]) // 2 if stored.get("size", size[0]) >= 64 else 2 * size[0]
            seed = int(stored.get("seed", 0)) + 1000
            sources["brain2d, new seed (control)"] = _scores(
                trained, reference, _phantoms_like(root / "seed", stored, n_phantoms, seed=seed)
            )
            sources[f"brain2d at size {other}"] = _scores(
                trained,
                reference,
                _phantoms_like(root / "size", stored, n_phantoms, seed=seed + 1, size=other),
            )
    inside = sources[IN_DISTRIBUTION]
    result: dict = {
        "model": model,
        "quantile": reference.quantile,
        "n_reference": reference.n_images,
        "sources": {},
    }
    for name, rows in sources.items():
        entry = {
            "n": len(rows),
            "flagged": float(np.mean([r["flagged"] for r in rows])) if rows else float("nan"),
        }
        if name != IN_DISTRIBUTION and rows:
            entry["auroc"] = {c: _auroc(inside, rows, c) for c in COLUMNS}
        result["sources"][name] = entry
    far = [r for name in FAR for r in sources[name]]
    result["all other inputs"] = {"n": len(far), "auroc": {c: _auroc(inside, far, c) for c in COLUMNS}}
    return result


def table(result: dict) -> list[str]:
    """The result as a Markdown table."""
    lines = [
        "| inputs | n | flagged | " + " | ".join(f"AUROC {c.replace('_', ' ')}" for c in COLUMNS) + " |",
        "|---" * (3 + len(COLUMNS)) + "|",
    ]
    rows = [
        *result["sources"].items(),
        ("all other inputs (" + ", ".join(FAR) + ")", result["all other inputs"]),
    ]
    for name, entry in rows:
        flagged = f"{entry['flagged']:.3f}" if "flagged" in entry else "–"
        aurocs = " | ".join(f"{entry['auroc'][c]:.3f}" if "auroc" in entry else "–" for c in COLUMNS)
        lines.append(f"| {name} | {entry['n']} | {flagged} | {aurocs} |")
    return lines


def _write_card(card: Path, result: dict, command: str) -> None:
    """Replace (or append) the model card's generated out-of-distribution section."""
    lines = [
        f"Thresholds at the {100 * result['quantile']:g}th percentile of {result['n_reference']} training "
        "images' scores; AUROC of each score against the held-out test images.",
        "",
        *table(result),
    ]
    write_card_section(card, "bench_ood.py", "Out-of-distribution flag", lines, command)
    print(f"wrote the generated section of {card}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="trained run folder, checkpoint or MLflow reference")
    parser.add_argument("--noise", type=int, default=50, help="uniform-noise images (default 50)")
    parser.add_argument(
        "--phantoms", type=int, default=60, help="images per generated phantom source (default 60)"
    )
    parser.add_argument("--card", default=None, help="model card whose generated OOD section to rewrite")
    args = parser.parse_args()
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    result = measure(args.model, args.noise, args.phantoms)
    print(json.dumps(result, indent=1))
    print("\n".join(table(result)))
    if args.card:
        _write_card(Path(args.card), result, "python bench/bench_ood.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
