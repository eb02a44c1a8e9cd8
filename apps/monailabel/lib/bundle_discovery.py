"""Which bundle folders the MONAI Label app serves, found from the files they hold.

A folder under the bundle folder is served when it holds ``configs/metadata.json`` and
``configs/inference.json`` (an infer task) and, with ``configs/train.json``, a train task. Nothing
is registered by name: a bundle that lands later (``glassbox_segmentation``,
``glassbox_detection``) is served without a code change. Its MONAI Label task type follows
MONAI Label's own rule (``monailabel.tasks.infer.bundle.BundleInferTask._get_type``): the folder
name containing ``classification``, ``segmentation`` or ``detection``. A bundle whose name
holds none of these (``glassbox_pretrain`` returns embeddings, ``glassbox_generation`` samples
images) gives nothing a viewer shows beside a study, and is left out.

The weights served are ``models/model.pt`` when the bundle has one (MONAI's bundle layout),
else the inference config's ``checkpoint`` id resolved with ``bundle_root`` set to the folder
(``runs/classification/best.pt`` for a bundle trained in place by ``medglass run``).

This module needs MONAI only (no MONAI Label), so the project's own tests import it.

Example:
    >>> [b.name for b in served_bundles("bundles")]  # doctest: +SKIP
    ['glassbox_classification', 'glassbox_generation', ...]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

__all__ = ["ServedBundle", "served_bundles", "bundle_checkpoint", "task_type", "TASK_TYPES"]

logger = logging.getLogger("medglass.monailabel")

TASK_TYPES = ("classification", "segmentation", "detection")
"""MONAI Label task types a bundle folder name selects (anything else: MONAI Label's default)."""


@dataclass(frozen=True)
class ServedBundle:
    """One bundle folder the app serves.

    Attributes:
        name: the folder name (the MONAI Label model name).
        path: the bundle folder.
        checkpoint: the weights the infer task loads (may not exist yet: the task is then left out).
        task_type: ``classification``, ``segmentation`` or ``detection``.
        trainable: the bundle has ``configs/train.json``.
    """

    name: str
    path: Path
    checkpoint: Path
    task_type: str
    trainable: bool


def task_type(name: str) -> str:
    """The MONAI Label task type of a bundle folder name (``""`` when it names none of :data:`TASK_TYPES`)."""
    lowered = name.lower()
    return next((t for t in TASK_TYPES if t in lowered), "")


def bundle_checkpoint(bundle: str | PathLike) -> Path:
    """The weights a bundle serves: ``models/model.pt`` when present, else its inference ``checkpoint`` id.

    Args:
        bundle: a bundle folder with ``configs/inference.json``.

    Returns:
        The checkpoint path (absolute; it may not exist).

    Raises:
        ValueError: the inference config is unreadable or has no ``checkpoint`` id and there is no
            ``models/model.pt``.
    """
    from monai.bundle import ConfigParser

    folder = Path(bundle).resolve()
    packaged = folder / "models" / "model.pt"
    if packaged.is_file():
        return packaged
    config = folder / "configs" / "inference.json"
    parser = ConfigParser()
    try:
        parser.read_config(str(config))
        parser["bundle_root"] = str(folder)
        checkpoint = parser.get_parsed_content("checkpoint", instantiate=False)
    except Exception as err:  # noqa: BLE001 - any config failure is reported with the file
        raise ValueError(f"{config}: no usable 'checkpoint' id and no {packaged} ({err})") from err
    return Path(str(checkpoint)).resolve()


def served_bundles(folder: str | PathLike) -> list[ServedBundle]:
    """The bundles under ``folder`` the app serves, sorted by name.

    Args:
        folder: a folder of bundle folders (the repository's ``bundles/`` or a user's).

    Returns:
        One :class:`ServedBundle` per sub-folder with ``configs/metadata.json`` and
        ``configs/inference.json`` whose name selects a task type (:func:`task_type`); a bundle
        whose checkpoint cannot be worked out is logged and left out.

    Raises:
        ValueError: ``folder`` is not a folder.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ValueError(f"bundles folder {root}: not a folder")
    served = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        configs = path / "configs"
        if not ((configs / "metadata.json").is_file() and (configs / "inference.json").is_file()):
            continue
        if not task_type(path.name):
            logger.info("bundle %s not served: its name selects no task type %s", path.name, TASK_TYPES)
            continue
        try:
            checkpoint = bundle_checkpoint(path)
        except ValueError as err:
            logger.warning("bundle %s not served: %s", path.name, err)
            continue
        served.append(
            ServedBundle(
                name=path.name,
                path=path.resolve(),
                checkpoint=checkpoint,
                task_type=task_type(path.name),
                trainable=(configs / "train.json").is_file(),
            )
        )
    return served
