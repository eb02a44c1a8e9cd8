"""The generation subcommands of ``medglass``: ``generate``, ``evaluate-generation`` and ``refine-decoder``.

Thin shells over :func:`pipelines.generation.generate`,
:func:`pipelines.generation_report.evaluate_generation` and
:func:`pipelines.decoder_refinement.refine_decoder` (whose flags are generated from
:class:`~pipelines.decoder_refinement_config.RefineConfig`); :func:`add_generation_commands`
registers them on the main parser of :mod:`pipelines.cli`.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_generation_commands"]


def _latent_values(items: list[str] | None) -> dict[int, float] | None:
    """``["1=2.5", "3=-1"]`` → ``{1: 2.5, 3: -1.0}``."""
    if not items:
        return None
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            values[int(key)] = float(value)
        except ValueError:
            raise ValueError(f"--latent takes k=v pairs (a latent index and a value), got {item!r}") from None
        if not sep:
            raise ValueError(f"--latent takes k=v pairs (a latent index and a value), got {item!r}")
    return values


def _cmd_generate(args: argparse.Namespace) -> int:
    from pipelines.generation import generate

    summary = generate(
        args.model,
        args.out,
        n=args.n,
        cls=args.cls,
        latent_values=_latent_values(args.latent),
        source=args.source,
        seed=args.seed,
        image_format=args.format,
        device=args.device,
    )
    print(f"generate: {args.n} images ({summary.get('source')}) -> {summary['datalist']}")
    if summary.get("predicted_as_label") is not None:
        print(f"  the model classifies {100 * summary['predicted_as_label']:.0f} % of them as their label")
    return 0


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


def _cmd_refine_decoder(args: argparse.Namespace) -> int:
    from pipelines.config_arguments import config_values
    from pipelines.decoder_refinement import refine_decoder
    from pipelines.decoder_refinement_config import RefineConfig

    config = RefineConfig(
        model=args.model, out_dir=args.out, progress=not args.no_progress, **config_values(args, RefineConfig)
    )
    m = refine_decoder(config)
    print(
        f"refine-decoder: validation FID {m['best_val_fid']:.3g} (epoch {m['best_epoch']:.0f}; before {m['val_fid_before']:.3g}, "
        f"real-vs-real floor {m['val_fid_floor']:.3g}); frozen tensors changed {m['frozen_tensors_changed']:.0f}, "
        f"largest latent drift {m['latent_drift_max']:.3g}"
    )
    print(f"  refined run -> {args.out} (medglass generate --model {args.out} ...)")
    return 0


def add_generation_commands(sub: Any) -> None:
    """Register the generation subcommands on a subparsers object."""
    gen = sub.add_parser(
        "generate",
        help="synthetic images from a trained model's latent space (per class, chosen latent values)",
    )
    gen.add_argument(
        "--model", required=True, help="a trained run (run folder, checkpoint or MLflow reference)"
    )
    gen.add_argument("--n", type=int, required=True, help="number of images")
    gen.add_argument(
        "--class", dest="cls", type=int, default=None, help="class to draw (default: as in training)"
    )
    gen.add_argument(
        "--latent",
        nargs="*",
        metavar="K=V",
        help="condition on latent values the head reads, e.g. --latent 1=2.5",
    )
    gen.add_argument(
        "--source",
        choices=("aggregate", "posterior", "prior"),
        default="aggregate",
        help="aggregate: the class's Gaussian fitted on the training codes (new images; default); posterior: "
        "near a random training image; prior: N(0, I), for comparison",
    )
    gen.add_argument("--seed", type=int, default=0, help="same seed, same images")
    gen.add_argument("--format", choices=("png", "nifti"), default="png", help="image files (default png)")
    gen.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    gen.add_argument("--out", required=True, help="output folder (images/, latents/, datalist.json)")
    gen.set_defaults(func=_cmd_generate)

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

    from pipelines.config_arguments import add_config_arguments
    from pipelines.decoder_refinement_config import RefineConfig

    refine = sub.add_parser(
        "refine-decoder",
        help="sharpen a trained run's decoder against a patch critic (VAE-GAN; encoder and classifier frozen)",
    )
    refine.add_argument(
        "--model", required=True, help="the trained glass-box run (folder, checkpoint or MLflow reference)"
    )
    refine.add_argument("--out", required=True, help="the refined run folder (a last.pt there is resumed)")
    refine.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(
        refine,
        RefineConfig,
        skip=("model", "out_dir", "progress"),
        choices={"device": ("auto", "cpu", "cuda")},
    )
    refine.set_defaults(func=_cmd_refine_decoder)
