"""The ``medglass segment`` subcommands: ``train``, ``evaluate`` and ``infer``.

Thin shells over :func:`pipelines.segmentation_training.train_segmentation`,
:func:`~pipelines.segmentation_training.evaluate_segmentation` and
:func:`pipelines.segmentation_inference.infer_segmentation`; :func:`add_segmentation_commands`
registers them on the main parser of :mod:`pipelines.cli`. ``train``'s flags are generated from
:class:`~pipelines.segmentation_config.SegmentationConfig` (:mod:`pipelines.config_arguments`).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["add_segmentation_commands", "segmentation_config"]

_NOT_FLAGS = ("datalist", "out_dir", "progress", "distributed")
"""SegmentationConfig fields ``segment train`` sets itself (torchrun sets ``distributed``)."""

_SHOWN = ("dice", "mean_dice", "hd95", "nsd", "lesion_sensitivity", "lesion_precision")


def segmentation_config(args: argparse.Namespace) -> Any:
    """The ``SegmentationConfig`` of ``medglass segment train``; generates the default phantom cohort if needed."""
    from pipelines.config_arguments import config_values
    from pipelines.segmentation_config import SegmentationConfig

    cohort = Path(args.out) / "cohort"
    datalist = args.datalist or cohort / "datalist.json"
    config = SegmentationConfig(
        datalist=datalist,
        out_dir=args.out,
        progress=not args.no_progress,
        **config_values(args, SegmentationConfig),
    )
    if args.datalist is None and not Path(datalist).is_file():
        from phantoms import PhantomConfig, generate_cohort

        kind = "brain2d" if config.spatial_dims == 2 else "brain3d"
        print(f"no --datalist: generating the default {kind} phantom cohort in {cohort}")
        generate_cohort(
            PhantomConfig(
                kind=kind,
                n=args.cohort_n,
                seed=config.seed,
                size=max(config.patch_size),
                image_format="png" if kind == "brain2d" else "nifti",
            ),
            cohort,
            progress=not args.no_progress,
        )
    return config


def _print_metrics(metrics: dict[str, float], prefixes: tuple[str, ...]) -> None:
    shown = {
        f"{p}{k}": round(metrics[f"{p}{k}"], 4)
        for p in prefixes
        for k in _SHOWN
        if f"{p}{k}" in metrics and math.isfinite(metrics[f"{p}{k}"])
    }
    print(json.dumps(shown, indent=1))


def _cmd_train(args: argparse.Namespace) -> int:
    from pipelines.segmentation_training import train_segmentation

    config = segmentation_config(args)
    metrics = train_segmentation(config)
    _print_metrics(metrics, ("val_", "test_"))
    print(f"nsd tolerance {config.nsd_tolerance} px; checkpoints, figures and metrics.json: {args.out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pipelines.segmentation_engines import evaluate_segmentation

    metrics = evaluate_segmentation(
        args.model, datalist=args.datalist, section=args.section, out_dir=args.out, device=args.device
    )
    _print_metrics(metrics, (f"{args.section}_",))
    print(f"metrics.json: {args.out or Path(args.model) / f'evaluate_{args.section}'}")
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    from pipelines.segmentation_inference import infer_segmentation

    if bool(args.image) == (args.datalist is not None):
        raise ValueError("give --image FILE [FILE ...] or --datalist D, not both and not neither")
    result = infer_segmentation(
        args.model, args.image or args.datalist, args.out, section=args.section, device=args.device
    )
    for case in result["cases"]:
        extra = f", DICOM SEG {case['dicom_seg']}" if "dicom_seg" in case else ""
        print(f"  {case['id']}: {case['lesion_voxels']} lesion voxels, {case['nifti_mask']}{extra}")
    print(f"predictions.json: {Path(args.out) / 'predictions.json'}")
    return 0


def add_segmentation_commands(sub: Any, training_flags: bool = True) -> None:
    """Register ``segment`` (``train``, ``evaluate``, ``infer``) on a subparsers object.

    Args:
        sub: the main parser's subparsers.
        training_flags: give ``segment train`` its flags (generated from ``SegmentationConfig``,
            whose import takes seconds; :func:`pipelines.cli.main` leaves them out for other commands).
    """
    segment = sub.add_parser(
        "segment", help="lesion segmentation with the glass-box encoder (train, evaluate, infer)"
    )
    commands = segment.add_subparsers(dest="segment_command", required=True, metavar="{train,evaluate,infer}")

    train = commands.add_parser("train", help="train the segmenter (DiceCELoss, sliding-window validation)")
    train.add_argument(
        "--datalist",
        help="datalist JSON with image and mask records (default: a brain2d, or with a 3D --patch-size a "
        "brain3d, phantom cohort generated in OUT/cohort on first use)",
    )
    train.add_argument("--out", required=True, help="output folder; a last.pt there is resumed")
    train.add_argument("--cohort-n", type=int, default=200, help="size of the default phantom cohort")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    if training_flags:
        from pipelines.config_arguments import add_config_arguments
        from pipelines.segmentation_config import SEGMENTATION_CHOICES, SegmentationConfig

        add_config_arguments(train, SegmentationConfig, skip=_NOT_FLAGS, choices=SEGMENTATION_CHOICES)
    train.set_defaults(func=_cmd_train)

    evaluate = commands.add_parser(
        "evaluate", help="Dice, HD95, NSD and lesion-wise sensitivity/precision of a trained run on a section"
    )
    evaluate.add_argument(
        "--model", required=True, help="the segment train run folder (config.json, best.pt)"
    )
    evaluate.add_argument("--datalist", help="datalist to score (default: the run's own)")
    evaluate.add_argument("--section", default="test", help="datalist section (default test)")
    evaluate.add_argument("--out", help="folder of metrics.json (default MODEL/evaluate_SECTION)")
    evaluate.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    evaluate.set_defaults(func=_cmd_evaluate)

    infer = commands.add_parser(
        "infer",
        help="predict lesion masks: NIfTI with the input's affine, DICOM SEG for DICOM input, overlays",
    )
    infer.add_argument("--model", required=True, help="the segment train run folder (config.json, best.pt)")
    infer.add_argument("--image", nargs="+", help="images: DICOM files or series folders, NIfTI, PNG")
    infer.add_argument("--datalist", help="a datalist instead (its --section images)")
    infer.add_argument("--section", default=None, help="datalist section (default test)")
    infer.add_argument("--out", required=True, help="output folder")
    infer.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    infer.set_defaults(func=_cmd_infer)
