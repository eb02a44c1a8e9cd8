"""MLflow tracking that never stops training: one run per output folder, guarded MONAI handlers.

:class:`RunTracker` creates (or, when training resumes, reopens) the MLflow run of an output
folder, logs params and final metrics, and attaches MONAI's
:class:`~monai.handlers.MLFlowHandler` to the engines for per-epoch metrics; at the end it logs
the best model (``mlflow.pytorch.log_model``, requirements given explicitly so nothing is
fetched) and, if asked, registers it in the model registry. Any MLflow error
(an unreachable server, a locked database) disables tracking with a single warning; the
training itself goes on.

Example:
    >>> tracker = RunTracker("sqlite:///mlruns.db", "medglass", "runs/x", "pretrain-x")  # doctest: +SKIP
    >>> tracker.start({"lr": "0.001"})  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine
from monai.handlers import MLFlowHandler

__all__ = ["RunTracker", "GuardedMLFlowHandler", "RUN_ID_FILE"]

logger = logging.getLogger("medglass.training")

RUN_ID_FILE = "mlflow_run_id.txt"
"""File in the output folder holding the MLflow run id, so a resumed training logs to the same run."""


class GuardedMLFlowHandler(MLFlowHandler):
    """MONAI's ``MLFlowHandler`` whose MLflow calls report failures to a :class:`RunTracker`.

    Args:
        tracker: the tracker that owns the run (its ``active`` flag turns the handler off).
        **kwargs: passed to :class:`~monai.handlers.MLFlowHandler`.
    """

    def __init__(self, tracker: RunTracker, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tracker = tracker

    def _guarded(self, fn: Callable[..., None], *args: Any) -> None:
        if not self.tracker.active:
            return
        try:
            fn(*args)
        except Exception as err:  # noqa: BLE001 - tracking must never stop training
            self.tracker.disable(err)

    def start(self, engine: Engine) -> None:
        self._guarded(super().start, engine)

    def epoch_completed(self, engine: Engine) -> None:
        self._guarded(super().epoch_completed, engine)

    def iteration_completed(self, engine: Engine) -> None:
        self._guarded(super().iteration_completed, engine)

    def complete(self) -> None:
        self._guarded(super().complete)


class RunTracker:
    """The MLflow run of one output folder.

    Args:
        tracking_uri: MLflow tracking URI (already resolved, see
            :func:`pipelines.training_config.resolve_tracking_uri`).
        experiment: experiment name.
        out_dir: output folder; its ``mlflow_run_id.txt`` names the run to reopen.
        run_name: name of a new run.
        enabled: ``False`` makes every method a no-op (ranks other than 0 of a distributed run).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        out_dir: str | PathLike,
        run_name: str,
        enabled: bool = True,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment
        self.out_dir = Path(out_dir)
        self.run_name = run_name
        self.active = bool(enabled)
        self.client: Any = None
        self.experiment: Any = None
        self.run: Any = None
        self.resumed = False

    @property
    def run_id(self) -> str | None:
        """The run id, or None when tracking is off."""
        return self.run.info.run_id if self.run is not None and self.active else None

    def disable(self, err: BaseException) -> None:
        """Turn tracking off, warning once (with the reason in one line)."""
        if self.active:
            reason = " ".join(str(err).split())[:300] or type(err).__name__
            logger.warning(
                "MLflow tracking at %s is unavailable, training continues without it: %s",
                self.tracking_uri,
                reason,
            )
        self.active = False

    def _artifact_location(self) -> str | None:
        if self.tracking_uri.startswith("sqlite:///"):
            db = Path(self.tracking_uri[len("sqlite:///") :])
            return (db.resolve().parent / "mlartifacts").as_uri()
        return None

    def start(self, params: Mapping[str, str]) -> None:
        """Create or reopen the run and log ``params`` (on a reopened run, only new names).

        Args:
            params: run parameters.
        """
        if not self.active:
            return
        try:
            import mlflow

            self.client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
            experiment = self.client.get_experiment_by_name(self.experiment_name)
            if experiment is None:
                experiment_id = self.client.create_experiment(
                    self.experiment_name, artifact_location=self._artifact_location()
                )
                experiment = self.client.get_experiment(experiment_id)
            self.experiment = experiment
            id_file = self.out_dir / RUN_ID_FILE
            if id_file.is_file():
                run_id = id_file.read_text().strip()
                try:
                    self.run = self.client.get_run(run_id)
                    self.client.update_run(run_id, status="RUNNING")
                    self.resumed = True
                except mlflow.exceptions.MlflowException:
                    self.run = None
            if self.run is None:
                self.run = self.client.create_run(experiment.experiment_id, run_name=self.run_name)
                self.out_dir.mkdir(parents=True, exist_ok=True)
                id_file.write_text(self.run.info.run_id)
            logged = self.client.get_run(self.run.info.run_id).data.params
            new = [mlflow.entities.Param(k, str(v)[:6000]) for k, v in params.items() if k not in logged]
            if new:
                self.client.log_batch(self.run.info.run_id, params=new)
        except Exception as err:  # noqa: BLE001 - tracking must never stop training
            self.disable(err)

    def attach(self, engine: Engine, global_epoch: Callable[[int], int] | None = None) -> None:
        """Attach a guarded ``MLFlowHandler`` logging ``engine.state.metrics`` every epoch.

        Args:
            engine: trainer or evaluator.
            global_epoch: maps the engine's epoch to the step logged (an evaluator passes the
                trainer's epoch).
        """
        if not self.active:
            return
        try:
            handler = GuardedMLFlowHandler(
                self,
                tracking_uri=self.tracking_uri,
                iteration_log=False,
                epoch_log=True,
                experiment_name=self.experiment_name,
                run_name=self.run_name,
                global_epoch_transform=global_epoch or (lambda epoch: epoch),
                artifact_location=self._artifact_location(),
            )
        except Exception as err:  # noqa: BLE001
            self.disable(err)
            return
        handler.experiment = self.experiment
        handler.cur_run = self.run
        handler.attach(engine)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log numbers to the run (no-op when tracking is off)."""
        if not self.active or self.run is None:
            return
        try:
            import time

            import mlflow

            now = int(time.time() * 1000)
            batch = [mlflow.entities.Metric(k, float(v), now, step) for k, v in metrics.items()]
            self.client.log_batch(self.run.info.run_id, metrics=batch)
        except Exception as err:  # noqa: BLE001
            self.disable(err)

    def log_artifact(self, path: str | PathLike) -> None:
        """Upload one file to the run (no-op when tracking is off)."""
        if not self.active or self.run is None:
            return
        try:
            self.client.log_artifact(self.run.info.run_id, str(path))
        except Exception as err:  # noqa: BLE001
            self.disable(err)

    def log_model(
        self,
        model: torch.nn.Module,
        name: str = "model",
        registered_model_name: str | None = None,
        pip_requirements: Sequence[str] | None = None,
    ) -> str | None:
        """Log a PyTorch model to the run (``mlflow.pytorch.log_model``) and optionally register it.

        The model is pickled (MLflow's ``"pickle"`` format: loading it needs this project's
        classes importable) and its requirements are given explicitly, so nothing is inferred
        or fetched from a package index. A failure disables tracking with the usual warning.

        Args:
            model: the module to log (logged as given; pass a CPU copy to keep device-free weights).
            name: the model's name in the run.
            registered_model_name: register a new version under this name (``None``: don't).
            pip_requirements: requirement lines (default: this ``torch`` and ``monai``).

        Returns:
            The model URI (``models:/<model id>``), or ``None`` when tracking is off or failed.
        """
        if not self.active or self.run is None:
            return None
        try:
            import mlflow
            import monai

            if pip_requirements is None:
                pip_requirements = [
                    f"torch=={torch.__version__.split('+')[0]}",
                    f"monai=={monai.__version__}",
                ]
            from mlflow.tracking._tracking_service.utils import _use_tracking_uri

            # the fluent API behind log_model uses the global URI (and sets $MLFLOW_TRACKING_URI):
            # set it for this call only, then restore what was there
            # created here so that it belongs to the run's experiment (the fluent API would put
            # it in the process's current experiment, "Default" unless someone set one)
            logged = self.client.create_logged_model(
                experiment_id=self.run.info.experiment_id, name=name, source_run_id=self.run.info.run_id
            )
            with _use_tracking_uri(self.tracking_uri):
                info = mlflow.pytorch.log_model(
                    model,
                    name=name,
                    model_id=logged.model_id,
                    run_id=self.run.info.run_id,
                    registered_model_name=registered_model_name,
                    pip_requirements=list(pip_requirements),
                    serialization_format="pickle",
                )
            return info.model_uri
        except Exception as err:  # noqa: BLE001
            self.disable(err)
            return None

    def finish(self, status: str = "FINISHED") -> None:
        """Mark the run finished (no-op when tracking is off)."""
        if not self.active or self.run is None:
            return
        try:
            self.client.set_terminated(self.run.info.run_id, status=status)
        except Exception as err:  # noqa: BLE001
            self.disable(err)
