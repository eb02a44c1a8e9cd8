"""``SynthesisConfig``: every setting of a paired image-to-image training run, validated once.

Example:
    >>> cfg = SynthesisConfig(datalist="pairs/datalist.json", out_dir="runs/synth", spatial_size=(64, 64))
    >>> cfg.spatial_dims, cfg.use_discriminator
    (2, False)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from networks.translation import generator_stride
from pipelines.setting_values import is_int as _is_int
from pipelines.setting_values import is_real as _is_real
from pipelines.training_config import DEFAULT_TRACKING_URI

__all__ = ["SynthesisConfig", "SYNTHESIS_PATH_FIELDS", "SELECT_BY"]

SELECT_BY = {"lesion_mae": -1.0, "enhancement_dice": 1.0, "ssim": 1.0}
"""Metrics that may pick ``best.pt`` → the sign that makes higher better."""

SYNTHESIS_PATH_FIELDS = ("datalist", "out_dir")
"""Fields holding paths; :meth:`SynthesisConfig.to_json` writes them relative to the run folder."""


@dataclass
class SynthesisConfig:
    """Settings of :func:`pipelines.synthesis_training.train_synthesis` (pix2pix recipe).

    Args:
        datalist: MONAI datalist JSON whose ``training`` and ``validation`` (optionally ``test``)
            records have ``source`` and ``target`` image paths (relative to the datalist's folder)
            and optionally a lesion ``mask``.
        out_dir: output folder (``config.json``, ``last.pt``, ``best.pt``, ``metrics.json``,
            panels); a ``last.pt`` already there is resumed.
        spatial_size: image size after preprocessing (2 or 3 ints, each divisible by the
            generator's total stride ``2 ** (len(channels) - 1)``).
        channels: generator UNet channels per level (:func:`networks.translation.build_generator`).
        disc_channels: filters of the discriminator's first layer.
        disc_layers: strided layers of the discriminator (fewer for small images).
        epochs: total epochs (a resumed run continues up to this count).
        batch_size: pairs per batch.
        lr: Adam learning rate of generator and discriminator (betas 0.5, 0.999 as in pix2pix).
        l1_weight: weight of the L1 term (100 in pix2pix).
        adversarial_weight: weight of the generator's adversarial term (1 in pix2pix); 0
            (default) trains no discriminator. On the dce2d phantoms at the default 50 epochs the
            adversarial term made neither the in-lesion error nor the enhancement Dice better
            than L1 alone, and each step took longer (after 30 epochs its enhancement Dice was the
            higher one, its in-lesion error still not): ``bench/bench_synthesis.py`` measures both.
        flip_prob: probability of a random flip of a training pair (source, target and mask
            together) along each spatial axis.
        select_by: the validation metric that picks ``best.pt``: ``"lesion_mae"`` (default; the
            in-lesion error, lower is better), ``"enhancement_dice"`` or ``"ssim"`` (whole image).
            Whole-image SSIM against noisy targets is dominated by the noise and jumps between
            epochs, so it picks an early, barely trained epoch; the in-lesion error tracks what
            the model is for. Without lesion masks the selection falls back to SSIM.
        enhancement_threshold: enhancement (in scaled intensity units, see
            :mod:`pipelines.synthesis_data`) above which a voxel counts as enhancing for the
            enhancement Dice.
        seed: seed of MONAI ``set_determinism`` and of each epoch (:mod:`pipelines.epoch_seeding`).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        tracking_uri: MLflow tracking URI (``$MLFLOW_TRACKING_URI`` overrides it).
        experiment: MLflow experiment name.
        run_name: MLflow run name (default ``synthesis-<out_dir name>``).
        cache_rate: share of each split kept in memory after loading and scaling.
        num_workers: data-loader workers.
        progress: show a progress bar.
        distributed: data-parallel training under ``torchrun`` (one process per device: each
            rank trains on its share of the training pairs; rank 0 validates on the whole
            validation set and alone writes files and logs; see :mod:`pipelines.distributed`).

    Raises:
        ValueError: a field is out of range; the message names the field, the expectation and the value.
    """

    datalist: str | Path
    out_dir: str | Path
    spatial_size: tuple[int, ...] = (128, 128)
    channels: tuple[int, ...] = (16, 32, 64, 128)
    disc_channels: int = 32
    disc_layers: int = 3
    epochs: int = 50
    batch_size: int = 4
    lr: float = 2e-4
    l1_weight: float = 100.0
    adversarial_weight: float = 0.0
    flip_prob: float = 0.5
    select_by: str = "lesion_mae"
    enhancement_threshold: float = 0.1
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
        chans = tuple(self.channels) if isinstance(self.channels, (list, tuple)) else ()
        if len(chans) < 2 or not all(_is_int(c) and c > 0 for c in chans):
            raise ValueError(f"channels must be at least 2 positive ints, got {self.channels!r}")
        self.channels = chans
        stride = generator_stride(chans)
        spatial = tuple(self.spatial_size) if isinstance(self.spatial_size, (list, tuple)) else ()
        if len(spatial) not in (2, 3) or not all(_is_int(s) and s > 0 and s % stride == 0 for s in spatial):
            raise ValueError(
                f"spatial_size must be 2 or 3 positive ints divisible by {stride} (the generator's total "
                f"stride for {len(chans)} channel levels), got {self.spatial_size!r}"
            )
        self.spatial_size = spatial
        for name, minimum in (
            ("disc_channels", 1),
            ("disc_layers", 1),
            ("epochs", 1),
            ("batch_size", 1),
            ("seed", 0),
            ("num_workers", 0),
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if not _is_real(self.lr) or not self.lr > 0:
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")
        for name in ("l1_weight", "adversarial_weight"):
            value = getattr(self, name)
            if not _is_real(value) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.l1_weight == 0 and self.adversarial_weight == 0:
            raise ValueError(
                "l1_weight and adversarial_weight must not both be 0 (nothing to train), got 0 and 0"
            )
        for name in ("flip_prob", "cache_rate"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if not _is_real(self.enhancement_threshold) or not self.enhancement_threshold > 0:
            raise ValueError(
                f"enhancement_threshold must be a number > 0, got {self.enhancement_threshold!r}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if not isinstance(self.experiment, str) or not self.experiment:
            raise ValueError(f"experiment must be a non-empty string, got {self.experiment!r}")
        if self.select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {tuple(SELECT_BY)}, got {self.select_by!r}")
        for name in ("progress", "distributed"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a bool, got {value!r}")

    @property
    def spatial_dims(self) -> int:
        """2 or 3, from ``spatial_size``."""
        return len(self.spatial_size)

    @property
    def use_discriminator(self) -> bool:
        """Whether a discriminator is trained (``adversarial_weight > 0``)."""
        return self.adversarial_weight > 0

    def to_params(self) -> dict[str, str]:
        """Flat ``name → str`` parameters for MLflow (``progress`` left out)."""
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "progress"}

    def to_json(self, relative_to: str | Path | None = None) -> dict[str, Any]:
        """A JSON-serialisable dict of every field.

        Args:
            relative_to: write the path fields relative to this folder (the run folder), so the
                run tree can be moved with its inputs; ``None``: as given.

        Returns:
            Field name → value.

        Example:
            >>> SynthesisConfig(datalist="/d/pairs.json", out_dir="/runs/s").to_json("/runs/s")["datalist"]
            '../../d/pairs.json'
        """
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if relative_to is not None and f.name in SYNTHESIS_PATH_FIELDS:
                value = os.path.relpath(Path(value).resolve(), Path(relative_to).resolve())
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], base: str | Path | None = None) -> SynthesisConfig:
        """The config :meth:`to_json` wrote (lists become tuples; unknown names are refused).

        Args:
            data: field values, e.g. ``json.loads(Path("config.json").read_text())``.
            base: the folder the file was read from; relative path fields are taken relative to it.

        Returns:
            A validated ``SynthesisConfig``.

        Raises:
            ValueError: ``data`` is not a dict, has an unknown field, or a value out of range.

        Example:
            >>> cfg = SynthesisConfig.from_json({"datalist": "../d.json", "out_dir": "."}, base="/runs/s")
            >>> str(cfg.datalist), str(cfg.out_dir)
            ('/runs/d.json', '/runs/s')
        """
        if not isinstance(data, dict):
            raise ValueError(f"a synthesis config must be a JSON object, got {type(data).__name__}")
        values = dict(data)
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown SynthesisConfig fields: {unknown}")
        for name in ("spatial_size", "channels"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        if base is not None:
            for name in SYNTHESIS_PATH_FIELDS:
                if values.get(name) is not None and not Path(values[name]).is_absolute():
                    values[name] = Path(os.path.normpath(Path(base) / values[name]))
        return cls(**values)
