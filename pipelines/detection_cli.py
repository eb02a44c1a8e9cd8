"""The ``medglass detect`` subcommands: ``train``, ``evaluate`` and ``infer``.

Thin shells over :func:`pipelines.detection_training.train_detection`,
:func:`pipelines.detection_inference.evaluate_detection` and
:func:`~pipelines.detection_inference.infer_detection`; :func:`add_detection_commands` registers
them on the main parser of :mod:`pipelines.cli`. ``train``'s flags are generated from
:class:`~pipelines.detection_config.DetectionConfig` (:mod:`pipelines.config_arguments`), among
them ``--pretrained RUN``, ``--freeze-encoder`` and ``--label-fraction``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["add_detection_commands", "detection_config"]

_NOT_FLAGS = ("datalist", "out_dir", "progress")
"""DetectionConfig fields ``detect train`` sets itself."""

_SHOWN = ("map_0.1", "map_0.1_0.5", "cpm", "sensitivity", "fp_per_image")


def detection_config(args: argparse.Namespace) -> Any:
    """The ``DetectionConfig`` of ``medglass detect train``; generates the default phantom cohort if needed."""
    from pipelines.config_arguments import config_values
    from pipelines.detection_config import DetectionConfig

    cohort = Path(args.out) / "cohort"
    datalist = args.datalist or cohort / "datalist.json"
    values = config_values(args, DetectionConfig)
    config = DetectionConfig(datalist=datalist, out_dir=args.out, progress=not args.no_progress, **values)
    if args.datalist is None and not Path(datalist).is_file():
        from phantoms import PhantomConfig, generate_cohort

        kind = "brain2d" if config.spatial_dims == 2 else "brain3d"
        print(
            f"no --datalist: generating the default {kind} phantom cohort ({args.cohort_n} images) in {cohort}"
        )
        phantom = PhantomConfig(kind=kind, n=args.cohort_n, seed=config.seed, size=max(config.spatial_size))
        generate_cohort(phantom, cohort, progress=not args.no_progress)
    return config


def _show(metrics: dict[str, float], prefixes: tuple[str, ...]) -> None:
    names = [f"{p}{k}" for p in prefixes for k in _SHOWN]
    print(
        json.dumps(
            {n: round(metrics[n], 4) for n in names if n in metrics and math.isfinite(metrics[n])}, indent=1
        )
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from pipelines.detection_training import train_detection

    metrics = train_detection(detection_config(args))
    _show(metrics, ("val_", "test_"))
    print(f"checkpoints, figures and metrics.json: {args.out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pipelines.detection_inference import evaluate_detection

    metrics = evaluate_detection(args.model, args.datalist, args.out, section=args.section)
    _show(metrics, ("",))
    print(f"metrics.json: {args.out or Path(args.model) / f'evaluate_{args.section}'}")
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    from pipelines.detection_inference import infer_detection

    if (args.image is None) == (args.datalist is None):
        raise ValueError("give --image FILE or --datalist D, not both and not neither")
    for path in infer_detection(args.model, args.image or args.datalist, args.out, section=args.section):
        boxes = json.loads(path.read_text())["boxes"]
        print(f"  {path}: {len(boxes)} boxes (world RAS mm)")
    return 0


def add_detection_commands(sub: Any, training_flags: bool = True) -> None:
    """Register ``detect`` (``train``, ``evaluate``, ``infer``) on a subparsers object.

    Args:
        sub: the main parser's subparsers.
        training_flags: give ``detect train`` its flags (generated from ``DetectionConfig``, whose
            import takes seconds; :func:`pipelines.cli.main` leaves them out for other commands).
    """
    detect = sub.add_parser(
        "detect", help="lesion detection with the glass-box encoder (train, evaluate, infer)"
    )
    commands = detect.add_subparsers(dest="detect_command", required=True, metavar="{train,evaluate,infer}")

    train = commands.add_parser("train", help="train the detector (MONAI RetinaNet on the glass-box encoder)")
    train.add_argument(
        "--datalist",
        help="datalist JSON with image and boxes records (default: a brain2d, or with a 3D --spatial-size a "
        "brain3d, phantom cohort generated in OUT/cohort on first use)",
    )
    train.add_argument("--out", required=True, help="output folder; a last.pt there is resumed")
    train.add_argument("--cohort-n", type=int, default=200, help="size of the default phantom cohort")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    if training_flags:
        from pipelines.config_arguments import add_config_arguments
        from pipelines.detection_config import DETECTION_CHOICES, DetectionConfig

        add_config_arguments(train, DetectionConfig, skip=_NOT_FLAGS, choices=DETECTION_CHOICES)
    train.set_defaults(func=_cmd_train)

    evaluate = commands.add_parser("evaluate", help="mAP@0.1, mAP@0.1:0.5, FROC and CPM of a trained run")
    evaluate.add_argument("--model", required=True, help="the detect train run folder (config.json, best.pt)")
    evaluate.add_argument("--datalist", help="datalist to score (default: the run's own)")
    evaluate.add_argument("--section", default="test", help="datalist section (default test)")
    evaluate.add_argument("--out", help="folder of metrics.json and figures (default MODEL/evaluate_SECTION)")
    evaluate.set_defaults(func=_cmd_evaluate)

    infer = commands.add_parser("infer", help="detect lesions; one boxes JSON per image in world (RAS) mm")
    infer.add_argument("--model", required=True, help="the detect train run folder (config.json, best.pt)")
    infer.add_argument("--image", help="one image: NIfTI, DICOM file or series folder, PNG")
    infer.add_argument("--datalist", help="a datalist instead (its --section images)")
    infer.add_argument(
        "--section", default=None, help="datalist section (default test, else the first present)"
    )
    infer.add_argument("--out", required=True, help="output folder")
    infer.set_defaults(func=_cmd_infer)
