"""The out-of-distribution check of bundle inference: an evaluator handler writing ``ood.json``.

``medglass explain`` flags an image unlike the model's training images
(:mod:`pipelines.ood_reference`); the ``glassbox_classification`` inference config does the same
with :class:`OodHandler`: each image is scored against the ``ood_reference.json`` training wrote
into the run folder, a flagged image is named in a warning, and ``ood.json`` beside
``predictions.csv`` carries every image's scores, thresholds and flag.
"""

from __future__ import annotations

import json
import logging
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.networks.utils import eval_mode

from evaluation.html_report import write_text_atomic
from evaluation.out_of_distribution import OodReference, describe, score
from networks.glassbox import GlassBoxNet
from networks.spatial_glassbox import SpatialGlassBoxNet
from pipelines.ood_reference import file_sha256

__all__ = ["OodHandler", "load_reference_file"]

logger = logging.getLogger("medglass.ood")


def load_reference_file(
    reference_file: str | PathLike, checkpoint: str | PathLike | None = None
) -> OodReference | None:
    """The reference in a run's ``ood_reference.json``, or ``None`` (logged) when it cannot be used.

    Args:
        reference_file: the file training wrote (:func:`pipelines.ood_reference.write_ood_reference`).
        checkpoint: the weights inference loads; the reference is used only when it was computed
            with them (the SHA-256 stamped in the file), ``None``: not checked.

    Returns:
        The reference, or ``None`` when the file is missing, unreadable or of other weights.
    """
    path = Path(reference_file)
    if not path.is_file():
        logger.warning("%s: no out-of-distribution reference, images are not checked", path)
        return None
    try:
        stored = json.loads(path.read_text())
        reference = OodReference.from_json(stored["reference"])
        stamp = stored.get("stamp", {})
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        logger.warning("%s: unusable out-of-distribution reference (%s), images are not checked", path, err)
        return None
    if (
        checkpoint is not None
        and Path(checkpoint).is_file()
        and stamp.get("sha256") != file_sha256(Path(checkpoint))
    ):
        logger.warning(
            "%s: computed for other weights than %s, images are not checked (explain the run once to renew it)",
            path,
            checkpoint,
        )
        return None
    return reference


def _full_forward(network: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The glass-box network's own output dict (the bundle adapters return only logits)."""
    module = getattr(network, "module", network)  # DistributedDataParallel / DataParallel
    for base in type(module).__mro__:
        if base in (GlassBoxNet, SpatialGlassBoxNet):
            return base.forward(module, x)
    raise TypeError(f"network must be a GlassBoxNet or SpatialGlassBoxNet, got {type(module).__name__}")


class OodHandler:
    """Scores every image an evaluator sees against the run's reference; writes ``ood.json`` at the end.

    Args:
        reference_file: the run's ``ood_reference.json``.
        network: the glass-box network the evaluator runs (the weights are loaded by then).
        output_file: where to write the per-image results (a JSON object: ``flagged_share``,
            ``images``: file name, scores, thresholds and ``flagged``).
        checkpoint: the weights the evaluator loads (the reference must be theirs).
        image_key: the batch key of the model input.
    """

    def __init__(
        self,
        reference_file: str | PathLike,
        network: torch.nn.Module,
        output_file: str | PathLike,
        checkpoint: str | PathLike | None = None,
        image_key: str = "image",
    ) -> None:
        self.reference_file = reference_file
        self.checkpoint = checkpoint
        self.network = network
        self.output_file = Path(output_file)
        self.image_key = image_key
        self.reference: OodReference | None = None
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        """Register the handler: load at ``STARTED``, score each iteration, write at ``COMPLETED``."""
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._score)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _start(self, engine: Engine) -> None:
        self.rows = []
        self.reference = load_reference_file(self.reference_file, self.checkpoint)

    def _score(self, engine: Engine) -> None:
        if self.reference is None:
            return
        batch = engine.state.batch
        # MONAI evaluators decollate by default: a list of per-image dicts; else one batched dict
        items = batch if isinstance(batch, list) else [batch]
        images = [item[self.image_key] for item in items]
        x = torch.stack(images) if isinstance(batch, list) else images[0]
        x = (
            (x.as_tensor() if hasattr(x, "as_tensor") else x)
            .float()
            .to(next(self.network.parameters()).device)
        )
        names: list[Any] = []
        for im in images:
            found = getattr(im, "meta", {}).get("filename_or_obj")
            names.extend(found if isinstance(found, (list, tuple)) else [found])
        with torch.no_grad(), eval_mode(self.network):
            out = _full_forward(self.network, x)
        errors = ((out["recon"] - x) ** 2).flatten(1).mean(dim=1)
        variances = x.flatten(1).var(dim=1, unbiased=False)
        mus = out["mu"].flatten(1)
        for i in range(x.shape[0]):
            name = str(names[i]) if i < len(names) and names[i] is not None else f"image {len(self.rows)}"
            result = score(
                self.reference, float(errors[i]), mus[i].double().cpu().numpy(), float(variances[i])
            )
            if result["flagged"]:
                logger.warning(describe(result, Path(name).name))
            self.rows.append(
                {"image": name, **{k: (bool(v) if k == "flagged" else float(v)) for k, v in result.items()}}
            )

    def _write(self, engine: Engine) -> None:
        if self.reference is None:
            return
        flagged = sum(r["flagged"] for r in self.rows)
        summary = {
            "flagged_share": flagged / len(self.rows) if self.rows else 0.0,
            "quantile": self.reference.quantile,
            "images": self.rows,
        }
        write_text_atomic(self.output_file, json.dumps(summary, indent=1))
        if flagged:
            logger.warning(
                "%d of %d images are unlike the model's training images (see %s)",
                flagged,
                len(self.rows),
                self.output_file,
            )
