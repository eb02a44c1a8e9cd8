"""Run the project's MONAI bundles (``bundles/<name>/configs/*.json``) by name or path.

:func:`run_bundle` is ``python -m monai.bundle run`` with three additions: bundles are found by
name under the repository's ``bundles/`` folder, ``bundle_root`` defaults to the bundle's own
folder (whatever the working directory), and every override id must already exist in the merged
config — a misspelt ``--train#epochz 1`` is an error before anything runs, where MONAI would
silently add the key. Overlays are merged the MONAI way: ``evaluate`` and ``multi_gpu_train``
are read as ``config_file=[train.json, <overlay>.json]``; ``train`` and ``inference`` stand
alone.

The other functions are the small helpers the bundle configs call: :func:`ensure_datalist`
(generate the default phantom cohort on first use), :func:`datalist_records` and
:func:`run_evaluator` (run an evaluator and write its metrics as JSON).

Example:
    >>> metrics = run_bundle("glassbox_classification", "train",
    ...                      {"output_dir": "/tmp/cls", "train#epochs": 1})  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from pipelines.user_errors import apply_quiet_filter, user_error

__all__ = [
    "BUNDLES_DIR",
    "CONFIG_NAMES",
    "OPTIONAL_CONFIGS",
    "OVERLAYS",
    "find_bundle",
    "bundle_config_files",
    "parse_overrides",
    "check_overrides",
    "run_bundle",
    "ensure_datalist",
    "ensure_contrast_datalist",
    "datalist_records",
    "run_evaluator",
    "run_inference",
    "generation_metrics",
]

logger = logging.getLogger("medglass.bundles")

BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"
"""The repository's bundle folder (bundles are found here by name)."""

CONFIG_NAMES = ("train", "evaluate", "inference", "multi_gpu_train")
"""Configs every medglass bundle ships (``configs/<name>.json``)."""

OPTIONAL_CONFIGS = ("explain",)
"""Configs only some bundles ship (``glassbox_classification``: ``explain``)."""

OVERLAYS = ("evaluate", "multi_gpu_train")
"""Configs that are overlays on ``train.json`` (they hold only the ids they change or add)."""


def find_bundle(bundle: str | PathLike) -> Path:
    """The folder of a bundle given by name (under :data:`BUNDLES_DIR`) or by path.

    Args:
        bundle: a bundle name such as ``"glassbox_classification"`` or a bundle folder.

    Returns:
        The absolute bundle folder (it holds ``configs/metadata.json``).

    Raises:
        ValueError: no such bundle; the message lists the bundles found by name.
    """
    candidates = [Path(bundle).expanduser()]
    if isinstance(bundle, str) and os.sep not in bundle:
        candidates.append(BUNDLES_DIR / bundle)
    for path in candidates:
        if (path / "configs" / "metadata.json").is_file():
            return path.resolve()
    known = sorted(p.parent.parent.name for p in BUNDLES_DIR.glob("*/configs/metadata.json"))
    raise ValueError(
        f"bundle {str(bundle)!r}: not a bundle folder (no configs/metadata.json) and not a bundle "
        f"name in {BUNDLES_DIR} (known: {', '.join(known) or 'none'})"
    )


def bundle_config_files(bundle_dir: str | PathLike, config: str = "train") -> list[Path]:
    """The config files a workflow reads, base first (``[train.json, evaluate.json]`` for an overlay).

    Args:
        bundle_dir: the bundle folder.
        config: one of :data:`CONFIG_NAMES` or :data:`OPTIONAL_CONFIGS` (when the bundle ships it).

    Returns:
        Existing config files, in merge order.

    Raises:
        ValueError: an unknown config name or a missing file.
    """
    if config not in CONFIG_NAMES + OPTIONAL_CONFIGS:
        raise ValueError(f"config must be one of {CONFIG_NAMES + OPTIONAL_CONFIGS}, got {config!r}")
    configs = Path(bundle_dir) / "configs"
    names = ["train", config] if config in OVERLAYS else [config]
    files = [configs / f"{name}.json" for name in names]
    for file in files:
        if not file.is_file():
            raise ValueError(f"bundle {bundle_dir}: config file {file} not found")
    return files


