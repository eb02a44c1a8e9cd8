"""MONAI Label serving of glassbox_classification: server start and per-image latency vs the bundle's own inference.

Copies ``bundles/glassbox_classification`` into ``bench/out/label_server/bundles`` (a user's
bundle folder), trains it briefly in place (the latency does not depend on the weights' quality;
``--epochs``/``--cohort-n``), then measures, for one 2D phantom image (64 × 64, the bundle's
size):

- the bundle's own inference: ``medglass run glassbox_classification --config inference
  --image IMAGE`` in-process (:func:`pipelines.bundle_runner.run_bundle`: the config parsed, the
  network built and the checkpoint loaded, as each ``medglass run`` does), median of ``--repeats``
  after one warm-up run; and, as the like-for-like baseline of a running server, the same
  workflow initialised once and run again (MONAI's ``ConfigWorkflow.run``: its evaluator loads
  the checkpoint, infers, writes ``predictions.csv`` and the OOD check on every run);
- a real ``monailabel start_server`` of ``apps/monailabel`` (``.venv-monailabel``): seconds until
  ``GET /info/`` answers; ``POST /infer/glassbox_classification`` round trips (scores only,
  ``explain`` false), median of ``--repeats`` after one warm-up; the same with the explanation
  (evidence and counterfactual label image), median of ``--explain-repeats``.

Goals (issue 24): MONAI Label latency ≤ 2 × the bundle's own; server start ≤ 30 s. The figures go
to the model card's generated section (``--card``; :mod:`bench.model_card`).

Run: ``python bench/bench_label_server.py`` (needs ``make monailabel-venv``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.model_card import write_card_section  # noqa: E402
from pipelines.bundle_runner import BUNDLES_DIR, run_bundle  # noqa: E402
from pipelines.datalists import load_datalist  # noqa: E402
from tests.apps.label_server import LabelServer  # noqa: E402

BUNDLE = "glassbox_classification"
CARD = BUNDLES_DIR / BUNDLE / "docs" / "README.md"
OUT = ROOT / "bench" / "out" / "label_server"


def prepare(out: Path, epochs: int, cohort_n: int, retrain: bool) -> tuple[Path, Path]:
    """The user bundle folder (trained) and the studies folder with one phantom image."""
    bundle = out / "bundles" / BUNDLE
    if retrain and bundle.exists():
        shutil.rmtree(bundle)
    if not bundle.exists():
        shutil.copytree(BUNDLES_DIR / BUNDLE, bundle, ignore=shutil.ignore_patterns("runs", "models"))
    run_dir = bundle / "runs" / "classification"
    if not (run_dir / "best.pt").is_file():
        run_bundle(
            bundle, "train", {"train#epochs": epochs, "dataset#cohort_n": cohort_n, "train#device": "cpu"}
        )
    studies = out / "studies"
    studies.mkdir(parents=True, exist_ok=True)
    image = Path(load_datalist(run_dir / "cohort" / "datalist.json", "test")[0]["image"])
    shutil.copy(image, studies / "phantom.png")
    return out / "bundles", studies / "phantom.png"


def bundle_inference(bundle: Path, image: Path, repeats: int) -> tuple[float, list[float]]:
    """Median seconds of the bundle's own inference on ``image`` (after a warm-up) and its scores."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats + 1):
            started = time.perf_counter()
            predictions = run_bundle(bundle, "inference", {"image": str(image), "prediction_dir": tmp})
            if i:
                times.append(time.perf_counter() - started)
        rows = list(csv.reader(Path(predictions).open()))
    return statistics.median(times), [float(v) for v in rows[-1][1:]]


def warm_bundle_inference(bundle: Path, image: Path, repeats: int) -> float:
    """Median seconds of one more run of the bundle's inference workflow, initialised once."""
    from monai.bundle import ConfigWorkflow

    configs = bundle / "configs"
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        workflow = ConfigWorkflow(
            config_file=str(configs / "inference.json"),
            meta_file=str(configs / "metadata.json"),
            logging_file=False,
            workflow_type=None,
            bundle_root=str(bundle),
            image=str(image),
            prediction_dir=tmp,
        )
        workflow.initialize()
        for i in range(repeats + 1):
            started = time.perf_counter()
            workflow.run()
            if i:
                times.append(time.perf_counter() - started)
        workflow.finalize()
    return statistics.median(times)


