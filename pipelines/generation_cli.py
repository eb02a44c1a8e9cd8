"""The generation subcommands of ``medglass``: ``generate`` and ``evaluate-generation``.

Thin shells over :func:`pipelines.generation.generate` and
:func:`pipelines.generation_report.evaluate_generation`; :func:`add_generation_commands`
registers them on the main parser of :mod:`pipelines.cli`.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_generation_commands"]


def _cmd_evaluate_generation(args: argparse.Namespace) -> int:
    from pipelines.generation_report import evaluate_generation

    result = evaluate_generation(
        args.model,
        args.generated,
        args.out,
        real_section=args.section,
        max_images=args.max_images,
        track=not args.no_mlflow,
        progress=not args.no_progress,
    )
    m = result["metrics"]
    print(
        f"evaluate-generation: FID {m['fid']:.3g} (real-vs-real floor {m['fid_floor']:.3g}), precision "
        f"{m['precision']:.2f}, recall {m['recall']:.2f}, real-vs-synthetic AUC {m['auc_real_vs_fake']:.2f}, "
        f"memorisation {'FLAGGED' if m['memorisation_flagged'] else 'not flagged'}"
    )
    print(f"  report -> {result['report']}")
    if result.get("run_id"):
        print(f"  MLflow run {result['run_id']}")
    return 0


def add_generation_commands(sub: Any) -> None:
    """Register the generation subcommands on a subparsers object."""
    evaluate = sub.add_parser(
        "evaluate-generation",
        help="quality of generated images: FID with its floor, precision/recall, diversity, memorisation",
    )
    evaluate.add_argument("--model", required=True, help="the model that generated the images")
    evaluate.add_argument("--generated", required=True, help="the datalist medglass generate wrote")
    evaluate.add_argument("--out", required=True, help="output folder (report.html, metrics.json, figures)")
    evaluate.add_argument(
        "--section", default="test", help="held-out real images: section of the model's datalist"
    )
    evaluate.add_argument("--max-images", type=int, default=1000, help="at most this many images per set")
    evaluate.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bars")
    evaluate.set_defaults(func=_cmd_evaluate_generation)
