"""Training against a real MLflow tracking server (``mlflow server``, SQLite backend, served artifacts)."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import torch

from phantoms.brain_cohort import PhantomConfig, generate_cohort
from pipelines.mlflow_tracking import RUN_ID_FILE
from pipelines.training import BEST_CHECKPOINT, train
from pipelines.training_config import TrainConfig

pytestmark = pytest.mark.integration

TINY = {"spatial_size": (32, 32), "batch_size": 8, "size": "tiny", "latent_dim": 8}
REGISTERED = "medglass-server-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it after 15 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on a free local port; yields its URL; stopped (bounded) at teardown."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{root}/mlflow.db"]
    command += ["--artifacts-destination", str(root / "artifacts"), "--workers", "1"]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"mlflow server exited ({proc.returncode}): {(root / 'server.log').read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not ready in 90 s: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        _stop(proc)
        log.close()


@pytest.fixture(scope="module")
def trained(server: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One classify epoch on a tiny cohort, tracked on the server, best model registered."""
    root = tmp_path_factory.mktemp("server_run")
    generate_cohort(PhantomConfig(kind="brain2d", n=40, seed=0, size=32), root / "cohort", progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        mp.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        config = TrainConfig(
            datalist=root / "cohort" / "datalist.json",
            out_dir=root / "run",
            mode="classify",
            epochs=1,
            tracking_uri=server,
            experiment="server-test",
            registered_model_name=REGISTERED,
            **TINY,
        )
        metrics = train(config)
    torch.set_num_threads(threads)
    run_id = (root / "run" / RUN_ID_FILE).read_text().strip()
    return {"out": root / "run", "metrics": metrics, "run_id": run_id, "client": mlflow.MlflowClient(server)}


def test_run_holds_params_and_per_epoch_metrics(trained: dict) -> None:
    client, run_id = trained["client"], trained["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["mode"] == "classify" and run.data.params["latent_dim"] == "8"
    assert run.data.params["registered_model_name"] == REGISTERED
    names = ["train_loss", "train_kl_dim_00", "train_kl_dim_07", "val_auc", "val_recon_mse", "val_recon_ssim"]
    names += ["val_accuracy", "val_sensitivity", "val_specificity"]
    for name in names:
        history = client.get_metric_history(run_id, name)
        assert [m.step for m in history] == [1], name  # one value per epoch
        assert history[0].value == pytest.approx(trained["metrics"][name])
    assert math.isfinite(run.data.metrics["test_auc"])


def test_run_artifacts_are_served(trained: dict, tmp_path: Path) -> None:
    client, run_id = trained["client"], trained["run_id"]
    assert {"metrics.json", "config.json"} <= {a.path for a in client.list_artifacts(run_id)}
    local = client.download_artifacts(run_id, "metrics.json", str(tmp_path))
    assert json.loads(Path(local).read_text()) == pytest.approx(trained["metrics"])
    config = json.loads(Path(client.download_artifacts(run_id, "config.json", str(tmp_path))).read_text())
    assert config["registered_model_name"] == REGISTERED and config["epochs"] == 1


def test_best_model_is_logged_and_registered(trained: dict) -> None:
    client, run_id = trained["client"], trained["run_id"]
    versions = client.search_model_versions(f"name='{REGISTERED}'")
    assert [(v.version, v.run_id, v.status) for v in versions] == [("1", run_id, "READY")]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
        model = mlflow.pytorch.load_model(f"models:/{REGISTERED}/1")
    best = torch.load(trained["out"] / BEST_CHECKPOINT, weights_only=True)
    best = best.get("model", best)
    state = model.state_dict()
    assert set(state) == set(best)
    assert all(torch.equal(state[k].cpu(), best[k].cpu()) for k in best)  # the registered model is best.pt
