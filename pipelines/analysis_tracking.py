"""Log an analysis (explanation, bias audit, mitigation) to MLflow next to the model it analyses.

The report folder of ``medglass explain``/``audit``/``mitigate`` is logged as the artifacts of
a *child run* of the model's training run (MLflow's ``mlflow.parentRunId`` tag, so the UI nests
it under the model), with its ``metrics.json`` as run metrics. When the model has no known run
(a bare checkpoint), a stand-alone run is created in the ``medglass`` experiment. As in
training, MLflow problems never lose the analysis: the files are already written; a failure is
reported once as a warning and the function returns ``None``.

Example:
    >>> log_analysis("explain", Path("out"), {"pointing_attention": 0.95}, parent_run_id=None)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

from pipelines.training_config import resolve_tracking_uri

__all__ = ["log_analysis"]

logger = logging.getLogger("medglass.analysis")


def log_analysis(
    kind: str,
    out_dir: Path,
    metrics: Mapping[str, float],
    parent_run_id: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = "medglass",
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> str | None:
    """Create an MLflow run for an analysis and log its metrics and every file of ``out_dir``.

    Args:
        kind: what the analysis is (``"explain"``, ``"audit"``, ``"mitigate"``): the run name
            prefix and the ``medglass.analysis`` tag.
        out_dir: the analysis output folder (logged as the run's artifacts).
        metrics: flat name → number.
        parent_run_id: the model's training run; the analysis becomes its child run (same experiment).
        tracking_uri: MLflow tracking URI (``$MLFLOW_TRACKING_URI`` overrides it).
        experiment: experiment for a stand-alone run (no parent).
        params: extra run parameters.
        tags: extra run tags (e.g. the sentences that say how to read an audit's numbers).

    Returns:
        The new run id, or ``None`` when MLflow could not be reached (a warning says why).
    """
    uri = resolve_tracking_uri(tracking_uri)
    try:
        import mlflow
        from mlflow.entities import Metric, Param

        client = mlflow.MlflowClient(tracking_uri=uri)
        run_tags = {**{k: str(v)[:5000] for k, v in (tags or {}).items()}, "medglass.analysis": kind}
        experiment_id = None
        if parent_run_id is not None:
            try:
                experiment_id = client.get_run(parent_run_id).info.experiment_id
                run_tags["mlflow.parentRunId"] = parent_run_id
            except mlflow.exceptions.MlflowException:
                logger.warning(
                    "MLflow run %s of the model is not in %s: logging a stand-alone run", parent_run_id, uri
                )
        if experiment_id is None:
            found = client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
        run = client.create_run(experiment_id, run_name=f"{kind}-{out_dir.name}", tags=run_tags)
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
        for start in range(0, len(batch), 500):  # MLflow's batch limit is 1000 metrics
            client.log_batch(run_id, metrics=batch[start : start + 500])
        if params:
            client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        client.log_artifacts(run_id, str(out_dir))
        client.set_terminated(run_id)
        return run_id
    except Exception as err:  # noqa: BLE001 - tracking must never lose the analysis
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        logger.warning(
            "MLflow tracking at %s is unavailable; the %s report stays in %s: %s", uri, kind, out_dir, reason
        )
        return None
