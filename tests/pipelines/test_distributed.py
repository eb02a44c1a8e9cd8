"""Tests of pipelines/distributed.py: the launch checks, and a real 2-process ``torchrun`` run (gloo, CPU)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from phantoms.brain_cohort import PhantomConfig, generate_cohort
from pipelines.distributed import DistContext, make_sampler, wrap_ddp
from pipelines.mlflow_tracking import RUN_ID_FILE
from pipelines.training import train
from pipelines.training_config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
TINY = {"spatial_size": (32, 32), "size": "tiny", "latent_dim": 8}

# The entry every rank runs: it records which training images the rank loads (a first transform
# appending the image path to seen_rank<RANK>.txt), then hands over to ``pipelines.distributed``.
_ENTRY = """
import faulthandler, os, sys
faulthandler.enable()  # a rank that aborts prints its Python stack to stderr
from pathlib import Path
import torch
torch.set_num_threads(1)
import pipelines.training as training
from monai.transforms import Compose
from pipelines.distributed import main

seen = Path(sys.argv[2]) / f"seen_rank{os.environ['RANK']}.txt"
original = training.build_transforms

def record(item):
    with seen.open("a") as f:
        f.write(str(item["image"]) + "\\n")
    return item

def build_transforms(config, is_training):
    chain = original(config, is_training)
    return Compose([record, *chain.transforms]) if is_training else chain

training.build_transforms = build_transforms
sys.exit(main([sys.argv[1]]))
"""


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_distributed_needs_a_torchrun_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    config = TrainConfig(
        datalist=tmp_path / "d.json", out_dir=tmp_path / "out", distributed=True, device="cpu"
    )
    with pytest.raises(ValueError, match=r"distributed=True needs a torchrun launch \(missing environment"):
        train(config)


def test_config_rejects_non_bool_distributed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"distributed must be a bool, got 'yes'"):
        TrainConfig(datalist=tmp_path / "d.json", out_dir=tmp_path / "out", distributed="yes")


def test_single_process_context_changes_nothing() -> None:
    ctx = DistContext.single(torch.device("cpu"))
    net = torch.nn.Linear(2, 2)
    assert ctx.is_main and not ctx.distributed
    assert wrap_ddp(net, ctx, find_unused_parameters=False) is net
    assert make_sampler(list(range(5)), ctx, training=True, seed=0) is None


@pytest.mark.integration
def test_torchrun_two_ranks_split_the_data_and_log_once(tmp_path: Path) -> None:
    generate_cohort(PhantomConfig(kind="brain2d", n=40, seed=0, size=32), tmp_path, progress=False)
    data = json.loads((tmp_path / "datalist.json").read_text())
    data["validation"].append(data["test"].pop())  # 5 validation images: 3 + 2, uneven batch counts
    (tmp_path / "uneven.json").write_text(json.dumps(data))
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    out = tmp_path / "run"
    config = TrainConfig(
        datalist=tmp_path / "uneven.json",
        out_dir=out,
        mode="classify",
        epochs=1,
        batch_size=2,
        device="cpu",
        tracking_uri=uri,
        experiment="ddp",
        **TINY,
    )
    (tmp_path / "config.json").write_text(json.dumps(config.to_json()))
    (tmp_path / "entry.py").write_text(_ENTRY)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [str(tmp_path / "entry.py"), str(tmp_path / "config.json"), str(tmp_path)]
    proc = subprocess.Popen(
        command,
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
        proc.communicate()
        pytest.fail("torchrun did not finish within 150 s")
    assert proc.returncode == 0, stderr[-3000:]

    # each rank loaded its own half of the 28 training images, none twice
    training = {r["image"] for r in data["training"]}
    seen = [(tmp_path / f"seen_rank{r}.txt").read_text().split() for r in (0, 1)]
    share = math.ceil(len(training) / 2)
    assert [len(s) for s in seen] == [share, share]
    assert not set(seen[0]) & set(seen[1])
    assert {Path(p).name for p in seen[0] + seen[1]} == {Path(p).name for p in training}

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_completed"] == 1
    assert all(math.isfinite(v) for v in metrics.values())
    assert {"val_auc", "val_recon_ssim", "test_auc", "train_kl_dim_07"} <= set(metrics)
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["trainer"]["epoch_length"] == math.ceil(share / 2)  # iterations of one rank's share
    assert not any(k.startswith("module.") for k in last["model"])  # the unwrapped model is saved

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ddp")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == (out / RUN_ID_FILE).read_text().strip()
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "val_auc")] == [1]
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "train_loss")] == [1]
