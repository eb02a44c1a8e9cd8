"""``TrainConfig``: every setting of a training run, typed and validated once.

Example:
    >>> cfg = TrainConfig(datalist="cohort/datalist.json", out_dir="runs/pretrain", mode="pretrain")
    >>> cfg.effective_ce_weight
    0.0
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from networks.latent import POOL_MODES
from networks.presets import SIZE_PRESETS
from pipelines.setting_values import is_int as _is_int
from pipelines.setting_values import is_real as _is_real
from transforms.intensity_range import check_intensity_range

__all__ = [
    "TrainConfig",
    "MODES",
    "INTENSITY_MODES",
    "DEFAULT_TRACKING_URI",
    "FIELD_CHOICES",
    "resolve_tracking_uri",
    "run_intensity_range",
]

MODES = ("pretrain", "classify")
LATENT_KINDS = ("spatial", "vector")
INTENSITY_MODES = ("dataset", "image")
DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
DEVICES = ("auto", "cpu", "cuda")
FIELD_CHOICES = {
    "mode": MODES,
    "size": tuple(SIZE_PRESETS),
    "latent": LATENT_KINDS,
    "latent_pool": tuple(m for m in POOL_MODES if m != "none"),  # the classifier reads a pooled branch
    "intensity": INTENSITY_MODES,
    "device": DEVICES,
}
"""The allowed values of the :class:`TrainConfig` fields that take a name (the command line offers them)."""


def resolve_tracking_uri(uri: str | None) -> str:
    """The MLflow tracking URI to use: ``$MLFLOW_TRACKING_URI`` if set, else ``uri``, else the default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or uri or DEFAULT_TRACKING_URI


def run_intensity_range(run_dir: str | os.PathLike) -> tuple[float, float] | None:
    """The intensity range a training run stored in its ``config.json`` (for bundle configs).

    Args:
        run_dir: the training run folder (``output_dir`` of the bundles).

    Returns:
        ``(a_min, a_max)``, or ``None`` when the folder has no ``config.json`` or the run scaled
        each image by its own percentiles.

    Raises:
        ValueError: ``config.json`` exists but is not valid JSON, or holds an invalid range.

    Example:
        >>> run_intensity_range("/nonexistent") is None
        True
    """
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text()).get("intensity_range")
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    return None if stored is None else check_intensity_range(stored, f"{path}: intensity_range")


