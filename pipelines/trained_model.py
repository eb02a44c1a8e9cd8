"""Load a trained ``GlassBoxNet`` for analysis: from a run folder, a checkpoint or an MLflow run.

Explanations (``medglass explain``) and bias audits (``medglass audit``/``mitigate``) take a
*model reference* and need three things from it: the network with its trained weights, the
settings it was trained with (image size, latent size, ...) and, when there is one, the MLflow
run it came from so their reports can be logged next to it. :func:`load_trained_model` accepts:

- a training output folder (``config.json`` + ``best.pt``, else ``last.pt``; the MLflow run id
  from ``mlflow_run_id.txt`` when present);
- a checkpoint file (``best.pt``/``last.pt``) with the ``config.json`` of its training beside it;
- an MLflow reference: ``runs:/<run id>/model``, ``models:/<name>/<version>`` or a bare run id
  (32 hex digits); the model is loaded with ``mlflow.pytorch.load_model`` and the run's
  ``config.json`` artifact is read for the settings.

Example:
    >>> trained = load_trained_model("runs/demo/classify")  # doctest: +SKIP
    >>> trained.network.latent_dim, trained.spatial_size  # doctest: +SKIP
    (16, (64, 64))
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import torch

from networks.glassbox import GlassBoxNet
from networks.spatial_glassbox import SpatialGlassBoxNet
from pipelines.mlflow_tracking import RUN_ID_FILE
from pipelines.training_config import ABSOLUTE_PATHS_KEY, TrainConfig, resolve_tracking_uri

__all__ = ["TrainedModel", "load_trained_model", "CHECKPOINT_NAMES"]

CHECKPOINT_NAMES = ("best.pt", "last.pt")
"""Checkpoints looked for in a run folder, in order of preference."""

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")

logger = logging.getLogger("medglass.model")


@dataclass
class TrainedModel:
    """A trained network with the settings and provenance analyses need.

    Attributes:
        network: the ``GlassBoxNet`` in eval mode, on the requested device.
        config: the training settings (``config.json`` of the run).
        source: the reference it was loaded from, as given.
        checkpoint: the checkpoint file, when loaded from one.
        run_id: the MLflow run of the training, when known.
        tracking_uri: the MLflow tracking URI of that run.
    """

    network: GlassBoxNet
    config: TrainConfig
    source: str
    checkpoint: Path | None = None
    run_id: str | None = None
    tracking_uri: str | None = None

    @property
    def spatial_size(self) -> tuple[int, ...]:
        """The image size the network takes (without channel)."""
        return tuple(int(s) for s in self.config.spatial_size)

    @property
    def intensity_range(self) -> tuple[float, float] | None:
        """The dataset-level intensity range of training, or ``None`` (per-image percentiles)."""
        value = self.config.intensity_range
        return None if value is None else (float(value[0]), float(value[1]))

    @property
    def device(self) -> torch.device:
        """Where the network's weights are."""
        return next(self.network.parameters()).device


def _read_config(path: Path, source: str) -> TrainConfig:
    if not path.is_file():
        raise ValueError(
            f"model {source}: no config.json at {path} (the training settings are needed to rebuild the network)"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"model {source}: {path} is not a readable JSON file ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(
            f"model {source}: {path} must hold a JSON object of settings, got {type(data).__name__}"
        )
    try:
        # paths relative to the run folder; the pretraining checkpoint is not needed to analyse a run
        config = TrainConfig.from_json(data, base=path.parent, require_inputs=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model {source}: {path}: {' '.join(str(err).split())}") from err
    if not Path(config.datalist).is_file():
        # not an error: explaining or auditing a run needs its training images only for reference
        # statistics, which the run folder usually caches; whatever needs them says so again
        missing = Path(config.datalist).absolute()
        saved = (data.get(ABSOLUTE_PATHS_KEY) or {}).get("datalist")
        elsewhere = (
            f", nor at {saved} where it was when the run was saved"
            if saved and Path(saved) != missing
            else ""
        )
        logger.warning(
            "model %s: the training datalist its %s names is gone (no %s%s); analyses that need the "
            "training images go without them",
            source,
            path.name,
            missing,
            elsewhere,
        )
    return config


def _network(config: TrainConfig) -> GlassBoxNet | SpatialGlassBoxNet:
    from pipelines.training import build_network  # imported late: training imports this module's users

    return build_network(config)


def _load_checkpoint(network: GlassBoxNet | SpatialGlassBoxNet, checkpoint: Path, source: str) -> None:
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        raise ValueError(f"model {source}: {checkpoint} is not a readable checkpoint ({err})") from err
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if isinstance(state, dict):
        saved = "spatial" if any(str(k).startswith("latent.to_spatial.") for k in state) else "vector"
        built = getattr(network, "latent_kind", "vector")
        if saved != built:
            raise ValueError(
                f"model {source}: {checkpoint} holds the {saved}-latent core but its config.json describes the "
                f'{built}-latent core (latent={built!r}); the architecture changed: set "latent": "{saved}" '
                "in config.json or retrain"
            )
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError) as err:
        first = " ".join(str(err).split())[:300]
        raise ValueError(
            f"model {source}: {checkpoint} does not fit the network of its config.json ({first})"
        ) from err


