"""MONAI Label train tasks of the medglass bundles: the bundle's own ``train`` config, tracked in MLflow.

MONAI Label's ``BundleTrainTask`` overrides ids of MONAI's model-zoo training layout
(``train#trainer#max_epochs``, ``train#dataset#data``, ``train#handlers``), which the medglass
bundles do not have: their ``train`` section builds a
:class:`pipelines.training_config.TrainConfig` and refuses unknown fields. This task runs the
bundle's ``train`` config the way ``medglass run <bundle>`` does
(:func:`pipelines.bundle_runner.run_bundle`, every override checked to exist) with what the
MONAI Label request sets:

- ``max_epochs`` → ``train#epochs``; ``device`` → ``train#device`` (``cpu``, ``cuda``, ``auto``);
- MLflow: MONAI Label's tracking settings — the request's ``tracking_uri``, else
  ``MONAI_LABEL_TRACKING_URI`` — → ``train#tracking_uri``; ``tracking_experiment_name`` →
  ``train#experiment``. Without either, the bundle's own store is used (a SQLite file in the
  run folder). A medglass training always logs its run (``tracking: None`` changes nothing);
- ``datalist`` → ``dataset#datalist``: a MONAI datalist of image + class-label records. MONAI
  Label's datastore holds label *images*, not class labels, so a classification bundle trains on
  its configured datalist (by default the phantom cohort it generates) unless one is given.

The checkpoint lands where the bundle's inference reads it, so the infer task serves the new
weights on its next request (MONAI Label reloads a checkpoint whose time stamp changed).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from monailabel.config import settings
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from lib.bundle_discovery import ServedBundle

__all__ = ["MedglassBundleTrainTask", "train_overrides"]

logger = logging.getLogger("medglass.monailabel")


def train_overrides(request: dict[str, Any], tracking_uri: str = "") -> dict[str, Any]:
    """The bundle overrides a MONAI Label train request sets (see the module docstring).

    Args:
        request: the train request (MONAI Label merges the task's config and the posted params).
        tracking_uri: MONAI Label's ``MONAI_LABEL_TRACKING_URI`` (used when the request has none).

    Returns:
        MONAI config id → value.

    Raises:
        ValueError: ``max_epochs`` that is not a positive integer.
    """
    overrides: dict[str, Any] = {}
    if request.get("max_epochs") not in (None, ""):
        epochs = request["max_epochs"]
        if isinstance(epochs, bool) or not str(epochs).isdigit() or int(epochs) < 1:
            raise ValueError(f"max_epochs must be a positive integer, got {epochs!r}")
        overrides["train#epochs"] = int(epochs)
    device = request.get("device")
    device = device[0] if isinstance(device, list) else device
    if device:
        overrides["train#device"] = "cuda" if str(device).startswith("cuda") else str(device)
    uri = request.get("tracking_uri") or tracking_uri
    if uri:
        overrides["train#tracking_uri"] = uri
    if request.get("tracking_experiment_name"):
        overrides["train#experiment"] = request["tracking_experiment_name"]
    if request.get("datalist"):
        overrides["dataset#datalist"] = request["datalist"]
    return overrides


class MedglassBundleTrainTask(TrainTask):
    """Train a medglass bundle from MONAI Label (see the module docstring).

    Args:
        bundle: the served bundle (it has ``configs/train.json``).
    """

    def __init__(self, bundle: ServedBundle) -> None:
        metadata = json.loads((bundle.path / "configs" / "metadata.json").read_text())
        super().__init__(metadata.get("description", bundle.name))
        self.bundle = bundle
        self.version = metadata.get("version")

    def info(self) -> dict[str, Any]:
        return {**super().info(), "version": self.version}

    def config(self) -> dict[str, Any]:
        """The options MONAI Label's clients show before a training run."""
        return {
            "max_epochs": 20,
            "device": ["auto", "cpu", "cuda"],
            "tracking_uri": settings.MONAI_LABEL_TRACKING_URI,
            "tracking_experiment_name": "",
            "datalist": "",
        }

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Run the bundle's ``train`` config; returns its metrics (``metrics.json``)."""
        from pipelines.bundle_runner import run_bundle

        overrides = train_overrides(request, settings.MONAI_LABEL_TRACKING_URI)
        logger.info("training bundle %s with %s", self.bundle.name, overrides)
        metrics = run_bundle(self.bundle.path, "train", overrides)
        return {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float, str))}
