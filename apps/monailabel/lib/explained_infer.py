"""MONAI Label infer tasks of the medglass bundles: MONAI Label's bundle task, plus the explanation.

:class:`MedglassBundleInferTask` is MONAI Label's ``BundleInferTask`` (it reads the bundle's
``inference.json``: ``network_def``, ``preprocessing``, ``inferer``, ``postprocessing``), so the
class scores are those of ``medglass run <bundle> --config inference`` on the same file. What it
changes:

- the weights are the bundle's own checkpoint (:func:`lib.bundle_discovery.bundle_checkpoint`),
  not only ``models/model.pt``: ``BundleInferTask`` joins ``models/`` with
  ``BundleConstants.model_pytorch()``, and an absolute path there is taken as it is;
- no ``Restored`` post-transform for a classification bundle (``add_post_restore=False``): it
  resizes the prediction to the image's ``spatial_shape`` and fails on a class-score vector;
- ``load_strict=True``: weights that do not fit ``network_def`` are an error, not a warning;
- a classification result carries the explanation (:mod:`lib.explanation_labels`): the label
  image (evidence, counterfactual change, both) mapped back onto the input image's grid by
  inverting the bundle's preprocessing (MONAI's ``Invertd``; the resize and the padding are
  invertible), written as NIfTI with nibabel (the image's affine as MONAI loaded it), and a summary under ``explanation`` in the result JSON beside
  MONAI Label's ``prediction`` list.

Request options (shown in the viewers' option panels): ``explain`` (default true),
``evidence_map`` (``contribution`` or ``attention``), ``explain_fraction`` (default 0.05).
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Invertd
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.transform.writer import ClassificationWriter
from monailabel.utils.others.generic import strtobool

from lib.bundle_discovery import ServedBundle
from lib.explanation_labels import EVIDENCE_MAPS, explain_for_viewer, explain_settings
from lib.torchvision_free import import_without_torchvision

_bundle_infer = import_without_torchvision("monailabel.tasks.infer.bundle")
BundleConstants, BundleInferTask = _bundle_infer.BundleConstants, _bundle_infer.BundleInferTask

__all__ = ["MedglassBundleInferTask"]

logger = logging.getLogger("medglass.monailabel")

EXPLANATION_KEY = "explanation"
"""Key of the explanation label image in the infer task's data."""

PRE_TRANSFORMS_KEY = "medglass_pre_transforms"
"""Key of the preprocessing transforms that ran: MONAI inverts a transform only with the instance
that recorded it (``InvertibleTransform.check_transforms_match``)."""


class _Constants(BundleConstants):
    """MONAI Label's bundle constants with the bundle's own checkpoint as the PyTorch weights."""

    def __init__(self, checkpoint: str) -> None:
        self.checkpoint = checkpoint

    def model_pytorch(self) -> str:
        return self.checkpoint  # absolute: os.path.join(bundle, "models", it) is it


class MedglassBundleInferTask(BundleInferTask):
    """MONAI Label's bundle infer task over a medglass bundle (see the module docstring).

    Args:
        bundle: the served bundle.
        conf: the app's configuration (MONAI Label's ``--conf`` pairs).
    """

    def __init__(self, bundle: ServedBundle, conf: dict[str, str]) -> None:
        classification = bundle.task_type == "classification"
        super().__init__(
            str(bundle.path),
            conf,
            const=_Constants(str(bundle.checkpoint)),
            type=bundle.task_type,
            add_post_restore=not classification,
            load_strict=True,
        )
        self.explains = classification and self.valid
        if self.explains:
            self.explain_settings = explain_settings(bundle.path)
            self._config.update(
                {"explain": True, "evidence_map": list(EVIDENCE_MAPS), "explain_fraction": 0.05}
            )

    def run_pre_transforms(self, data: dict[str, Any], transforms):
        """MONAI Label's preprocessing; the transforms are kept with the data for the inversion."""
        data = super().run_pre_transforms(data, transforms)
        data[PRE_TRANSFORMS_KEY] = list(transforms)
        return data

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda"):
        """MONAI Label's inference, then (classification) the explanation of the same input."""
        data = super().run_inferer(data, convert_to_batch=convert_to_batch, device=device)
        if self.explains and strtobool(str(data.get("explain", True))):
            chosen = data.get("evidence_map", EVIDENCE_MAPS[0])
            chosen = chosen[0] if isinstance(chosen, (list, tuple)) else chosen
            network = self._get_network(device, data)
            image = data[self.input_key]
            with torch.no_grad():
                explanation = explain_for_viewer(
                    network,
                    torch.as_tensor(image).to(next(network.parameters()).device),
                    self.explain_settings,
                    evidence_map=str(chosen),
                    fraction=float(data.get("explain_fraction", 0.05)),
                )
            data[EXPLANATION_KEY] = MetaTensor(  # the image's trace, so that Invertd maps it back
                explanation.labels[None].float(),
                meta=copy.deepcopy(dict(image.meta)),
                applied_operations=copy.deepcopy(image.applied_operations),
            )
            data["explanation_summary"] = explanation.summary
        return data

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None):
        """Class scores as MONAI Label's ``prediction`` list; the explanation label image as the result file."""
        if self.type != InferType.CLASSIFICATION or EXPLANATION_KEY not in data:
            return super().writer(data, extension=extension, dtype=dtype)
        names = {v: k for k, v in self.labels.items()} if isinstance(self.labels, dict) else None
        _, result = ClassificationWriter(label=self.output_label_key, label_names=names)(data)
        pre = Compose(data[PRE_TRANSFORMS_KEY])
        restored = Invertd(
            keys=EXPLANATION_KEY, transform=pre, orig_keys=self.input_key, nearest_interp=True
        )(dict(data))[EXPLANATION_KEY]
        handle, path = tempfile.mkstemp(suffix=".nii.gz")  # MONAI Label removes it once sent
        os.close(handle)
        labels = restored.detach().cpu().numpy()[0].round().astype(np.uint8)
        nib.save(nib.Nifti1Image(labels, restored.affine.cpu().numpy()), path)
        result[EXPLANATION_KEY] = data["explanation_summary"]
        return path, result