def served_inference(server: LabelServer, repeats: int, explain: bool) -> tuple[float, list[float]]:
    """Median seconds of ``POST /infer`` round trips on the phantom (after a warm-up) and its scores."""
    times, scores = [], []
    for i in range(repeats + 1):
        started = time.perf_counter()
        response = requests.post(
            f"{server.url}/infer/{BUNDLE}",
            params={"image": "phantom", "output": "json"},
            data={"params": json.dumps({"explain": explain})},
            timeout=900,
        )
        response.raise_for_status()
        if i:
            times.append(time.perf_counter() - started)
        scores = [p["score"] for p in sorted(response.json()["prediction"], key=lambda p: p["idx"])]
    return statistics.median(times), scores


def measure(out: Path, epochs: int, cohort_n: int, repeats: int, explain_repeats: int, retrain: bool) -> dict:
    bundles, image = prepare(out, epochs, cohort_n, retrain)
    own, own_scores = bundle_inference(bundles / BUNDLE, image, repeats)
    warm = warm_bundle_inference(bundles / BUNDLE, image, repeats)
    with LabelServer(out / "server", bundles, studies=image.parent) as server:
        start = server.start_seconds
        served, served_scores = served_inference(server, repeats, explain=False)
        explained, _ = served_inference(server, explain_repeats, explain=True)
    return {
        "image": f"{image.name} (64 x 64 phantom)",
        "server_start_s": start,
        "bundle_inference_s": own,
        "monailabel_infer_s": served,
        "latency_ratio": served / own,
        "bundle_inference_warm_s": warm,
        "latency_ratio_warm": served / warm,
        "monailabel_infer_with_explanation_s": explained,
        "max_score_difference": max(abs(a - b) for a, b in zip(own_scores, served_scores, strict=True)),
        "repeats": repeats,
        "explain_repeats": explain_repeats,
        "load_average": os.getloadavg()[1],  # 5-minute: the machine's load while measuring
        "cpus": os.cpu_count(),
    }


def card_lines(result: dict) -> list[str]:
    return [
        f"One 2D image ({result['image']}), CPU; medians of {result['repeats']} runs after a warm-up "
        f"({result['explain_repeats']} with the explanation); 5-minute load average {result['load_average']:.1f} "
        f"on {result['cpus']} CPUs while measuring (the figures scale with it).",
        "",
        "| measure | seconds | goal |",
        "|---|---|---|",
        f"| MONAI Label server start (until `GET /info/` answers) | {result['server_start_s']:.1f} | ≤ 30 |",
        f"| bundle's own inference (`medglass run ... --config inference --image`, in-process) | {result['bundle_inference_s']:.3f} | |",
        f"| MONAI Label `POST /infer` round trip, scores only | {result['monailabel_infer_s']:.3f} | ≤ 2 × the bundle's |",
        f"| bundle's workflow initialised once, run again (like a running server) | {result['bundle_inference_warm_s']:.3f} | |",
        f"| ratio MONAI Label / bundle's `medglass run` | {result['latency_ratio']:.2f} × | ≤ 2 × |",
        f"| ratio MONAI Label / bundle's workflow run again | {result['latency_ratio_warm']:.2f} × | ≤ 2 × |",
        f"| MONAI Label `POST /infer` with the explanation label image | {result['monailabel_infer_with_explanation_s']:.2f} | |",
        "",
        f"Largest difference between the two sets of class scores: {result['max_score_difference']:.1e}.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(OUT), help="work folder (default bench/out/label_server)")
    parser.add_argument(
        "--epochs", type=int, default=1, help="training epochs of the served model (default 1)"
    )
    parser.add_argument("--cohort-n", type=int, default=100, help="phantom images to train on (default 100)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each inference (default 5)")
    parser.add_argument(
        "--explain-repeats", type=int, default=2, help="timed runs with the explanation (default 2)"
    )
    parser.add_argument("--retrain", action="store_true", help="train the served model again")
    parser.add_argument("--card", default=str(CARD), help="model card to write (default the bundle's)")
    parser.add_argument("--no-card", action="store_true", help="print only")
    args = parser.parse_args()
    result = measure(
        Path(args.out), args.epochs, args.cohort_n, args.repeats, args.explain_repeats, args.retrain
    )
    print(json.dumps(result, indent=1))
    lines = card_lines(result)
    print("\n".join(lines))
    if not args.no_card:
        command = "python bench/bench_label_server.py " + " ".join(sys.argv[1:])
        write_card_section(
            Path(args.card), "bench_label_server.py", "MONAI Label serving (measured)", lines, command
        )
        print(f"wrote the generated section of {args.card}")


if __name__ == "__main__":
    main()
