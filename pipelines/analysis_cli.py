"""The analysis subcommands of ``medglass``: ``explain``, ``audit``, ``mitigate``.

Thin shells over :mod:`pipelines.explain` and :mod:`pipelines.bias_audit`; :func:`add_analysis_commands`
registers them on the main parser of :mod:`pipelines.cli`.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_analysis_commands"]


def _print_result(kind: str, result: dict[str, Any], keys: list[str]) -> None:
    metrics = result["metrics"]
    shown = [f"{k} {metrics[k]:.3f}" for k in keys if k in metrics and metrics[k] == metrics[k]]
    if shown:
        print(f"{kind}: " + ", ".join(shown))
    print(f"  report -> {result['report']}")
    if result.get("run_id"):
        print(f"  MLflow run {result['run_id']}")


def _cmd_explain(args: argparse.Namespace) -> int:
    from pipelines.explain import ExplainSettings, explain_image
    from pipelines.explain_dataset import explain_dataset

    if (args.image is None) == (args.datalist is None):
        raise ValueError("give exactly one of --image FILE or --datalist D")
    settings = ExplainSettings(max_images=args.max_images, target_class=args.target_class)
    if args.image is not None:
        result = explain_image(
            args.model,
            args.image,
            args.out,
            mask=args.mask,
            settings=settings,
            track=not args.no_mlflow,
            progress=not args.no_progress,
        )
        _print_result("explain", result, ["prob", "cf_flipped", "cf_changed_fraction"])
    else:
        result = explain_dataset(
            args.model,
            args.datalist,
            args.out,
            section=args.section,
            settings=settings,
            track=not args.no_mlflow,
            progress=not args.no_progress,
        )
        _print_result(
            "explain",
            result,
            [
                "cf_flip_rate",
                "cf_median_changed_fraction",
                "attention_pointing_game",
                "counterfactual_pointing_game",
                "gradcam_topk_iou",
                "disentanglement/mig",
            ],
        )
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from pipelines.bias_audit import audit

    result = audit(
        args.model,
        args.datalist,
        args.out,
        section=args.section,
        attributes=args.attributes,
        gap_threshold=args.gap_threshold,
        alpha=args.alpha,
        n_permutations=args.permutations,
        track=not args.no_mlflow,
        progress=not args.no_progress,
    )
    for sentence in result["summary"]:
        print(f"  {sentence}")
    for note in result["skipped"]:
        print(f"  not audited: {note}")
    print("how to read the two numbers of each line:")
    for reading in result["reading"]:
        print(f"  {reading}")
    flagged = [a for a, f in result["flags"].items() if f]
    print(f"audit: flagged {', '.join(flagged) if flagged else 'nothing'}")
    _print_result("audit", result, [])
    return 0


def _cmd_mitigate(args: argparse.Namespace) -> int:
    from pipelines.bias_mitigation import mitigate

    result = mitigate(
        args.model,
        args.attribute,
        args.datalist,
        args.out,
        calibration_section=args.calibration_section,
        sections=args.sections,
        conditional=args.conditional,
        per_label=args.per_label,
        track=not args.no_mlflow,
        progress=not args.no_progress,
    )
    for sentence in result["summary"]:
        print(f"  {sentence}")
    print(f"  eraser -> {result['eraser']}")
    _print_result("mitigate", result, [])
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="training run folder, checkpoint, runs:/<id>/model, models:/<name>/<version> or run id",
    )
    parser.add_argument("--out", required=True, help="output folder (report.html, metrics.json, figures)")
    parser.add_argument("--no-mlflow", action="store_true", help="don't log the report to MLflow")
    parser.add_argument("--no-progress", action="store_true")


def add_analysis_commands(sub: Any) -> None:
    """Register ``explain``, ``audit`` and ``mitigate`` on a subparsers object."""
    explain = sub.add_parser(
        "explain", help="explain one image or a datalist (traversals, counterfactuals, maps)"
    )
    _common(explain)
    explain.add_argument("--image", help="one image file to explain")
    explain.add_argument("--mask", help="its lesion mask (adds localisation scores)")
    explain.add_argument("--datalist", help="a datalist to explain instead (dataset-level report)")
    explain.add_argument("--section", default="test", help="datalist section (default test)")
    explain.add_argument("--max-images", type=int, default=100, help="true positives explained (default 100)")
    explain.add_argument("--target-class", type=int, default=1, help="class explained (default 1)")
    explain.set_defaults(func=_cmd_explain)

    audit = sub.add_parser(
        "audit", help="bias audit: subgroup gaps, latent leakage and reliance per attribute"
    )
    _common(audit)
    audit.add_argument("--datalist", required=True, help="datalist with attributes per record")
    audit.add_argument("--section", default="test", help="datalist section audited (default test)")
    audit.add_argument("--attributes", nargs="*", default=None, help="attributes to audit (default: all)")
    audit.add_argument(
        "--gap-threshold", type=float, default=0.05, help="subgroup gap that counts (default 0.05)"
    )
    audit.add_argument(
        "--alpha", type=float, default=0.01, help="significance after Holm correction (default 0.01)"
    )
    audit.add_argument("--permutations", type=int, default=1000, help="permutations per test (default 1000)")
    audit.set_defaults(func=_cmd_audit)

    mitigate = sub.add_parser(
        "mitigate", help="erase an attribute from the latent space (LEACE), no retraining"
    )
    _common(mitigate)
    mitigate.add_argument("--attribute", required=True, help="attribute to erase (e.g. marker, site, sex)")
    mitigate.add_argument("--datalist", required=True, help="datalist with attributes per record")
    mitigate.add_argument(
        "--calibration-section",
        default="validation",
        nargs="+",
        help="held-out section(s) the eraser is fitted on (default validation)",
    )
    mitigate.add_argument(
        "--conditional",
        action="store_true",
        help="erase the attribute within each label (keeps the disease information a shortcut shares "
        "with the label; see README)",
    )
    mitigate.add_argument(
        "--per-label",
        action="store_true",
        help="like --conditional, but remove the attribute's effect inside each label separately "
        "(erases more, also disease information; see README)",
    )
    mitigate.add_argument(
        "--sections",
        nargs="*",
        default=None,
        help="sections evaluated before/after (default: test and test_shifted if present)",
    )
    mitigate.set_defaults(func=_cmd_mitigate)