@dataclass
class TrainConfig:
    """Settings of :func:`pipelines.training.train`.

    Args:
        datalist: datalist JSON with ``training`` and ``validation`` (and optionally ``test``).
        out_dir: output folder (checkpoints, ``metrics.json``, ``config.json``); a ``last.pt``
            checkpoint already there is resumed.
        mode: ``"pretrain"`` (reconstruction + KL only, ``ce_weight`` forced to 0) or
            ``"classify"`` (adds the label-masked cross-entropy).
        size: network preset, ``"tiny_fine"`` (default: total stride 4, an attention map at 1/4 of
            the input size), ``"tiny"`` (stride 8, fastest), ``"small"`` or ``"base"``; see
            :mod:`networks.presets`. ``tiny_fine`` is the default because its finer attention map
            and latent grid can point at and draw a small lesion (``medglass explain --datalist``
            scores where the maps point).
        latent: the generative core: ``"spatial"`` (default, :class:`~networks.SpatialGlassBoxNet`:
            a latent grid at the encoder's resolution plus a global code, so the decoder can draw
            the small findings the head reads) or ``"vector"`` (:class:`~networks.GlassBoxNet`: one
            latent vector; a saved config without this field loads as ``"vector"``).
        latent_dim: number of latent variables the head reads (``mu``); with ``latent="spatial"``
            ``spatial_channels`` pooled grid channels plus ``latent_dim - spatial_channels`` global ones.
        spatial_channels: channels of the latent grid (``latent="spatial"``); ``None`` (default):
            half of ``latent_dim`` (8 of the default 16).
        spatial_beta: weight of the latent grid's KL (``latent="spatial"``), in both modes; ``beta``
            and the capacity then weigh the global code.
        latent_pool: how the classifier reads the encoder features (``GlassBoxNet(latent_pool=...)``):
            ``"attention"`` (default) averages them weighted by the spatial attention map,
            ``"mean"``/``"max"`` pool them globally. Fine-tuning may differ from the pretraining
            run: pooling tensors that do not match keep their fresh initialisation.
        pooled_logits: ``GlassBoxNet(pooled_logits=...)``: ``True`` takes the linear head's
            weight rows out of the flattened branch's share of the latent mean, so the logits come
            from the pooled (attention-weighted) branch alone; ``False`` lets both branches feed
            the logits; ``None`` (default): ``True`` whenever the network allows it. See
            ``networks.glassbox.GlassBoxNet`` for why.
        spatial_size: image size after preprocessing (2 or 3 ints, each divisible by the
            preset's total stride: 4 for ``tiny_fine``, 8 for the others).
        num_classes: classifier outputs.
        epochs: total training epochs (a resumed run continues up to this count).
        batch_size: images per batch.
        lr: Adam learning rate (cosine-annealed over ``epochs``).
        weight_decay: Adam weight decay.
        beta: weight of the KL term (of the global code, for the spatial core); ``None`` (default)
            means 1 in ``pretrain`` (the β-VAE) and 0 in ``classify``: held to the prior during
            fine-tuning, the latent learns the lesions less reliably; set ``beta=1`` to keep the
            β-VAE prior during fine-tuning.
        c_max: final KL capacity in nats (0: plain β-VAE).
        c_steps: iterations to reach ``c_max``.
        ce_weight: weight of the cross-entropy term in ``classify`` mode. The reconstruction
            error is summed over pixels, so CE needs a large weight to shape the latent.
        attention_sparsity: weight of an L1 term on the attention map (its mean value), as a
            fraction of ``ce_weight`` (so 0 in ``pretrain`` mode); 0 disables it. A sigmoid map
            that pays for every cell it keeps open has to single out the cells the classifier
            reads, so the map points at the finding (``medglass explain --datalist`` scores where
            it points).
        label_fraction: fraction of training labels kept (stratified), the rest set to -1.
        labelled_share: when some training records are unlabelled (``classify`` mode), draw
            records with replacement so that this share of each batch carries a label on
            average (:mod:`pipelines.sampling`); 0: plain shuffling. Default 0.5: with few labels,
            plain shuffling shows the labelled images too rarely to learn from them.
        synthetic_minority: synthetic images of the minority class (the class with the fewest
            labelled training records; ties: the higher class) added to training, drawn from
            ``generator`` once before training (:mod:`pipelines.synthetic_augmentation`; written to
            ``out_dir/synthetic_minority``, every record marked ``synthetic``). A number in
            ``(0, 1)`` is the share of every training batch that is synthetic
            (``floor(share × batch_size)`` images, one more with the probability of the fractional
            part, so the mean share is exact; an epoch draws as many real images as there are
            real records); an integer ``>= 1`` is a count of synthetic
            images added to the training records, sampled like the real ones. 0 (default): none.
            Synthetic images never enter validation or test.
        generator: the run that draws the synthetic images of ``synthetic_minority`` (a run folder,
            checkpoint or MLflow reference of a glass-box run with a decoder; its latent prior is
            fitted and cached when missing, :func:`pipelines.generation.fit_prior`).
        pretrained: checkpoint whose encoder/latent/decoder weights initialise the network.
        freeze_encoder: don't train the encoding path (encoder, attention, latent).
        flip_prob: probability of a random flip along each spatial axis of a training input
            (the reconstruction target is flipped with it); 0: no flips. Default 0.5: without
            flips a few labelled images are memorised.
        erase_prob: probability of random patch erasing on a training input (context modelling;
            the loss compares with the unerased image).
        intensity: ``"dataset"``: scale every image by one intensity range, the 0.5th/99.5th
            percentiles pooled over the training images (computed when training starts and
            stored as ``intensity_range``; see :mod:`transforms.intensity_range` for why);
            ``"image"``: per-image 0.5th/99.5th percentiles.
        intensity_range: ``(a_min, a_max)`` mapped to 0 and 1 (with ``intensity="dataset"``);
            ``None`` until training computes it, or a fixed range to use as given.
        early_stop_patience: validations without improvement before stopping (0: never stop).
        seed: seed of MONAI's ``set_determinism`` and of the label masking.
        num_workers: data-loader workers.
        cache_rate: share of each split's images kept in memory after loading and scaling
            (MONAI ``CacheDataset``; the random augmentations still run every epoch). 1 (default)
            keeps all, so images are not decoded again every epoch; lower it for large 3D cohorts
            (``n × prod(spatial_size) × 4`` bytes per split).
        amp: bfloat16 autocast for forward passes (for CUDA; training warns on a CPU, where it
            runs in emulation and is slower: ``bench/bench_models.py --precisions fp32 bf16``).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (cuda when available).
        tracking_uri: MLflow tracking URI (``$MLFLOW_TRACKING_URI`` overrides it).
        experiment: MLflow experiment name.
        run_name: MLflow run name (default: ``<mode>-<out_dir name>``).
        progress: show a progress bar.
        registered_model_name: register the logged best model under this MLflow model name
            (``None``: log the model without registering it).
        distributed: data-parallel training under ``torchrun`` (one process per device:
            ``DistributedDataParallel``, gloo on the CPU, nccl on CUDA; see
            :mod:`pipelines.distributed`).

    Raises:
        ValueError: a field is out of range; the message names the field, the expectation and the value.
    """

    datalist: str | Path
    out_dir: str | Path
    mode: str = "classify"
    size: str = "tiny_fine"
    latent: str = "spatial"
    latent_dim: int = 16
    spatial_channels: int | None = None
    spatial_beta: float = 1e-3
    latent_pool: str = "attention"
    pooled_logits: bool | None = None
    spatial_size: tuple[int, ...] = (64, 64)
    num_classes: int = 2
    epochs: int = 20
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    beta: float | None = None
    c_max: float = 0.0
    c_steps: int = 10000
    ce_weight: float = 1000.0
    attention_sparsity: float = 0.1
    label_fraction: float = 1.0
    labelled_share: float = 0.5
    synthetic_minority: float = 0.0
    generator: str | None = None
    pretrained: str | Path | None = None
    freeze_encoder: bool = False
    flip_prob: float = 0.5
    erase_prob: float = 0.0
    intensity: str = "dataset"
    intensity_range: tuple[float, float] | None = None
    early_stop_patience: int = 0
    seed: int = 0
    num_workers: int = 0
    cache_rate: float = 1.0
    amp: bool = False
    device: str = "auto"
    tracking_uri: str | None = DEFAULT_TRACKING_URI
    experiment: str = "medglass"
    run_name: str | None = None
    progress: bool = False
    registered_model_name: str | None = None
    distributed: bool = False

    def __post_init__(self) -> None:
        self.datalist = Path(self.datalist)
        self.out_dir = Path(self.out_dir)
        if self.pretrained is not None:
            self.pretrained = Path(self.pretrained)
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.size not in SIZE_PRESETS:
            raise ValueError(f"size must be one of {tuple(SIZE_PRESETS)}, got {self.size!r}")
        if self.latent not in LATENT_KINDS:
            raise ValueError(f"latent must be one of {LATENT_KINDS}, got {self.latent!r}")
        if self.spatial_channels is None and _is_int(self.latent_dim):
            self.spatial_channels = max(1, self.latent_dim // 2)
        if self.latent == "spatial" and (
            not _is_int(self.spatial_channels) or not 1 <= self.spatial_channels <= self.latent_dim
        ):
            raise ValueError(
                f"spatial_channels must be an int in [1, latent_dim={self.latent_dim}], got {self.spatial_channels!r}"
            )
        pools = FIELD_CHOICES["latent_pool"]
        if self.latent_pool not in pools:
            raise ValueError(f"latent_pool must be one of {pools}, got {self.latent_pool!r}")
        if self.pooled_logits is not None and not isinstance(self.pooled_logits, bool):
            raise ValueError(f"pooled_logits must be true, false or null, got {self.pooled_logits!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        spatial = tuple(self.spatial_size) if isinstance(self.spatial_size, (list, tuple)) else ()
        stride = SIZE_PRESETS[self.size].total_stride
        if len(spatial) not in (2, 3) or not all(_is_int(s) and s > 0 and s % stride == 0 for s in spatial):
            raise ValueError(
                f"spatial_size must be 2 or 3 positive ints divisible by {stride} (the total stride of "
                f"size {self.size!r}), got {self.spatial_size!r}"
            )
        self.spatial_size = spatial
        for name, minimum in (
            ("latent_dim", 1),
            ("num_classes", 1),
            ("epochs", 1),
            ("batch_size", 1),
            ("c_steps", 1),
            ("early_stop_patience", 0),
            ("seed", 0),
            ("num_workers", 0),
        ):
            value = getattr(self, name)
            if not _is_int(value) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if not _is_real(self.lr) or not self.lr > 0:
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")
        if self.beta is None:
            self.beta = 1.0 if self.mode == "pretrain" else 0.0
        for name in ("weight_decay", "beta", "c_max", "ce_weight", "attention_sparsity", "spatial_beta"):
            value = getattr(self, name)
            if not _is_real(value) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("label_fraction", "flip_prob", "erase_prob", "cache_rate"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if not _is_real(self.labelled_share) or not 0.0 <= self.labelled_share < 1.0:
            raise ValueError(f"labelled_share must be in [0, 1), got {self.labelled_share!r}")
        self._check_synthetic_minority()
        if self.intensity not in INTENSITY_MODES:
            raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {self.intensity!r}")
        if self.intensity_range is not None:
            if self.intensity != "dataset":
                raise ValueError(
                    f"intensity_range needs intensity='dataset', got intensity={self.intensity!r} "
                    f"with intensity_range={self.intensity_range!r}"
                )
            self.intensity_range = check_intensity_range(self.intensity_range)
        if self.mode == "classify" and self.label_fraction == 0:
            raise ValueError("label_fraction must be > 0 in classify mode, got 0 (use mode='pretrain')")
        if self.pretrained is not None and not self.pretrained.is_file():
            raise ValueError(f"pretrained checkpoint {self.pretrained}: file not found")
        if self.freeze_encoder and self.pretrained is None:
            raise ValueError("freeze_encoder needs a pretrained checkpoint, got pretrained=None")
        if not isinstance(self.experiment, str) or not self.experiment:
            raise ValueError(f"experiment must be a non-empty string, got {self.experiment!r}")
        if self.registered_model_name is not None and (
            not isinstance(self.registered_model_name, str) or not self.registered_model_name.strip()
        ):
            raise ValueError(
                f"registered_model_name must be a non-empty string or None, got {self.registered_model_name!r}"
            )
        if not isinstance(self.distributed, bool):
            raise ValueError(f"distributed must be a bool, got {self.distributed!r}")

    def _check_synthetic_minority(self) -> None:
        """Validate ``synthetic_minority`` and ``generator`` (see the class docstring)."""
        share = self.synthetic_minority
        if not _is_real(share) or not math.isfinite(share) or share < 0:
            raise ValueError(f"synthetic_minority must be a number >= 0, got {share!r}")
        if share >= 1 and share != int(share):
            raise ValueError(
                "synthetic_minority must be a share in (0, 1) or a whole count >= 1 of synthetic images, "
                f"got {share!r}"
            )
        if self.generator is not None:
            if isinstance(self.generator, Path):
                self.generator = str(self.generator)
            if not isinstance(self.generator, str) or not self.generator.strip():
                raise ValueError(
                    f"generator must be a run folder, checkpoint or MLflow reference, got {self.generator!r}"
                )
        if share > 0 and self.generator is None:
            raise ValueError(
                f"synthetic_minority={share!r} needs generator (a run with a decoder whose latent prior draws "
                "the minority class), got generator=None"
            )
        if share > 0 and self.mode != "classify":
            raise ValueError(
                f"synthetic_minority needs mode='classify' (labelled images), got mode={self.mode!r}"
            )
        if share == 0 and self.generator is not None:
            raise ValueError(
                f"generator={self.generator!r} is only read with synthetic_minority > 0, got synthetic_minority=0"
            )

    @property
    def effective_ce_weight(self) -> float:
        """The cross-entropy weight used: 0 in ``pretrain`` mode, else ``ce_weight``."""
        return 0.0 if self.mode == "pretrain" else float(self.ce_weight)

    @property
    def spatial_dims(self) -> int:
        """2 or 3, from ``spatial_size``."""
        return len(self.spatial_size)

    def to_params(self) -> dict[str, str]:
        """Flat ``name → str`` parameters for MLflow (``progress`` left out)."""
        params = {}
        for f in dataclasses.fields(self):
            if f.name == "progress":
                continue
            params[f.name] = str(getattr(self, f.name))
        params["effective_ce_weight"] = str(self.effective_ce_weight)
        return params

    @classmethod
    def from_json(
        cls, data: dict[str, Any], base: str | Path | None = None, require_inputs: bool = True
    ) -> TrainConfig:
        """The config :meth:`to_json` wrote (JSON lists become tuples; unknown names are refused).

        Args:
            data: a dict of field values, e.g. ``json.loads(Path("config.json").read_text())``.
            base: the folder the file was read from (a run folder). Paths (:data:`PATH_FIELDS`)
                are looked for, first found wins: relative to it (how :meth:`to_json` writes them
                with ``relative_to``); for a file written before run folders were portable
                (paths as typed, ``out_dir`` not ``"."``) and read from its run folder, where they
                lie relative to that folder now (so a moved run tree still finds its inputs); at
                the absolute path stored beside them (:data:`ABSOLUTE_PATHS_KEY`: the run folder
                moved without its inputs); finally relative to ``base`` or, for an older file,
                the working directory. When none exists the first candidate is kept, and the
                message of whatever needs the file names it.
            require_inputs: ``False`` when the run is only analysed: a ``pretrained`` checkpoint
                that is gone is then dropped (it only initialised the training) instead of refused.

        Returns:
            A validated ``TrainConfig``.

        Raises:
            ValueError: an unknown field name or a value out of range.

        Example:
            >>> cfg = TrainConfig.from_json({"datalist": "../cohort/d.json", "out_dir": "."}, base="/runs/cls")
            >>> str(cfg.datalist), str(cfg.out_dir)
            ('/runs/cohort/d.json', '/runs/cls')
        """
        values = dict(data)
        absolute = values.pop(ABSOLUTE_PATHS_KEY, None) or {}
        if not isinstance(absolute, dict):
            raise ValueError(f"{ABSOLUTE_PATHS_KEY} must be an object of field -> path, got {absolute!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {unknown}")
        for name in ("spatial_size", "intensity_range"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        if "intensity" not in values:  # written before the dataset-level range existed
            values["intensity"] = "image"
        if "attention_sparsity" not in values:  # written before the attention term existed
            values["attention_sparsity"] = 0.0
        if "latent" not in values:  # written before the spatial-latent core existed
            values["latent"] = "vector"
        if base is not None:
            stored_out = values.get("out_dir")
            for name in PATH_FIELDS:
                if values.get(name) is not None:
                    values[name] = _resolve(Path(values[name]), Path(base), stored_out, absolute.get(name))
        if (
            not require_inputs
            and values.get("pretrained") is not None
            and not Path(values["pretrained"]).is_file()
        ):
            values["pretrained"], values["freeze_encoder"] = None, False
        return cls(**values)

    def to_json(self, relative_to: str | Path | None = None) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (paths as strings).

        Args:
            relative_to: write :data:`PATH_FIELDS` relative to this folder (the run folder), so
                that the file still points at its inputs after the folder tree is moved or read
                from another working directory, and their absolute paths under
                :data:`ABSOLUTE_PATHS_KEY` (for a run folder moved without its inputs); ``None``:
                as given.

        Returns:
            Field name → value (plus :data:`ABSOLUTE_PATHS_KEY` with ``relative_to``).

        Example:
            >>> cfg = TrainConfig(datalist="/data/cohort/d.json", out_dir="/runs/cls")
            >>> saved = cfg.to_json(relative_to="/runs/cls")
            >>> saved["datalist"], saved["out_dir"], saved["absolute_paths"]["datalist"]
            ('../../data/cohort/d.json', '.', '/data/cohort/d.json')
        """
        out = {}
        absolute = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if relative_to is not None and f.name in PATH_FIELDS and value is not None:
                absolute[f.name] = str(Path(value).resolve())
                value = os.path.relpath(Path(value).resolve(), Path(relative_to).resolve())
            out[f.name] = str(value) if isinstance(value, Path) else value
        if relative_to is not None:
            out[ABSOLUTE_PATHS_KEY] = absolute
        return out


PATH_FIELDS = ("datalist", "out_dir", "pretrained")
"""The :class:`TrainConfig` fields that hold file paths (written relative to the run folder)."""

ABSOLUTE_PATHS_KEY = "absolute_paths"
"""Key of ``config.json`` holding the absolute paths of :data:`PATH_FIELDS` when it was written
(a fallback for a run folder moved without its inputs; not a ``TrainConfig`` field)."""


def _read_from_run_folder(base: Path, out_dir: str | Path | None) -> bool:
    """Whether a config.json in ``base`` was written by training into its ``out_dir``.

    True for a portable file (``out_dir`` ``"."``), and for an older one whose ``out_dir``, as
    typed, is the tail of ``base`` (``runs/demo/classify`` read from ``/x/runs/demo/classify``)
    or, absolute, ends in the same folder name (the tree was moved).
    """
    if out_dir is None:
        return False
    out = Path(os.path.normpath(out_dir))
    if out == Path("."):
        return True
    if out.is_absolute():
        return out.name == base.resolve().name
    if ".." in out.parts:
        return False
    return base.resolve().parts[-len(out.parts) :] == out.parts


def _resolve(path: Path, base: Path, out_dir: str | Path | None, absolute: str | None) -> Path:
    """``path`` of a config read from ``base``: the first existing candidate (see :meth:`TrainConfig.from_json`)."""
    portable = out_dir is not None and Path(os.path.normpath(out_dir)) == Path(".")
    candidates: list[Path] = []
    if path.is_absolute():
        candidates.append(path)
    elif portable:
        candidates.append(base / path)
    if not portable and _read_from_run_folder(base, out_dir):
        out = Path(out_dir)  # type: ignore[arg-type]
        if out.is_absolute() == path.is_absolute():
            # as typed, both relative to where training started: the input keeps its place
            # relative to the run folder when the whole tree moves
            candidates.append(base / os.path.relpath(path, out))
    if absolute:
        candidates.append(Path(absolute))
    if not path.is_absolute() and not portable:
        candidates += [base / path, path]  # older files: relative to the config, or to the working directory
    chosen = next((c for c in candidates if c.exists()), candidates[0])
    return Path(os.path.normpath(chosen))
