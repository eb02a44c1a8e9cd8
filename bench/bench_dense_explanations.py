"""Counterfactuals of true-positive lesions of trained segmenters and detectors, scored on phantoms.

For every true-positive lesion of the test images (a predicted component matching a true lesion
at IoU > 0.1; a detection scoring at least ``--det-threshold`` and hitting a true box at IoU ≥ 0.1),
:mod:`evaluation.dense_counterfactuals` searches the smallest infill that removes it and scores its
difference map against the true lesion: the removal rate (score below the threshold afterwards),
the pointing share (difference-map maximum inside the true lesion) and the mean IoU of the map
thresholded at half its maximum. The infill sources side by side: MONAI's median filter (the
model-free baseline) and, with ``--infill-run``, the glass-box autoencoder's reconstruction.
Prints one table, writes ``bench/out/dense_explanations.json`` and, with ``--card``, the model
cards' generated sections.

Run (trained runs of ``medglass segment train`` / ``medglass detect train`` on a phantom cohort):
``.venv/bin/python bench/bench_dense_explanations.py --datalist runs/phantom/datalist.json
--segmentation-run runs/seg --detection-run runs/det --infill-run runs/pretrain``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.model_card import write_card_section  # noqa: E402
from evaluation.dense_counterfactuals import (  # noqa: E402
    autoencoder_reconstruction,
    explain_detection,
    explain_segmentation,
    median_reconstruction,
    retinanet_predictor,
    summarise_dense_explanations,
)
from evaluation.html_report import write_text_atomic  # noqa: E402
from transforms.image_loading import load_image  # noqa: E402
from transforms.keys import Keys  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "dense_explanations.json"
CARDS = {
    "segmentation": ROOT / "bundles" / "glassbox_segmentation" / "docs" / "README.md",
    "detection": ROOT / "bundles" / "glassbox_detection" / "docs" / "README.md",
}


def _infills(infill_run: str | None) -> dict[str, Any]:
    """The infill sources compared: the median filter, and the autoencoder when a run is given."""
    sources: dict[str, Any] = {"median filter (r=3)": median_reconstruction(3)}
    if infill_run:
        from pipelines.trained_model import load_trained_model

        sources["glass-box autoencoder"] = autoencoder_reconstruction(load_trained_model(infill_run).network)
    return sources


def _segmentation_cases(run: str, datalist: str, section: str, limit: int) -> tuple[Any, list[tuple]]:
    """The segmenter as a batch predictor, and ``(id, image (1, C, *spatial), instance mask)`` cases."""
    from pipelines.segmentation_data import load_segmentation_records, segmentation_transforms
    from pipelines.segmentation_engines import build_inferer, load_segmentation_run

    network, config = load_segmentation_run(run)
    inferer = build_inferer(config)

    def predict(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.softmax(inferer(images, network), dim=1)[:, 1]

    chain = segmentation_transforms(
        config.patch_size, training=False, intensity_range=config.intensity_range, with_mask=False
    )
    cases = []
    for record in load_segmentation_records(datalist, section)[:limit]:
        image = chain({Keys.IMAGE: record[Keys.IMAGE]})[Keys.IMAGE].as_tensor()[None].float()
        truth = load_image(record[Keys.MASK])[0].as_tensor()
        if tuple(truth.shape) == tuple(image.shape[2:]) and bool((truth > 0).any()):
            cases.append((record.get(Keys.ID, record[Keys.IMAGE]), image, truth))
    return predict, cases


def _detection_cases(run: str, datalist: str, section: str, limit: int) -> tuple[Any, list[tuple]]:
    """The detector as a predictor, and ``(id, image (1, C, *spatial), true boxes)`` cases."""
    from networks.detection import BOX_KEY
    from pipelines.detection_data import load_detection_datalist
    from pipelines.detection_inference import load_detector
    from pipelines.detection_training import loader_for, predict_detections

    trained = load_detector(run)
    records = [r for r in load_detection_datalist(datalist, section) if len(r[BOX_KEY])][:limit]
    loader = loader_for(trained.config, records, training=False)
    cases = [
        (case[Keys.ID], case[Keys.IMAGE][None].float(), case[BOX_KEY])
        for case in predict_detections(trained.detector, loader, torch.device("cpu"))
    ]
    return retinanet_predictor(trained.detector, batched=True), cases


def _explain(task: str, predict: Any, cases: list[tuple], infill: Any, args: argparse.Namespace) -> dict:
    search = {
        "window": args.window,
        "stride": args.stride,
        "fine_window": args.fine_window or None,
        "fine_stride": 2,
    }
    rows, start = [], time.perf_counter()
    for name, image, truth in cases:
        if task == "segmentation":
            found = explain_segmentation(
                predict, infill, image, truth, threshold=args.seg_threshold, **search
            )
        else:
            found = explain_detection(
                predict, infill, image, truth, threshold=args.det_threshold, batched=True, **search
            )
        rows.extend({"case": str(name), **row} for row in found)
        removed = sum(bool(r["removed"]) for r in found)
        print(f"{task} {name}: {len(found)} true-positive lesion(s), {removed} removed", flush=True)
    seconds = time.perf_counter() - start
    summary = summarise_dense_explanations(rows) if rows else {"lesions": 0}
    return {**summary, "seconds_per_lesion": seconds / max(1, len(rows)), "rows": rows}


def _table(results: dict[str, dict[str, dict]]) -> list[str]:
    lines = [
        "| task | infill | lesions | removal rate | pointing share | mean IoU | s / lesion |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, by_infill in results.items():
        for infill, r in by_infill.items():
            if not r.get("lesions"):
                lines.append(f"| {task} | {infill} | 0 | – | – | – | – |")
                continue
            lines.append(
                f"| {task} | {infill} | {r['lesions']} | {r['removal_rate']:.2f} | {r['pointing_share']:.2f} "
                f"| {r['mean_iou']:.2f} | {r['seconds_per_lesion']:.1f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datalist", required=True, help="phantom datalist JSON (masks and boxes)")
    parser.add_argument("--section", default="test")
    parser.add_argument("--segmentation-run", help="a `medglass segment train` run folder")
    parser.add_argument("--detection-run", help="a `medglass detect train` run folder")
    parser.add_argument(
        "--infill-run", help="a glass-box (pretrain/classify) run whose reconstruction infills"
    )
    parser.add_argument("--max-images", type=int, default=20)
    parser.add_argument("--seg-threshold", type=float, default=0.5)
    parser.add_argument("--det-threshold", type=float, default=0.5, help="the detector's operating score")
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--fine-window", type=int, default=4, help="0: no shrinking pass")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(OUT), help=f"results JSON (default {OUT.relative_to(ROOT)})")
    parser.add_argument("--card", action="store_true", help="write the model cards' generated sections")
    args = parser.parse_args()
    if not (args.segmentation_run or args.detection_run):
        parser.error("give --segmentation-run and/or --detection-run")
    torch.set_num_threads(args.threads)
    infills = _infills(args.infill_run)
    tasks = {}
    if args.segmentation_run:
        tasks["segmentation"] = _segmentation_cases(
            args.segmentation_run, args.datalist, args.section, args.max_images
        )
    if args.detection_run:
        tasks["detection"] = _detection_cases(
            args.detection_run, args.datalist, args.section, args.max_images
        )
    results: dict[str, dict[str, dict]] = {}
    for task, (predict, cases) in tasks.items():
        results[task] = {
            name: _explain(task, predict, cases, infill, args) for name, infill in infills.items()
        }
    lines = _table(results)
    print("\n".join(lines))
    write_text_atomic(args.out, json.dumps({"args": vars(args), "results": results}, indent=1, default=str))
    print(f"wrote {args.out}")
    if args.card:
        command = "python bench/bench_dense_explanations.py " + " ".join(sys.argv[1:])
        for task in results:
            if CARDS[task].is_file():
                note = [
                    f"True-positive lesions of the `{args.section}` section; removal: the lesion's score "
                    "falls below the threshold; pointing: the difference map's maximum lies in the true lesion.",
                    "",
                ]
                write_card_section(
                    CARDS[task],
                    "bench_dense_explanations.py",
                    "Counterfactual explanations of lesions",
                    note + _table({task: results[task]}),
                    command,
                )
                print(f"wrote the generated section of {CARDS[task]}")


if __name__ == "__main__":
    main()
