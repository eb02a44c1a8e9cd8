"""The ``medglass`` command line: thin shells over typed functions.

Every subcommand validates its arguments, calls one function and prints a short
summary. Errors print one line (``medglass ingest: error: ...``, the file or config key and the
reason, unwrapped from MONAI's transform and bundle wrapping by :mod:`pipelines.user_errors`)
and exit with status 2; engines do not echo the failure with a traceback. ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.training_config import TrainConfig

__all__ = ["main", "build_parser"]


def _quiet_libraries() -> None:
    """Keep third-party chatter (pydicom header warnings, MONAI optional readers) off the console."""
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # retrying: dicomweb-client's retries log each refused connection with its traceback
    for name in (
        "pydicom",
        "monai",
        "monai.data.nvimgcodec_pydicom_plugin",
        "nibabel",
        "retrying",
        "dicomweb_client",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)


def _cmd_ingest(args: argparse.Namespace) -> int:
    from transforms.dicomweb_source import is_dicomweb_url

    if is_dicomweb_url(args.src):
        from pipelines.dicomweb_ingest import ingest_dicomweb

        result = ingest_dicomweb(
            args.src, args.out, args.study, args.labels, salt=args.salt, progress=not args.no_progress
        )
    else:
        from pipelines.ingest import ingest_folder

        if args.study:
            raise ValueError(f"--study selects studies on a DICOMweb server; SRC {args.src} is a folder")
        result = ingest_folder(
            args.src, args.out, labels_csv=args.labels, salt=args.salt, progress=not args.no_progress
        )
    out = Path(args.out)
    print(
        f"ingested {result.n_files} files in {result.seconds:.1f} s ({result.n_files / max(result.seconds, 1e-9):.0f} files/s)"
    )
    print(f"  {len(result.records)} images -> {out / 'datalist.json'}")
    print(f"  {len(result.rejects)} rejected -> {out / 'rejects.csv'}")
    for note in result.notes:
        print(f"  note: {note}")
    if not result.records:
        print(
            f"medglass ingest: error: {args.src}: no readable images found (see {out / 'rejects.csv'})",
            file=sys.stderr,
        )
        return 1
    return 0


CONTRAST_KINDS = ("dce2d", "dce2d_t2", "dce3d")
"""Phantom kinds with paired source/target images (:mod:`phantoms.contrast_cohort`)."""


def _lesion_options(args: argparse.Namespace) -> dict[str, tuple]:
    """The ``PhantomConfig`` lesion fields given to ``medglass phantom`` (brain kinds only).

    Raises:
        ValueError: a lesion flag with a contrast kind, or ``--lesions-per-image`` with 0 or 3+ values.
    """
    given = {"--lesions-per-image": args.lesions_per_image, "--lesion-radius": args.lesion_radius}
    if args.kind in CONTRAST_KINDS:
        named = [flag for flag, value in given.items() if value is not None]
        if named:
            raise ValueError(
                f"{', '.join(named)}: only for --kind brain2d or brain3d, got --kind {args.kind}"
            )
        return {}
    options: dict[str, tuple] = {}
    counts = args.lesions_per_image
    if counts is not None:
        if len(counts) not in (1, 2):
            raise ValueError(f"--lesions-per-image takes N (1 to N lesions) or MIN MAX, got {counts}")
        options["lesions_per_image"] = (1, counts[0]) if len(counts) == 1 else tuple(counts)
    if args.lesion_radius is not None:
        options["lesion_radius_range"] = tuple(args.lesion_radius)
    return options


def _cmd_phantom(args: argparse.Namespace) -> int:
    lesion_options = _lesion_options(args)
    if args.kind in CONTRAST_KINDS:
        from phantoms.contrast_cohort import generate_contrast_cohort
        from phantoms.contrast_config import ContrastPhantomConfig

        summary = generate_contrast_cohort(
            ContrastPhantomConfig(kind=args.kind, n=args.n, seed=args.seed, size=args.size),
            args.out,
            progress=not args.no_progress,
        )
    else:
        from phantoms.brain_cohort import PhantomConfig, generate_cohort

        config = PhantomConfig(
            kind=args.kind,
            n=args.n,
            seed=args.seed,
            size=args.size,
            marker_correlation=args.marker_correlation,
            image_format=args.format or ("png" if args.kind == "brain2d" else "nifti"),
            **lesion_options,
        )
        summary = generate_cohort(config, args.out, progress=not args.no_progress)
    print(json.dumps(summary, indent=1, default=str))
    print(f"datalist: {Path(args.out) / 'datalist.json'}  factors: {Path(args.out) / 'factors.csv'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    lesions = {
        name: value
        for name, value in (("lesion_contrast", args.lesion_contrast), ("lesion_radius", args.lesion_radius))
        if value is not None
    }
    run_demo(
        args.out,
        n=args.n,
        seed=args.seed,
        progress=not args.no_progress,
        pretrain_epochs=args.pretrain_epochs,
        classify_epochs=args.classify_epochs,
        label_fraction=args.label_fraction,
        **lesions,
    )
    return 0


def _train_config(args: argparse.Namespace, mode: str) -> TrainConfig:
    """The ``TrainConfig`` of ``medglass pretrain|classify``; generates the default cohort if needed."""
    from pipelines.config_arguments import config_values
    from pipelines.training_config import TrainConfig

    cohort = Path(args.out) / "cohort"
    datalist = args.datalist or cohort / "datalist.json"
    config = TrainConfig(
        datalist=datalist,
        out_dir=args.out,
        mode=mode,
        progress=not args.no_progress,
        **config_values(args, TrainConfig),
    )
    if args.datalist is None and not Path(datalist).is_file():
        from phantoms.brain_cohort import PhantomConfig, generate_cohort

        print(f"no --datalist: generating the default brain2d phantom cohort in {cohort}")
        generate_cohort(
            PhantomConfig(kind="brain2d", n=args.cohort_n, seed=config.seed, size=max(config.spatial_size)),
            cohort,
            progress=not args.no_progress,
        )
    return config


def _cmd_train(args: argparse.Namespace) -> int:
    from pipelines.training import train

    metrics = train(_train_config(args, args.command))
    shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith(("best_", "test_", "val_auc"))}
    print(json.dumps(shown, indent=1))
    print(f"checkpoints and metrics.json: {args.out}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pipelines.bundle_runner import parse_overrides, run_bundle

    config, tokens = args.config, list(args.overrides)
    for i, token in enumerate(tokens):  # --config after BUNDLE lands in the overrides
        if token == "--config" and i + 1 < len(tokens):
            config = tokens[i + 1]
            del tokens[i : i + 2]
            break
        if token.startswith("--config="):
            config = token.partition("=")[2]
            del tokens[i]
            break
    result = run_bundle(args.bundle, config, parse_overrides(tokens))
    if isinstance(result, dict):
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
        print(
            json.dumps(
                {k: v for k, v in shown.items() if not k.startswith("train_kl_dim")}, indent=1, default=str
            )
        )
    elif result is not None:
        print(result)
    return 0


_NOT_FLAGS = ("datalist", "out_dir", "mode", "progress", "distributed")
"""TrainConfig fields the training commands set themselves (``--datalist``/``--out`` are written
by hand for their own help; torchrun sets ``distributed``)."""

CLASSIFY_ONLY = (
    "label_fraction",
    "labelled_share",
    "pretrained",
    "freeze_encoder",
    "ce_weight",
    "attention_sparsity",
    "synthetic_minority",
    "generator",
)
"""TrainConfig fields that mean nothing without labels (not offered by ``pretrain``)."""

PRETRAIN_DEFAULTS = {"erase_prob": 0.5}
"""Where ``pretrain`` differs from TrainConfig's defaults: context modelling on (patch erasing)."""