def _decode(value: str) -> Any:
    """JSON value of a command-line string (``1`` → 1, ``true`` → True, ``[32, 32]`` → list), else the string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def parse_overrides(tokens: Sequence[str]) -> dict[str, Any]:
    """``["--train#epochs", "1", "--output_dir=/tmp/x"]`` → ``{"train#epochs": 1, "output_dir": "/tmp/x"}``.

    Values are JSON-decoded when they parse as JSON (numbers, ``true``/``false``/``null``, lists,
    quoted strings), else kept as strings. Ids are MONAI ids: ``#`` separates nested keys.

    Args:
        tokens: ``--key value`` or ``--key=value`` pairs.

    Returns:
        The overrides, in order.

    Raises:
        ValueError: a token that is not ``--key`` where one is expected, or a key without a value.
    """
    overrides: dict[str, Any] = {}
    items = list(tokens)
    i = 0
    while i < len(items):
        token = items[i]
        if not token.startswith("--") or len(token) == 2:
            raise ValueError(
                f"override {token!r}: expected --key value (a config id such as --train#epochs 1)"
            )
        key, sep, value = token[2:].partition("=")
        if not sep:
            if i + 1 >= len(items):
                raise ValueError(f"override --{key}: missing value")
            value = items[i + 1]
            i += 1
        overrides[key] = _decode(value)
        i += 1
    return overrides


def check_overrides(parser: Any, overrides: Mapping[str, Any], files: Sequence[str | PathLike]) -> None:
    """Raise unless every override id already exists in the parsed config.

    A ``train#<field>`` override may add a field the bundle does not declare: the ``train``
    section holds only what the bundle changes, and the settings dataclass it builds
    (``TrainConfig``, ``SynthesisConfig``) names a key that is none of its fields.

    Args:
        parser: a ``monai.bundle.ConfigParser`` holding the merged config.
        overrides: id → value.
        files: the config files (named in the message).

    Raises:
        ValueError: ``config key 'train#epochz' does not exist in <files>``.
    """
    where = " + ".join(str(f) for f in files)
    for key in overrides:
        try:
            exists = isinstance(key, str) and bool(key) and key in parser
        except TypeError:  # an id that descends into a number or string
            exists = False
        if not exists and isinstance(key, str) and key.count("#") == 1 and key.startswith("train#"):
            exists = key.split("#")[1] in _train_fields(parser)
        if not exists:
            raise ValueError(f"config key {key!r} does not exist in {where}")


def _train_fields(parser: Any) -> set[str]:
    """The fields of the settings dataclass a bundle's ``train_config`` builds from ``train`` (none when unknown)."""
    from pipelines.config_arguments import settings_class

    try:
        spec = parser["train_config"]
        cls = settings_class(spec["cls"]) if isinstance(spec, dict) and "cls" in spec else None
    except (KeyError, TypeError):
        return set()
    return {f.name for f in dataclasses.fields(cls)} if cls is not None else set()


def run_bundle(
    bundle: str | PathLike, config: str = "train", overrides: Mapping[str, Any] | None = None
) -> Any:
    """Run one workflow of a bundle with MONAI's ``ConfigWorkflow`` and return what its ``run`` id gives.

    ``bundle_root`` is set to the bundle folder unless overridden; ``configs/metadata.json`` and
    ``configs/logging.conf`` are used as MONAI does.

    Args:
        bundle: bundle name (under ``bundles/``) or folder.
        config: ``"train"``, ``"evaluate"`` (overlay), ``"inference"``, ``"multi_gpu_train"`` (overlay)
            or ``"explain"`` (``glassbox_classification``).
        overrides: MONAI id → value (``{"train#epochs": 1, "output_dir": "/tmp/run"}``).

    Returns:
        The value of the config's ``run`` expression (``train``: the metrics dict of
        :func:`pipelines.training.train`; ``evaluate``: the metrics of :func:`run_evaluator`;
        ``inference``: the path of the predictions file).

    Raises:
        ValueError: unknown bundle or config, or an override id that is not in the config
            (checked before anything runs).
    """
    from monai.bundle import ConfigParser, ConfigWorkflow

    bundle_dir = find_bundle(bundle)
    files = bundle_config_files(bundle_dir, config)
    overrides = dict(overrides or {})
    parser = ConfigParser()
    parser.read_config(f=[str(f) for f in files])
    root = BUNDLES_DIR.parent
    check_overrides(parser, overrides, [f.relative_to(root) if f.is_relative_to(root) else f for f in files])
    overrides.setdefault("bundle_root", str(bundle_dir))
    configs = bundle_dir / "configs"
    logging_file = configs / "logging.conf"
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in files],
        meta_file=str(configs / "metadata.json"),
        logging_file=str(logging_file) if logging_file.is_file() else False,
        workflow_type=None,
        **overrides,
    )
    apply_quiet_filter()  # the bundle's logging.conf just replaced the handlers (see pipelines.cli)
    workflow.initialize()
    try:
        results = workflow.run()  # one value per expression of the run id
    except Exception as err:
        _raise_checkpoint_mismatch(workflow, err)
        raise
    workflow.finalize()
    return results[0] if isinstance(results, list) and len(results) == 1 else results


