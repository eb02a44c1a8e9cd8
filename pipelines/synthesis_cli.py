"""The image-to-image synthesis subcommands of ``medglass``: ``translate`` (train) and ``synthesize``.

Thin shells over :func:`pipelines.synthesis_training.train_synthesis` and
:func:`pipelines.synthesis_inference.synthesize`; :func:`add_synthesis_commands` registers them
on the main parser of :mod:`pipelines.cli`. ``translate``'s flags are generated from
:class:`~pipelines.synthesis_config.SynthesisConfig` (:mod:`pipelines.config_arguments`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_synthesis_commands", "synthesis_config"]

_NOT_FLAGS = ("datalist", "out_dir", "progress", "distributed")
"""SynthesisConfig fields ``translate`` sets itself (torchrun sets ``distributed``)."""


def synthesis_config(args: argparse.Namespace) -> Any:
    """The ``SynthesisConfig`` of ``medglass translate``; generates the default dce2d cohort if needed."""
    from pipelines.config_arguments import config_values
    from pipelines.synthesis_config import SynthesisConfig

    cohort = Path(args.out) / "cohort"
    datalist = args.datalist or cohort / "datalist.json"
    config = SynthesisConfig(
        datalist=datalist,
        out_dir=args.out,
        progress=not args.no_progress,
        **config_values(args, SynthesisConfig),
    )
    if args.datalist is None and not Path(datalist).is_file():
        from phantoms.contrast_cohort import generate_contrast_cohort
        from phantoms.contrast_config import ContrastPhantomConfig

        kind = "dce2d" if config.spatial_dims == 2 else "dce3d"
        print(f"no --datalist: generating the default {kind} phantom cohort in {cohort}")
        generate_contrast_cohort(
            ContrastPhantomConfig(
                kind=kind, n=args.cohort_n, seed=config.seed, size=max(config.spatial_size)
            ),
            cohort,
            progress=not args.no_progress,
        )
    return config


def _cmd_translate(args: argparse.Namespace) -> int:
    from pipelines.synthesis_training import train_synthesis

    metrics = train_synthesis(synthesis_config(args))
    shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith(("best_", "test_")) and v == v}
    print(json.dumps(shown, indent=1))
    print(f"checkpoints, panels and metrics.json: {args.out}")
    return 0


def _cmd_synthesize(args: argparse.Namespace) -> int:
    from pipelines.synthesis_inference import synthesize

    if (args.image is None) == (args.datalist is None):
        raise ValueError("give exactly one of --image FILE or --datalist D")
    result = synthesize(
        args.model, args.image or args.datalist, args.out, section=args.section, device=args.device
    )
    for case in result["cases"]:
        extra = f", DICOM {case['synthetic_dicom']}" if "synthetic_dicom" in case else ""
        print(f"  {case['id']}: {case['synthetic']}, panel {case['panel']}{extra}")
    if result["metrics"]:
        model = result["metrics"]["model"]
        keys = ("ssim", "lesion_ssim", "enhancement_correlation", "enhancement_dice")
        print(
            "synthesize: "
            + ", ".join(f"{k} {model[k]:.3f}" for k in keys if k in model and model[k] == model[k])
        )
    if result["report"]:
        print(f"  report -> {result['report']}")
    return 0


def add_synthesis_commands(sub: Any, training_flags: bool = True) -> None:
    """Register ``translate`` and ``synthesize`` on a subparsers object.

    Args:
        sub: the main parser's subparsers.
        training_flags: give ``translate`` its flags (generated from ``SynthesisConfig``, whose
            import takes seconds; :func:`pipelines.cli.main` leaves them out for other commands).
    """
    translate = sub.add_parser(
        "translate",
        help="train a paired image-to-image model (pix2pix: e.g. pre- to post-contrast MRI)",
    )
    translate.add_argument(
        "--datalist",
        help="datalist JSON with source/target (and mask) records (default: a dce2d phantom cohort generated "
        "in OUT/cohort on first use)",
    )
    translate.add_argument("--out", required=True, help="output folder; a last.pt there is resumed")
    translate.add_argument("--cohort-n", type=int, default=200, help="size of the default phantom cohort")
    translate.add_argument("--no-progress", action="store_true", help="no progress bar")
    if training_flags:
        from pipelines.config_arguments import add_config_arguments
        from pipelines.synthesis_config import SELECT_BY, SynthesisConfig

        add_config_arguments(
            translate,
            SynthesisConfig,
            skip=_NOT_FLAGS,
            choices={"device": ("auto", "cpu", "cuda"), "select_by": tuple(SELECT_BY)},
            defaults={"spatial_size": (64, 64)},
        )
    translate.set_defaults(func=_cmd_translate)

    synth = sub.add_parser(
        "synthesize",
        help="synthesise target images (e.g. post-contrast) with a translate model; panels, NIfTI/DICOM, metrics",
    )
    synth.add_argument("--model", required=True, help="the translate run folder (config.json, best.pt)")
    synth.add_argument("--image", help="one source image (DICOM, NIfTI, PNG)")
    synth.add_argument("--datalist", help="a paired datalist instead (metrics when targets exist)")
    synth.add_argument(
        "--section", default=None, help="datalist section (default: test, else the first present)"
    )
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    synth.set_defaults(func=_cmd_synthesize)