def _add_train_arguments(parser: argparse.ArgumentParser, mode: str) -> None:
    """``--datalist``, ``--out``, ``--cohort-n``, ``--no-progress`` and one flag per TrainConfig field.

    The field flags come from :class:`~pipelines.training_config.TrainConfig` itself (type,
    choices, help and default: :mod:`pipelines.config_arguments`).
    """
    from pipelines.config_arguments import add_config_arguments
    from pipelines.training_config import FIELD_CHOICES, TrainConfig

    parser.add_argument(
        "--datalist", help="datalist JSON (default: a phantom cohort generated in OUT/cohort on first use)"
    )
    parser.add_argument("--out", required=True, help="output folder; a last.pt there is resumed")
    parser.add_argument("--cohort-n", type=int, default=400, help="size of the default phantom cohort")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(
        parser,
        TrainConfig,
        skip=_NOT_FLAGS + (CLASSIFY_ONLY if mode == "pretrain" else ()),
        choices=FIELD_CHOICES,
        defaults=PRETRAIN_DEFAULTS if mode == "pretrain" else None,
    )
    parser.set_defaults(func=_cmd_train)


def _training_command(argv: Sequence[str]) -> bool:
    """Whether ``argv`` names a training command (the only ones whose flags need TrainConfig, and torch)."""
    positional = [a for a in argv if not a.startswith("-")]
    return not positional or positional[0] in ("pretrain", "classify", "translate", "segment", "detect")


