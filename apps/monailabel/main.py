"""The medglass MONAI Label app: the project's bundles served to 3D Slicer and OHIF.

Start it with ``medglass label-server`` (or ``make monailabel``), which runs MONAI Label's own
``monailabel start_server --app apps/monailabel`` from the MONAI Label virtual environment
(``.venv-monailabel``). Settings (MONAI Label's ``--conf KEY VALUE`` pairs):

- ``bundles``: the folder of bundle folders to serve (default: the repository's ``bundles/``).
  Every bundle with ``configs/inference.json`` whose name says ``classification``,
  ``segmentation`` or ``detection`` becomes an infer task of that name, and, with
  ``configs/train.json``, a train task (:mod:`lib.bundle_discovery`); a bundle without trained
  weights yet is listed in the log and not served for inference.
- ``zoo_source``: set it to anything but ``monaihosting`` (``medglass label-server`` passes
  ``ngc``) so that MONAI Label queries no model zoo.

Classification results carry the explanation beside the scores (:mod:`lib.explained_infer`);
training runs the bundle's ``train`` config with MLflow tracking (:mod:`lib.bundle_training`).
Nothing is downloaded: the DICOMweb datastore's ``dcmqi`` download (DICOM SEG tools, used
only to write labels back to the PACS) is switched off, so labels are not uploaded as DICOM SEG.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from lib.bundle_discovery import served_bundles
from lib.bundle_training import MedglassBundleTrainTask
from lib.explained_infer import MedglassBundleInferTask
from lib.pydicom2_compat import provide_pydicom_pixels
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

logger = logging.getLogger("medglass.monailabel")

provide_pydicom_pixels()  # the project's DICOM reader under MONAI Label's pydicom 2

REPOSITORY_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
"""The bundles served when ``--conf bundles`` is not given."""


class MedglassApp(MONAILabelApp):
    """MONAI Label app serving the medglass bundles of one folder (see the module docstring)."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.bundles_dir = Path(conf.get("bundles") or REPOSITORY_BUNDLES).expanduser().resolve()
        self.bundles = served_bundles(self.bundles_dir)
        logger.info("bundles in %s: %s", self.bundles_dir, ", ".join(b.name for b in self.bundles) or "none")
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="medglass",
            description="Glass-box medical image models (medglass bundles): scores with their explanation",
            version="0.1.0",
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers = {}
        for bundle in self.bundles:
            task = MedglassBundleInferTask(bundle, self.conf)
            if task.is_valid():
                infers[bundle.name] = task
            else:
                logger.warning(
                    "bundle %s not served for inference: no weights at %s (train it: POST /train/%s, "
                    "or medglass run %s, then restart the server)",
                    bundle.name,
                    bundle.checkpoint,
                    bundle.name,
                    bundle.path,
                )
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        return {b.name: MedglassBundleTrainTask(b) for b in self.bundles if b.trainable}

    def infer(self, request: dict[str, Any], datastore: Any = None) -> dict[str, Any]:
        """MONAI Label's inference, with errors a client can read.

        MONAI Label answers any failure with a bare ``500 Internal Server Error``; here an image id
        the datastore does not hold is a 404 naming the id, and a failed inference a 422 (bad
        input: the file and the reason, unwrapped by :mod:`pipelines.user_errors`) or a 500
        naming what broke. The server keeps serving either way.

        Raises:
            HTTPException: as above.
        """
        from pipelines.user_errors import one_line, user_error

        image, model = request.get("image"), request.get("model")
        store = datastore if datastore is not None else self.datastore()
        if isinstance(image, str) and not os.path.exists(image):
            try:
                uri = store.get_image_uri(image)
            except Exception as err:  # noqa: BLE001 - a remote datastore's failure, reported below
                logger.exception("image %s: not fetched", image)
                raise HTTPException(
                    404, f"image {image!r}: not fetched from the datastore ({one_line(err)})"
                ) from err
            if not uri:
                raise HTTPException(
                    404, f"image {image!r}: not in the datastore (GET /datastore/?output=all lists the ids)"
                )
        try:
            return super().infer(request, datastore)
        except HTTPException:
            raise
        except Exception as caught:  # noqa: BLE001 - every failure becomes a readable HTTP error
            logger.exception("%s on image %s failed", model, image)
            err = user_error(caught)
            known = isinstance(err, (ValueError, TypeError, OSError))
            message = one_line(err) if known else f"{type(err).__name__}: {one_line(err)}"
            raise HTTPException(422 if known else 500, f"{model} on image {image!r}: {message}") from caught

    def _download_dcmqi_tools(self) -> None:
        """Download nothing at run time (MONAI Label fetches dcmqi from GitHub here; see the module docstring)."""
        logger.info("dcmqi tools not downloaded: labels are not written back to the PACS as DICOM SEG")