def _raise_checkpoint_mismatch(workflow: Any, err: BaseException) -> None:
    """Name the checkpoint when a run failed because its weights do not fit ``network_def``.

    MONAI's ``CheckpointLoader`` reports ``Error(s) in loading state_dict for <network>`` without
    the file; the bundles load ``@checkpoint``.

    Raises:
        ValueError: ``checkpoint <file>: does not fit the bundle's network_def (...)``, when that is
            what happened; otherwise returns and the caller re-raises ``err``.
    """
    cause = user_error(err)
    if not (isinstance(cause, RuntimeError) and str(cause).startswith("Error(s) in loading state_dict")):
        return
    try:
        checkpoint = workflow.parser.get_parsed_content("checkpoint")
    except Exception:  # noqa: BLE001 - a bundle without a checkpoint id: keep MONAI's message
        return
    details = [line.strip() for line in str(cause).splitlines()[1:] if line.strip()]
    first = details[0] if details else " ".join(str(cause).split())[:200]
    more = f" and {len(details) - 1} more" if len(details) > 1 else ""
    raise ValueError(
        f"checkpoint {checkpoint}: does not fit the bundle's network_def ({first}{more}); the run was trained "
        "with other network settings: override them to match its config.json (--latent, --size, --latent_dim, "
        "--spatial_size, ...)"
    ) from err


def ensure_datalist(
    datalist: str | PathLike | None, cohort_dir: str | PathLike, n: int = 400, size: int = 64, seed: int = 0
) -> str:
    """The datalist to train on: ``datalist`` when given, else a phantom cohort generated on first use.

    The cohort (``kind="brain2d"``, PNG) is written to a temporary sibling folder and renamed
    into place, so a crash leaves no half-written cohort and concurrent ranks of a distributed
    run agree on one.

    Args:
        datalist: a datalist JSON, or ``None``/``""`` for the default cohort.
        cohort_dir: where the default cohort lives (``<cohort_dir>/datalist.json``).
        n: images in the default cohort.
        size: image edge length of the default cohort.
        seed: seed of the default cohort.

    Returns:
        The datalist path, as a string.

    Raises:
        ValueError: ``datalist`` is given but is not a file.
    """
    if datalist not in (None, ""):
        path = Path(datalist).expanduser()
        if not path.is_file():
            raise ValueError(f"datalist {path}: file not found")
        return str(path)
    from phantoms.brain_cohort import PhantomConfig, generate_cohort

    return _generate_once(
        cohort_dir,
        lambda tmp: generate_cohort(
            PhantomConfig(kind="brain2d", n=n, seed=seed, size=size), tmp, progress=False
        ),
    )


def ensure_contrast_datalist(
    datalist: str | PathLike | None,
    cohort_dir: str | PathLike,
    n: int = 200,
    size: int = 64,
    seed: int = 0,
    kind: str = "dce2d",
) -> str:
    """The paired datalist to train on: ``datalist`` when given, else a contrast phantom cohort made on first use.

    As :func:`ensure_datalist`, with the paired pre-/post-contrast cohort of
    :mod:`phantoms.contrast_cohort` (``source``/``target``/``mask`` records).

    Args:
        datalist: a paired datalist JSON, or ``None``/``""`` for the default cohort.
        cohort_dir: where the default cohort lives.
        n: subjects in the default cohort.
        size: image edge length.
        seed: seed of the default cohort.
        kind: ``"dce2d"``, ``"dce3d"`` or ``"dce2d_t2"``.

    Returns:
        The datalist path, as a string.

    Raises:
        ValueError: ``datalist`` is given but is not a file, or a bad phantom setting.
    """
    if datalist not in (None, ""):
        path = Path(datalist).expanduser()
        if not path.is_file():
            raise ValueError(f"datalist {path}: file not found")
        return str(path)
    from phantoms.contrast_cohort import generate_contrast_cohort
    from phantoms.contrast_config import ContrastPhantomConfig

    config = ContrastPhantomConfig(kind=kind, n=n, seed=seed, size=size)  # validated before any file
    return _generate_once(cohort_dir, lambda tmp: generate_contrast_cohort(config, tmp, progress=False))