def build_parser(training_flags: bool = True) -> argparse.ArgumentParser:
    """The argument parser of ``medglass`` and its subcommands.

    Args:
        training_flags: give ``pretrain`` and ``classify`` their flags. They are generated from
            ``TrainConfig``, whose import (torch, MONAI) takes seconds: :func:`main` leaves them
            out when another command runs.
    """
    parser = argparse.ArgumentParser(
        prog="medglass", description="Glass-box medical image analysis on MONAI."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = sub.add_parser(
        "ingest",
        help="read a folder of DICOM/NIfTI/PNG/npz files, or studies from a DICOMweb server, into a MONAI datalist",
        description="SRC is a folder, or the root URL of a DICOMweb service (QIDO-RS, WADO-RS) such as "
        "http://pacs:8042/dicom-web; its instances are retrieved into OUT/dicom/ and read as a folder would be.",
        epilog="DICOMweb credentials come from the environment only: MEDGLASS_DICOMWEB_USER and "
        "MEDGLASS_DICOMWEB_PASSWORD (HTTP basic), or MEDGLASS_DICOMWEB_TOKEN (bearer token). "
        "They are never written to OUT or printed.",
    )
    ingest.add_argument("src", help="folder to read (never modified), or a DICOMweb root URL (http[s]://...)")
    ingest.add_argument(
        "--study",
        action="append",
        metavar="UID",
        help="with a DICOMweb URL: a Study Instance UID to ingest (repeat for several; default: every study)",
    )
    ingest.add_argument("--out", required=True, help="output folder for datalist.json and rejects.csv")
    ingest.add_argument("--labels", help="CSV with a 'label' column and a 'file' or 'patient' column")
    ingest.add_argument(
        "--salt", help="secret for site pseudonyms (default: $MEDGLASS_SITE_SALT, else random)"
    )
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")
    ingest.set_defaults(func=_cmd_ingest)

    phantom = sub.add_parser("phantom", help="generate a synthetic cohort with known generative factors")
    phantom.add_argument(
        "--kind",
        choices=("brain2d", "brain3d", *CONTRAST_KINDS),
        default="brain2d",
        help="brain2d/brain3d: lesions (--lesions-per-image) or none per image, a spurious marker; dce2d/dce3d: paired pre- and "
        "post-contrast images with enhancing lesions of known kinetics; dce2d_t2: paired T1-like and T2-like "
        "images (default brain2d)",
    )
    phantom.add_argument("--n", type=int, default=100, help="number of images (default 100)")
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--out", required=True, help="output folder")
    phantom.add_argument(
        "--marker-correlation",
        type=float,
        default=0.5,
        help="P(spurious marker present == label); 0.5 = independent (default), 0.9 = shortcut, 0.1 = reversed",
    )
    phantom.add_argument("--size", type=int, default=64, help="image edge length in pixels (default 64)")
    phantom.add_argument(
        "--format", choices=("png", "nifti", "dicom"), help="file format (default png 2D, nifti 3D)"
    )
    phantom.add_argument(
        "--lesions-per-image",
        type=int,
        nargs="+",
        metavar="N",
        help="brain2d/brain3d: N (1 to N lesions per positive image) or MIN MAX; the mask holds instance "
        "ids 1..k, the record one box per lesion (default 1)",
    )
    phantom.add_argument(
        "--lesion-radius",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="brain2d/brain3d: lesion radius range, px at 64x64 (default 1.5 3.5)",
    )
    phantom.add_argument("--no-progress", action="store_true")
    phantom.set_defaults(func=_cmd_phantom)

    demo = sub.add_parser("demo", help="the end-to-end demo on a generated phantom cohort")
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--n", type=int, default=1200, help="phantom images to generate (default 1200)")
    demo.add_argument("--pretrain-epochs", type=int, default=6, help="self-supervised epochs (default 6)")
    demo.add_argument("--classify-epochs", type=int, default=20, help="fine-tuning epochs (default 20)")
    demo.add_argument(
        "--label-fraction",
        type=float,
        default=0.1,
        help="fraction of the training labels the classifier sees (default 0.1; the rest is unlabelled)",
    )
    demo.add_argument(
        "--lesion-contrast",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="lesion contrast range of the demo cohort (default 0.15 0.35; the benchmarks use 0.02 0.25)",
    )
    demo.add_argument(
        "--lesion-radius",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="lesion radius range of the demo cohort, px at 64x64 (default 2.5 4.5; benchmarks 1.5 3.5)",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true")
    demo.set_defaults(func=_cmd_demo)

    pretrain = sub.add_parser(
        "pretrain", help="pretrain the glass-box network (β-VAE, context modelling), no labels"
    )
    if training_flags:
        _add_train_arguments(pretrain, "pretrain")

    classify = sub.add_parser(
        "classify", help="train the classifier (semi-supervised, optionally transferred)"
    )
    if training_flags:
        _add_train_arguments(classify, "classify")

    run = sub.add_parser(
        "run",
        help="run a MONAI bundle workflow (train, evaluate, inference, multi_gpu_train)",
        usage="medglass run BUNDLE [--config NAME] [--key value ...]",
    )
    run.add_argument("bundle", help="bundle name under bundles/ (e.g. glassbox_classification) or folder")
    run.add_argument(
        "--config",
        choices=("train", "evaluate", "inference", "multi_gpu_train", "explain"),
        default="train",
        help="workflow; evaluate and multi_gpu_train are overlays on train; explain: glassbox_classification only (default train)",
    )
    run.add_argument(
        "overrides",
        nargs=argparse.REMAINDER,
        help="config overrides as --id value, ids #-separated as in MONAI (--train#epochs 1), values JSON",
    )
    run.set_defaults(func=_cmd_run)

    from pipelines.analysis_cli import add_analysis_commands
    from pipelines.detection_cli import add_detection_commands
    from pipelines.generation_cli import add_generation_commands
    from pipelines.label_server_cli import add_label_server_commands
    from pipelines.segmentation_cli import add_segmentation_commands
    from pipelines.synthesis_cli import add_synthesis_commands

    add_analysis_commands(sub)
    add_generation_commands(sub)
    add_synthesis_commands(sub, training_flags=training_flags)
    add_label_server_commands(sub)
    add_segmentation_commands(sub, training_flags=training_flags)
    add_detection_commands(sub, training_flags=training_flags)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``medglass``; returns the exit status.

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when the command ran but found nothing usable, 2 on errors.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(training_flags=_training_command(argv))
    args = parser.parse_args(argv)
    _quiet_libraries()
    from pipelines.user_errors import one_line, quiet_engine_errors, user_error

    try:
        if args.debug:
            return int(args.func(args) or 0)
        with quiet_engine_errors():  # the error is reported once, below, not echoed by engines
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"medglass {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as caught:
        if args.debug:
            raise
        err = user_error(caught)
        message = one_line(err)
        if not isinstance(err, (ValueError, TypeError, OSError)):  # not a user error: say what broke
            message = f"{type(err).__name__}: {message} (rerun with --debug for the traceback)"
        print(f"medglass {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
