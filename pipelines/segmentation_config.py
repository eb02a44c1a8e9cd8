"""``SegmentationConfig``: every setting of a lesion-segmentation training run, validated once.

Example:
    >>> cfg = SegmentationConfig(datalist="cohort/datalist.json", out_dir="runs/seg", patch_size=(64, 64))
    >>> cfg.spatial_dims, cfg.total_stride
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
from pipelines.training_config import DEFAULT_TRACKING_URI, INTENSITY_MODES
from transforms.intensity_range import check_intensity_range

__all__ = ["SegmentationConfig", "SEGMENTATION_PATH_FIELDS", "SEGMENTATION_CHOICES", "ARCHITECTURES"]

SEGMENTATION_PATH_FIELDS = ("datalist", "out_dir")
"""Fields holding paths; :meth:`SegmentationConfig.to_json` writes them relative to the run folder."""

ARCHITECTURES = ("glassbox", "unet", "segresnet")
"""Networks :func:`pipelines.segmentation_engines.build_segmenter` builds (the MONAI ones as baselines)."""

SEGMENTATION_CHOICES = {
    "architecture": ARCHITECTURES,
    "size": tuple(SIZE_PRESETS),
    "intensity": INTENSITY_MODES,
    "device": ("auto", "cpu", "cuda"),
}
"""The allowed values of the fields that take a name (the command line offers them)."""


@dataclass
class SegmentationConfig:
    """Settings of :func:`pipelines.segmentation_training.train_segmentation`.

    Args:
        datalist: MONAI datalist JSON whose ``training`` and ``validation`` (optionally ``test``)
            records have an ``image`` and a ``mask`` (0 background, lesions > 0: instance ids
            are binarised), paths relative to the datalist's folder.
        out_dir: output folder (``config.json``, ``last.pt``, ``best.pt``, ``metrics.json``,
            overlay figures); a ``last.pt`` already there is resumed.
        patch_size: training patch (2 or 3 ints, each divisible by the encoder's total stride,
            8; 4 for ``tiny_fine``); its length sets 2D or 3D. Images are not resized: training
            draws patches of this size (centred on a lesion or on background, one each), and
            evaluation and inference slide a window of this size over images of any size.
        architecture: ``"glassbox"`` (default, :class:`~networks.segmentation.GlassBoxSegmenter`),
            or a MONAI baseline trained the same way for comparison: ``"unet"`` (MONAI ``UNet``,
            channels 16-128, strides 2, two residual units) or ``"segresnet"`` (MONAI
            ``SegResNet``, 16 initial filters); ``pretrained`` needs ``"glassbox"``.
        size: encoder/decoder preset of :class:`~networks.segmentation.GlassBoxSegmenter`
            (with ``pretrained``, the pretraining run's preset is used and this is ignored).
        epochs: total epochs (a resumed run continues up to this count).
        batch_size: patches per batch.
        lr: Adam learning rate (cosine-annealed over ``epochs``).
        weight_decay: Adam weight decay.
        label_fraction: fraction of the training records whose masks are used (chosen by
            ``seed``, stratified by the records' image ``label`` when they have one); the rest
            are left out of training.
        pretrained: a ``medglass pretrain`` (or ``classify``) run whose glass-box encoder
            initialises the segmenter's: a run folder, checkpoint or MLflow reference.
        freeze_encoder: train the decoder only (needs ``pretrained``).
        flip_prob: probability of a random flip of a training patch (image and mask together)
            along each spatial axis.
        intensity: ``"dataset"``: one intensity range for every image (the training images'
            pooled 0.5th/99.5th percentiles, or the pretraining run's range with
            ``pretrained``); ``"image"``: each image's own percentiles.
        intensity_range: ``(a_min, a_max)`` mapped to 0 and 1 with ``intensity="dataset"``;
            ``None`` until training sets it.
        overlap: overlap of neighbouring sliding windows (``SlidingWindowInferer``).
        sw_batch_size: windows per forward pass of the sliding-window inferer.
        nsd_tolerance: boundary tolerance of the normalised surface Dice, in pixels (voxels).
        figures: validation images drawn as overlays (image, true and predicted outline) each
            epoch and logged to MLflow; 0: none.
        seed: seed of MONAI ``set_determinism``, each epoch (:mod:`pipelines.epoch_seeding`)
            and the ``label_fraction`` choice.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        tracking_uri: MLflow tracking URI (``$MLFLOW_TRACKING_URI`` overrides it).
        experiment: MLflow experiment name.
        run_name: MLflow run name (default ``segmentation-<out_dir name>``).
        cache_rate: share of each split kept in memory after loading and scaling.
        num_workers: data-loader workers.
        progress: show a progress bar.
        distributed: data-parallel training under ``torchrun`` (one process per device: each
            rank trains on its share of the training records; rank 0 validates on the whole
            validation set and alone writes files and logs; see :mod:`pipelines.distributed`).

    Raises:
        ValueError: a field is out of range; the message names the field, the expectation and the value.
    """

    datalist: str | Path
    out_dir: str | Path
    patch_size: tuple[int, ...] = (64, 64)
    architecture: str = "glassbox"
    size: str = "tiny"
    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    label_fraction: float = 1.0
    pretrained: str | None = None
    freeze_encoder: bool = False
    flip_prob: float = 0.5
    intensity: str = "dataset"
    intensity_range: tuple[float, float] | None = None
    overlap: float = 0.25
    sw_batch_size: int = 4
    nsd_tolerance: float = 1.0
    figures: int = 3
    seed: int = 0
    device: str = "auto"
    tracking_uri: str | None = DEFAULT_TRACKING_URI
    experiment: str = "medglass"
    run_name: str | None = None
    cache_rate: float = 1.0
    num_workers: int = 0
    progress: bool = False
    distributed: bool = False

    def __post_init__(self) -> None:
        self.datalist = Path(self.datalist)
        self.out_dir = Path(self.out_dir)
        if self.size not in SIZE_PRESETS:
            raise ValueError(f"size must be one of {tuple(SIZE_PRESETS)}, got {self.size!r}")
        stride = SIZE_PRESETS[self.size].total_stride
        patch = tuple(self.patch_size) if isinstance(self.patch_size, (list, tuple)) else ()
        if len(patch) not in (2, 3) or not all(_is_int(s) and s > 0 and s % stride == 0 for s in patch):
            raise ValueError(
                f"patch_size must be 2 or 3 positive ints divisible by {stride} (the total stride of size "
                f"{self.size!r}), got {self.patch_size!r}"
            )
        self.patch_size = patch
        for name, minimum in (
            ("epochs", 1),
            ("batch_size", 1),
            ("sw_batch_size", 1),
            ("figures", 0),
            ("seed", 0),
            ("num_workers", 0),
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        for name in ("lr", "nsd_tolerance"):
            value = getattr(self, name)
            if not _is_real(value) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if not _is_real(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        for name in ("flip_prob", "cache_rate"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if not _is_real(self.label_fraction) or not 0.0 < self.label_fraction <= 1.0:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction!r}")
        if not _is_real(self.overlap) or not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap!r}")
        if self.intensity not in INTENSITY_MODES:
            raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {self.intensity!r}")
        if self.intensity_range is not None:
            if self.intensity != "dataset":
                raise ValueError(
                    f"intensity_range needs intensity='dataset', got intensity={self.intensity!r} "
                    f"with intensity_range={self.intensity_range!r}"
                )
            self.intensity_range = check_intensity_range(self.intensity_range)
        if self.pretrained is not None:
            self.pretrained = str(self.pretrained)
            if not self.pretrained.strip():
                raise ValueError("pretrained must be a run folder, checkpoint or MLflow reference, got ''")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.pretrained is not None and self.architecture != "glassbox":
            raise ValueError(
                f"pretrained needs architecture='glassbox' (the glass-box encoder), got {self.architecture!r}"
            )
        if self.freeze_encoder and self.pretrained is None:
            raise ValueError("freeze_encoder needs a pretrained run, got pretrained=None")
        if self.device not in SEGMENTATION_CHOICES["device"]:
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if not isinstance(self.experiment, str) or not self.experiment:
            raise ValueError(f"experiment must be a non-empty string, got {self.experiment!r}")
        for name in ("freeze_encoder", "progress", "distributed"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")

    @property
    def spatial_dims(self) -> int:
        """2 or 3, from ``patch_size``."""
        return len(self.patch_size)

    @property
    def total_stride(self) -> int:
        """The encoder's downsampling factor (every ``patch_size`` entry is a multiple)."""
        return SIZE_PRESETS[self.size].total_stride

    def to_params(self) -> dict[str, str]:
        """Flat ``name → str`` parameters for MLflow (``progress`` left out)."""
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "progress"}

    def to_json(self, relative_to: str | Path | None = None) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (path fields relative to ``relative_to`` when given).

        Example:
            >>> SegmentationConfig(datalist="/d/c.json", out_dir="/runs/s").to_json("/runs/s")["datalist"]
            '../../d/c.json'
        """
        return settings_to_json(self, SEGMENTATION_PATH_FIELDS, relative_to)

    @classmethod
    def from_json(cls, data: dict[str, Any], base: str | Path | None = None) -> SegmentationConfig:
        """The config :meth:`to_json` wrote (:func:`pipelines.settings_json.settings_from_json`).

        Raises:
            ValueError: ``data`` is not a dict, has an unknown field, or a value out of range.

        Example:
            >>> cfg = SegmentationConfig.from_json({"datalist": "../d.json", "out_dir": "."}, base="/runs/s")
            >>> str(cfg.datalist), str(cfg.out_dir)
            ('/runs/d.json', '/runs/s')
        """
        return settings_from_json(cls, data, SEGMENTATION_PATH_FIELDS, base)
