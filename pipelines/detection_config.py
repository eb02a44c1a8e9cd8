"""``DetectionConfig``: every setting of a lesion-detection training run, validated once.

Example:
    >>> cfg = DetectionConfig(datalist="cohort/datalist.json", out_dir="runs/detect", spatial_size=(64, 64))
    >>> cfg.spatial_dims, cfg.size_divisible
    (2, 8)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from networks.presets import SIZE_PRESETS
from pipelines.setting_values import is_int as _is_int
from pipelines.setting_values import is_real as _is_real
from pipelines.settings_json import settings_from_json, settings_to_json
from pipelines.training_config import DEFAULT_TRACKING_URI
from transforms.intensity_range import check_intensity_range

__all__ = ["DetectionConfig", "DETECTION_PATH_FIELDS", "DETECTION_CHOICES", "SELECT_BY"]

DETECTION_PATH_FIELDS = ("datalist", "out_dir")
"""Fields holding paths; :meth:`DetectionConfig.to_json` writes them relative to the run folder."""

SELECT_BY = ("cpm", "map_0.1", "map_0.1_0.5")
"""Validation metrics that may pick ``best.pt`` (higher is better)."""

DETECTION_CHOICES = {
    "size": tuple(SIZE_PRESETS),
    "unit": ("dense", "shuffle"),
    "select_by": SELECT_BY,
    "device": ("auto", "cpu", "cuda"),
}
"""The allowed values of the fields that take a name (the command line offers them)."""


@dataclass
class DetectionConfig:
    """Settings of :func:`pipelines.detection_training.train_detection`.

    Args:
        datalist: MONAI datalist JSON whose ``training`` and ``validation`` (optionally
            ``test``) records have an ``image`` path (relative to the datalist's folder),
            ``boxes`` (corner boxes ``[x0, y0(, z0), x1, y1(, z1)]`` in array-index units, upper
            bound exclusive; ``[]`` for an image without lesion) and optionally ``box_labels``
            (one class index per box, 0 = lesion; default all 0).
        out_dir: output folder (``config.json``, ``last.pt``, ``best.pt``, ``metrics.json``,
            figures); a ``last.pt`` already there is resumed.
        spatial_size: image size after preprocessing (2 or 3 ints, each divisible by the
            pyramid's coarsest stride, 8); its length sets 2D or 3D. Boxes follow the resize
            (through world coordinates, MONAI's box transforms).
        size: encoder preset (:mod:`networks.presets`; with ``pretrained`` it must be the
            pretraining run's).
        unit: encoder unit, ``"dense"`` or ``"shuffle"``.
        fpn_channels: channels of the feature pyramid and of the RetinaNet heads.
        num_classes: box classes (excluding background).
        epochs: total epochs (a resumed run continues up to this count).
        batch_size: images per batch.
        lr: Adam learning rate (cosine-annealed over ``epochs``).
        label_fraction: share of the training images whose boxes are used (chosen by ``seed``,
            stratified by image ``label``); the others are left out of training.
        pretrained: a ``medglass pretrain`` (or ``train``) run whose glass-box encoder
            initialises the backbone: a run folder, checkpoint or MLflow reference.
        freeze_encoder: train the pyramid and heads only (needs ``pretrained``).
        flip_prob: probability of a random flip of a training image (boxes flipped with it)
            along each spatial axis.
        intensity_range: ``(a_min, a_max)`` mapped to 0 and 1 for every image; ``None``: each
            image's 0.5th/99.5th percentiles (with ``pretrained``, the pretraining run's range
            is used when it has one).
        score_thresh: boxes scoring below it are dropped at inference.
        nms_thresh: IoU above which non-maximum suppression drops the lower-scoring box.
        detections_per_image: most boxes kept per image.
        iou_threshold: IoU at which a detection hits a lesion for FROC/CPM.
        select_by: validation metric that picks ``best.pt``: ``"cpm"`` (default),
            ``"map_0.1"`` or ``"map_0.1_0.5"``.
        figures: validation images drawn with their true and predicted boxes each epoch (and
            logged to MLflow); 0: none.
        seed: seed of MONAI ``set_determinism``, each epoch and the ``label_fraction`` choice.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        tracking_uri: MLflow tracking URI (``$MLFLOW_TRACKING_URI`` overrides it).
        experiment: MLflow experiment name.
        run_name: MLflow run name (default ``detection-<out_dir name>``).
        cache_rate: share of each split kept in memory after loading and scaling.
        num_workers: data-loader workers.
        progress: show a progress bar.

    Raises:
        ValueError: a field is out of range; the message names the field, the expectation and the value.
    """

    datalist: str | Path
    out_dir: str | Path
    spatial_size: tuple[int, ...] = (64, 64)
    size: str = "tiny"
    unit: str = "dense"
    fpn_channels: int = 32
    num_classes: int = 1
    epochs: int = 30
    batch_size: int = 8
    lr: float = 2e-3
    label_fraction: float = 1.0
    pretrained: str | None = None
    freeze_encoder: bool = False
    flip_prob: float = 0.5
    intensity_range: tuple[float, float] | None = None
    score_thresh: float = 0.02
    nms_thresh: float = 0.22
    detections_per_image: int = 100
    iou_threshold: float = 0.1
    select_by: str = "cpm"
    figures: int = 2
    seed: int = 0
    device: str = "auto"
    tracking_uri: str | None = DEFAULT_TRACKING_URI
    experiment: str = "medglass"
    run_name: str | None = None
    cache_rate: float = 1.0
    num_workers: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        self.datalist = Path(self.datalist)
        self.out_dir = Path(self.out_dir)
        for name, choices in DETECTION_CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        divisor = self.size_divisible
        spatial = tuple(self.spatial_size) if isinstance(self.spatial_size, (list, tuple)) else ()
        if len(spatial) not in (2, 3) or not all(_is_int(s) and s > 0 and s % divisor == 0 for s in spatial):
            raise ValueError(
                f"spatial_size must be 2 or 3 positive ints divisible by {divisor} (the coarsest pyramid stride "
                f"of size {self.size!r}), got {self.spatial_size!r}"
            )
        self.spatial_size = spatial
        for name, minimum in (
            ("fpn_channels", 1),
            ("num_classes", 1),
            ("epochs", 1),
            ("batch_size", 1),
            ("detections_per_image", 1),
            ("figures", 0),
            ("seed", 0),
            ("num_workers", 0),
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if not _is_real(self.lr) or not self.lr > 0:
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")
        for name in ("flip_prob", "cache_rate", "score_thresh", "nms_thresh"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        for name in ("label_fraction", "iou_threshold"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        if self.intensity_range is not None:
            self.intensity_range = check_intensity_range(self.intensity_range)
        if self.pretrained is not None:
            self.pretrained = str(self.pretrained)
            if not self.pretrained.strip():
                raise ValueError("pretrained must be a run folder, checkpoint or MLflow reference, got ''")
        for name in ("freeze_encoder", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.freeze_encoder and self.pretrained is None:
            raise ValueError("freeze_encoder needs a pretrained run, got pretrained=None")
        if not isinstance(self.experiment, str) or not self.experiment:
            raise ValueError(f"experiment must be a non-empty string, got {self.experiment!r}")

    @property
    def spatial_dims(self) -> int:
        """2 or 3, from ``spatial_size``."""
        return len(self.spatial_size)

    @property
    def size_divisible(self) -> int:
        """The coarsest pyramid stride (the encoder's total stride): image sizes must be multiples."""
        return SIZE_PRESETS[self.size].total_stride

    def to_params(self) -> dict[str, str]:
        """Flat ``name → str`` parameters for MLflow (``progress`` left out)."""
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "progress"}

    def to_json(self, relative_to: str | Path | None = None) -> dict[str, Any]:
        """A JSON-serialisable dict of every field, paths relative to ``relative_to`` when given.

        Example:
            >>> DetectionConfig(datalist="/d/c.json", out_dir="/runs/d").to_json("/runs/d")["datalist"]
            '../../d/c.json'
        """
        return settings_to_json(self, DETECTION_PATH_FIELDS, relative_to)

    @classmethod
    def from_json(cls, data: dict[str, Any], base: str | Path | None = None) -> DetectionConfig:
        """The config :meth:`to_json` wrote (:func:`pipelines.settings_json.settings_from_json`).

        Args:
            data: field values, e.g. ``json.loads(Path("config.json").read_text())``.
            base: the folder the file was read from; relative path fields are taken relative to it.

        Returns:
            A validated ``DetectionConfig``.

        Raises:
            ValueError: ``data`` is not a dict, has an unknown field, or a value out of range.
        """
        return settings_from_json(cls, data, DETECTION_PATH_FIELDS, base)