def _generate_once(cohort_dir: str | PathLike, generate: Any) -> str:
    """``<cohort_dir>/datalist.json``, generating the cohort into a temporary sibling first when missing.

    A crash leaves no half-written cohort, and concurrent ranks of a distributed run agree on one.
    """
    cohort = Path(cohort_dir)
    target = cohort / "datalist.json"
    if target.is_file():
        return str(target)
    cohort.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cohort.name}-", dir=cohort.parent))
    try:
        generate(tmp)
        try:
            os.replace(tmp, cohort)  # fails if another process finished first (cohort not empty)
        except OSError:
            if not target.is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def datalist_records(
    datalist: str | PathLike | None,
    section: str = "test",
    keys: Sequence[str] = ("image",),
    image: str | PathLike | None = None,
) -> list[dict[str, Any]]:
    """Records for an evaluation or inference run, reduced to ``keys`` (paths resolved).

    Args:
        datalist: a datalist JSON (ignored when ``image`` is given).
        section: the datalist section to read.
        keys: record keys to keep (``image`` and, for evaluation, ``label``).
        image: a single image file to run on instead of a datalist.

    Returns:
        One dict per image.

    Raises:
        ValueError: neither a datalist nor an image, a missing file, or a record without one of ``keys``.
    """
    from pipelines.datalists import load_datalist

    if image not in (None, ""):
        path = Path(image).expanduser()
        if not path.exists():
            raise ValueError(f"image {path}: file not found")
        return [{"image": str(path)}]
    if datalist in (None, ""):
        raise ValueError("no input: set datalist (a datalist JSON) or image (one image file)")
    records = load_datalist(datalist, section, required=True)
    out = []
    for i, record in enumerate(records):
        missing = [k for k in keys if k not in record]
        if missing:
            raise ValueError(f"datalist {datalist}: section {section!r}: record {i} has no {missing[0]!r}")
        out.append({k: record[k] for k in keys})
    return out


def _flat_number(value: Any) -> float | None:
    if hasattr(value, "numel") and value.numel() == 1:
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def run_evaluator(evaluator: Any, metrics_file: str | PathLike) -> dict[str, float]:
    """Run a MONAI evaluator once and write its scalar metrics to a JSON file.

    Args:
        evaluator: a ``monai.engines.Evaluator`` (e.g. ``SupervisedEvaluator``).
        metrics_file: the JSON file to write (parent folders are created; written atomically).

    Returns:
        Metric name → value (non-scalar metrics are left out; NaN is kept as ``NaN``).
    """
    evaluator.run()
    metrics = {}
    for name, value in evaluator.state.metrics.items():
        number = _flat_number(value)
        if number is not None:
            metrics[name] = number
    from evaluation.html_report import write_text_atomic

    path = write_text_atomic(metrics_file, json.dumps(metrics, indent=1, sort_keys=True, allow_nan=True))
    if any(math.isnan(v) for v in metrics.values()):
        logger.warning("%s: some metrics are NaN", path)
    return metrics


def run_inference(evaluator: Any, predictions_file: str | PathLike) -> str:
    """Run a MONAI evaluator whose handlers write ``predictions_file``; return that file's path.

    Args:
        evaluator: a ``monai.engines.Evaluator`` with a prediction-writing handler
            (e.g. ``ClassificationSaver``).
        predictions_file: the file the handler writes.

    Returns:
        ``predictions_file`` as a string.

    Raises:
        RuntimeError: the run finished without writing the file.
    """
    evaluator.run()
    path = Path(predictions_file)
    if not path.is_file():
        raise RuntimeError(f"inference finished but wrote no {path}")
    return str(path)


def generation_metrics(
    model: str | PathLike,
    generated: str | PathLike,
    out_dir: str | PathLike,
    real_section: str = "test",
    track: bool = True,
) -> dict[str, float]:
    """The ``glassbox_generation`` bundle's evaluate workflow: the quality report's metrics.

    Args:
        model: the run that generated the images.
        generated: the datalist the inference workflow wrote.
        out_dir: folder of ``report.html``, ``metrics.json`` and figures.
        real_section: held-out real images: a section of the run's datalist.
        track: log the report to MLflow as a child run of the model's run.

    Returns:
        The metrics of :func:`pipelines.generation_report.evaluate_generation`.

    Raises:
        ValueError: an unusable model or datalist (named).
    """
    from pipelines.generation_report import evaluate_generation

    result = evaluate_generation(
        model, generated, out_dir, real_section=real_section, track=track, progress=False
    )
    return result["metrics"]
