"""The ``glassbox_generation`` bundle's use of the decoder refinement: refine then fit the prior, and which run samples.

:func:`refine_and_fit_prior` is the bundle's ``train`` workflow: with ``refine_decoder`` it refines
the run's decoder (:func:`pipelines.decoder_refinement.refine_decoder`, settings from the bundle's
``refine`` section) into ``refined_dir`` and fits the latent prior there; without it, it fits the
prior of the run itself as before. :func:`refined_or_original` is what ``inference`` and
``evaluate`` sample and measure with: the refined run when ``refined_dir`` holds a finished
refinement *of that model* (its ``refinement.json`` names the model's checkpoint SHA-256), else the
model itself — so the three workflows agree without the user passing the refined folder around.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from pipelines.config_arguments import config_from_section
from pipelines.decoder_refinement_config import REFINE_SETTINGS_FILE, RefineConfig
from pipelines.ood_reference import file_sha256
from pipelines.trained_model import CHECKPOINT_NAMES

__all__ = ["refine_and_fit_prior", "refined_or_original"]


def refined_or_original(model: str | PathLike, refined_dir: str | PathLike) -> str:
    """``refined_dir`` when it holds a finished refinement of ``model``, else ``model``.

    Args:
        model: the trained run (folder, checkpoint or MLflow reference).
        refined_dir: where the bundle's train workflow writes the refined run.

    Returns:
        The model reference to sample with, as a string.
    """
    folder = Path(refined_dir)
    settings = folder / REFINE_SETTINGS_FILE
    if (
        not settings.is_file()
        or not (folder / "best.pt").is_file()
        or not (folder / "metrics.json").is_file()
    ):
        return str(model)
    try:
        source = json.loads(settings.read_text()).get("source", {})
    except (OSError, ValueError, AttributeError):
        return str(model)
    path = Path(model)
    if not path.exists():  # an MLflow reference: the refinement names it as given
        return str(folder) if source.get("model") == str(model) else str(model)
    checkpoint = (
        path if path.is_file() else next((path / n for n in CHECKPOINT_NAMES if (path / n).is_file()), None)
    )
    same = checkpoint is not None and source.get("sha256") == file_sha256(checkpoint)
    return str(folder) if same else str(model)


def refine_and_fit_prior(
    model: str | PathLike,
    refined_dir: str | PathLike,
    refine_decoder: bool,
    refine: Mapping[str, Any],
    max_images: int = 500,
    n_components: int = 256,
    device: str = "cpu",
) -> dict[str, Any]:
    """The bundle's train workflow: optionally refine the decoder, then fit (or reuse) the latent prior.

    Args:
        model: the trained glass-box run.
        refined_dir: the refined run folder (resumed when it holds an unfinished refinement).
        refine_decoder: refine first (``False``: fit the prior of ``model`` itself).
        refine: the bundle's ``refine`` section (:class:`~pipelines.decoder_refinement_config.RefineConfig`
            fields; ``_doc`` skipped).
        max_images: training images the prior is fitted on.
        n_components: PCA directions of each class's Gaussian (the refinement's prior too).
        device: ``"cpu"`` or ``"cuda"``.

    Returns:
        :func:`pipelines.generation.fit_prior`'s summary (of the refined run when refined) and,
        when refined, ``refinement``: the metrics of the refinement.

    Raises:
        ValueError: an unknown ``refine`` key (named as ``refine#<key>``), a bad setting, or what
            the refinement or the prior refuse.
    """
    from pipelines.generation import fit_prior

    if not isinstance(refine_decoder, bool):
        raise ValueError(f"refine_decoder must be true or false, got {refine_decoder!r}")
    if not refine_decoder:
        return fit_prior(model, max_images=max_images, n_components=n_components, device=device)
    from pipelines.decoder_refinement import refine_decoder as run_refinement

    config = config_from_section(
        RefineConfig,
        refine,
        name="refine",
        model=str(model),
        out_dir=refined_dir,
        n_components=n_components,
        device=device,
    )
    metrics = run_refinement(config)
    summary = fit_prior(str(refined_dir), max_images=max_images, n_components=n_components, device=device)
    return {**summary, "refinement": metrics}