def _from_files(ref: Path, source: str) -> TrainedModel:
    if ref.is_dir():
        checkpoint = next((ref / name for name in CHECKPOINT_NAMES if (ref / name).is_file()), None)
        if checkpoint is None:
            raise ValueError(
                f"model {source}: folder has no checkpoint (looked for {', '.join(CHECKPOINT_NAMES)})"
            )
        folder = ref
    else:
        checkpoint, folder = ref, ref.parent
    config = _read_config(folder / "config.json", source)
    network = _network(config)
    _load_checkpoint(network, checkpoint, source)
    id_file = folder / RUN_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else None
    return TrainedModel(
        network=network.eval(),
        config=config,
        source=source,
        checkpoint=checkpoint,
        run_id=run_id or None,
        tracking_uri=resolve_tracking_uri(config.tracking_uri) if run_id else None,
    )


def _from_mlflow(ref: str, tracking_uri: str | None) -> TrainedModel:
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    model_uri = f"runs:/{ref}/model" if _RUN_ID.match(ref) else ref
    try:
        if ref.startswith("models:/"):
            name, _, version = ref[len("models:/") :].partition("/")
            run_id = client.get_model_version(name, version).run_id if version else None
        else:
            run_id = ref if _RUN_ID.match(ref) else ref[len("runs:/") :].split("/", 1)[0]
        from mlflow.tracking._tracking_service.utils import _use_tracking_uri

        with _use_tracking_uri(uri):
            network = mlflow.pytorch.load_model(model_uri, map_location="cpu")
        if run_id is None:
            raise ValueError("the model version names no source run")
        with tempfile.TemporaryDirectory() as tmp:
            config_path = Path(client.download_artifacts(run_id, "config.json", tmp))
            config = _read_config(config_path, ref)
    except ValueError:
        raise
    except Exception as err:  # noqa: BLE001 - MLflow raises many types
        reason = " ".join(str(err).split())[:300]
        raise ValueError(f"model {ref}: could not load it from MLflow at {uri} ({reason})") from err
    if not isinstance(network, (GlassBoxNet, SpatialGlassBoxNet)):
        raise ValueError(
            f"model {ref}: expected a GlassBoxNet or SpatialGlassBoxNet, MLflow returned {type(network).__name__}"
        )
    return TrainedModel(network=network.eval(), config=config, source=ref, run_id=run_id, tracking_uri=uri)


def load_trained_model(
    ref: str | PathLike, device: str | torch.device = "cpu", tracking_uri: str | None = None
) -> TrainedModel:
    """Load a trained network and its settings from a run folder, a checkpoint or MLflow.

    Args:
        ref: a training output folder, a checkpoint file (with ``config.json`` beside it),
            ``runs:/<run id>/model``, ``models:/<name>/<version>`` or a 32-hex MLflow run id.
        device: where to put the network.
        tracking_uri: MLflow tracking URI for MLflow references (default: ``$MLFLOW_TRACKING_URI``
            or ``sqlite:///mlruns.db``).

    Returns:
        The :class:`TrainedModel` (network in eval mode).

    Raises:
        ValueError: ``ref`` is neither an existing file/folder nor an MLflow reference, or what it
            names cannot be loaded; the message names ``ref`` and the reason.
    """
    source = str(ref)
    path = Path(ref)
    if path.exists():
        trained = _from_files(path, source)
    elif source.startswith(("runs:/", "models:/")) or _RUN_ID.match(source):
        trained = _from_mlflow(source, tracking_uri)
    else:
        raise ValueError(
            f"model {source}: not an existing run folder or checkpoint, nor an MLflow reference "
            "(runs:/<run id>/model, models:/<name>/<version> or a run id)"
        )
    trained.network.to(torch.device(device))
    return trained
