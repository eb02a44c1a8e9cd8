"""``RefineConfig``: every setting of a decoder refinement run (``medglass refine-decoder``), validated once.

Example:
    >>> cfg = RefineConfig(model="runs/demo/classify", out_dir="runs/demo/refined", epochs=2)
    >>> cfg.adversarial_weight > 0, cfg.prior_share
    (True, 0.75)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.setting_values import is_int as _is_int
from pipelines.setting_values import is_real as _is_real

__all__ = ["RefineConfig", "REFINE_SETTINGS_FILE"]

REFINE_SETTINGS_FILE = "refinement.json"
"""The refinement's own settings and provenance in the refined run folder (``config.json`` stays the
training settings of the network, so that the folder loads wherever the original run does)."""


@dataclass
class RefineConfig:
    """Settings of :func:`pipelines.decoder_refinement.refine_decoder` (VAE-GAN refinement of a decoder).

    Args:
        model: the trained glass-box run whose decoder is refined (run folder, checkpoint or
            MLflow reference); its weights and settings are not changed (the learnt latent prior may be cached
            beside its checkpoint, as medglass generate does).
        out_dir: the refined run folder (``config.json``, ``best.pt``, ``last.pt``, ``refinement.json``,
            ``metrics.json``, ``grids/``); a ``last.pt`` already there is resumed.
        epochs: total refinement epochs (a resumed run continues up to this count).
        batch_size: real training images per batch.
        lr: Adam learning rate of the decoder and of the critic (betas 0.5, 0.999 as in pix2pix).
        recon_weight: weight of the project's reconstruction loss (MSE summed per image, the
            scale training uses) between each training image and the decoding of its posterior mean.
        adversarial_weight: weight of the decoder's adversarial term (MONAI PatchAdversarialLoss,
            least squares) against a MONAI PatchDiscriminator; with 0 the critic still trains
            (its loss shows how well it tells real from decoded) but does not move the decoder. The
            reconstruction term is summed over each image's pixels, so the adversarial term needs a
            weight well above 1 to count; bench/bench_generation_refinement.py measures the default.
        feature_weight: weight of the feature-matching term: mean squared distance between the
            frozen encoder's last feature maps of a reconstruction and of its real image (0: off,
            the default: it trains on the features the quality report's FID is computed on, so that
            FID would no longer judge the refinement independently).
        prior_share: share of the synthetic images the critic sees that are decoded draws from
            the run's aggregate-posterior prior (what medglass generate samples by default); the
            rest are reconstructions of the batch. In [0, 1).
        disc_channels: filters of the critic's first layer.
        disc_layers: strided layers of the critic (fewer for small images).
        flip_prob: probability of a random flip of a training image along each spatial axis.
        n_components: PCA directions of the aggregate-posterior prior (as medglass generate).
        max_images: training images used (None: all of the run's training section).
        val_samples: images decoded from the prior each epoch for the validation FID (against the
            run's validation images, on its own encoder's features) that picks best.pt.
        seed: seed of MONAI set_determinism and of each epoch.
        device: "cpu", "cuda" or "auto".
        tracking_uri: MLflow tracking URI (None: the original run's; MLFLOW_TRACKING_URI overrides it).
        experiment: MLflow experiment name (None: the original run's).
        run_name: MLflow run name (default refine-<out_dir name>).
        progress: show a progress bar.

    Raises:
        ValueError: a field out of range; the message names the field, the expectation and the value.
    """

    model: str | Path
    out_dir: str | Path
    epochs: int = 4
    batch_size: int = 16
    lr: float = 2e-4
    recon_weight: float = 1.0
    adversarial_weight: float = 5.0
    feature_weight: float = 0.0
    prior_share: float = 0.75
    disc_channels: int = 16
    disc_layers: int = 3
    flip_prob: float = 0.5
    n_components: int = 256
    max_images: int | None = None
    val_samples: int = 128
    seed: int = 0
    device: str = "auto"
    tracking_uri: str | None = None
    experiment: str | None = None
    run_name: str | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, (str, Path)) or not str(self.model):
            raise ValueError(
                f"model must be a run folder, checkpoint or MLflow reference, got {self.model!r}"
            )
        self.model = str(self.model)
        self.out_dir = Path(self.out_dir)
        for name, minimum in (
            ("epochs", 1),
            ("batch_size", 2),
            ("disc_channels", 1),
            ("disc_layers", 1),
            ("n_components", 1),
            ("val_samples", 4),
            ("seed", 0),
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if self.max_images is not None and (not _is_int(self.max_images) or self.max_images < 2):
            raise ValueError(f"max_images must be None or an int >= 2, got {self.max_images!r}")
        if not _is_real(self.lr) or not self.lr > 0:
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")
        for name in ("recon_weight", "adversarial_weight", "feature_weight"):
            value = getattr(self, name)
            if not _is_real(value) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if self.recon_weight == 0 and self.feature_weight == 0:
            raise ValueError(
                "recon_weight and feature_weight must not both be 0 (nothing would tie a decoded image to its "
                "code), got 0 and 0"
            )
        if not _is_real(self.prior_share) or not 0.0 <= self.prior_share < 1.0:
            raise ValueError(f"prior_share must be in [0, 1), got {self.prior_share!r}")
        if not _is_real(self.flip_prob) or not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {self.flip_prob!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.experiment is not None and (not isinstance(self.experiment, str) or not self.experiment):
            raise ValueError(f"experiment must be None or a non-empty string, got {self.experiment!r}")
        if not isinstance(self.progress, bool):
            raise ValueError(f"progress must be a bool, got {self.progress!r}")

    def to_params(self) -> dict[str, str]:
        """Flat ``name → str`` parameters for MLflow (``progress`` left out), prefixed ``refine_``."""
        return {
            f"refine_{f.name}": str(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name != "progress"
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (``out_dir`` as ``"."``: the file lives there)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        model = Path(self.model)
        if model.exists():  # a path: relative to the refined folder, like TrainConfig writes its inputs
            out["model"] = os.path.relpath(model.resolve(), Path(self.out_dir).resolve())
        out["out_dir"] = "."
        return out
