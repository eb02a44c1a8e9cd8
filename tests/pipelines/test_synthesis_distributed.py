"""Tests of ``SynthesisConfig(distributed=True)``: the launch checks, and real 2-process ``torchrun`` runs (gloo, CPU).

The pairs are the tiny generated PNGs of :mod:`tests.pipelines.test_synthesis_training` (8 training,
2 validation, 2 test); each rank trains on 4 training pairs, 2 batches of 2.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from pipelines.mlflow_tracking import RUN_ID_FILE
from pipelines.synthesis_config import SynthesisConfig
from pipelines.synthesis_training import main, train_synthesis
from tests.pipelines.test_synthesis_training import tiny_config, write_pairs

ROOT = Path(__file__).resolve().parents[2]

# The entry every rank runs: it records which training pairs the rank loads (a first transform,
# not a MONAI ``Transform``, so CacheDataset caches nothing and it runs at every load; it appends
# the source path to seen_rank<RANK>.txt), then hands over to ``pipelines.synthesis_training``.
_ENTRY = """
import faulthandler, os, sys
faulthandler.enable()  # a rank that aborts prints its Python stack to stderr
from pathlib import Path
import torch
torch.set_num_threads(1)
import pipelines.synthesis_training as training
from monai.transforms import Compose

seen = Path(sys.argv[2]) / f"seen_rank{os.environ['RANK']}.txt"
original = training.paired_transforms

def record(item):
    with seen.open("a") as f:
        f.write(str(item["source"]) + "\\n")
    return item

def paired_transforms(spatial_size, training, flip_prob):
    chain = original(spatial_size, training=training, flip_prob=flip_prob)
    return Compose([record, *chain.transforms]) if training else chain

training.paired_transforms = paired_transforms
sys.exit(training.main([sys.argv[1]]))
"""


def _torchrun(config_json: Path, record_dir: Path, timeout: float = 150) -> None:
    """Run the entry under ``torchrun --standalone --nproc_per_node=2``; fail with its stderr unless it exits 0."""
    entry = record_dir / "entry.py"
    entry.write_text(_ENTRY)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [str(entry), str(config_json), str(record_dir)]
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
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
        proc.communicate()
        pytest.fail(f"torchrun did not finish within {timeout} s")
    assert proc.returncode == 0, stderr[-3000:]


def _trainer_state(checkpoint: Path) -> dict:
    return torch.load(checkpoint, weights_only=True)["trainer"]


def test_distributed_needs_a_torchrun_launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    config = tiny_config(tmp_path / "d.json", tmp_path / "out", tmp_path / "mlruns.db", distributed=True,
                         device="cpu")  # fmt: skip
    with pytest.raises(ValueError, match=r"distributed=True needs a torchrun launch \(missing environment"):
        train_synthesis(config)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_config_rejects_non_bool_distributed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"distributed must be a bool, got 'yes'"):
        tiny_config(tmp_path / "d.json", tmp_path / "out", tmp_path / "mlruns.db", distributed="yes")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "expected a JSON object of SynthesisConfig fields"),
        ('{"datalist": "d.json", "out_dir": ".", "epochs": 0}', "epochs must be an int >= 1, got 0"),
        (
            '{"datalist": "d.json", "out_dir": ".", "epoch": 2}',
            r"unknown SynthesisConfig fields: \['epoch'\]",
        ),
        ("{", "Expecting property name"),
    ],
)
def test_entry_refuses_a_bad_config_file(
    tmp_path: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pipelines.synthesis_training: error: {path}: ")
    assert re.search(message, err), err


def test_entry_needs_exactly_one_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2 and main(["a.json", "b.json"]) == 2
    assert "usage: torchrun [...] -m pipelines.synthesis_training CONFIG_JSON" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SynthesisConfig]:
    """``(root, config)``: one epoch under torchrun, 2 ranks; ``root`` holds ``run/``, ``mlruns.db``,
    ``pairs/`` and ``first/seen_rank<R>.txt`` (the training pairs each rank loaded)."""
    root = tmp_path_factory.mktemp("ddp")
    datalist = write_pairs(root / "pairs")
    config = tiny_config(
        datalist, root / "run", root / "mlruns.db", batch_size=2, device="cpu", experiment="ddp"
    )
    (root / "config.json").write_text(json.dumps(config.to_json()))
    (root / "first").mkdir()
    _torchrun(root / "config.json", root / "first")
    return root, config


def _mlflow_steps(uri: str, out: Path, name: str) -> list[int]:
    """The steps of metric ``name`` in the one MLflow run of experiment ``ddp``, which must be ``out``'s."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == (out / RUN_ID_FILE).read_text().strip()
    assert runs[0].data.params["distributed"] == "True"
    return [m.step for m in client.get_metric_history(runs[0].info.run_id, name)]


@pytest.mark.integration
def test_torchrun_two_ranks_split_the_pairs_and_rank0_writes_once(ddp_run: tuple) -> None:
    root, config = ddp_run
    out = root / "run"
    # each rank loaded its own half of the 8 training pairs, none twice
    training = {r["source"] for r in json.loads(Path(config.datalist).read_text())["training"]}
    seen = [(root / "first" / f"seen_rank{r}.txt").read_text().split() for r in (0, 1)]
    assert [len(s) for s in seen] == [4, 4]
    assert not set(seen[0]) & set(seen[1])
    assert {Path(p).name for p in seen[0] + seen[1]} == training

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs_completed"] == 1 and metrics["start_epoch"] == 0
    core = [f"loss_{n}" for n in ("g", "l1", "adv", "d")] + ["best_score", "best_epoch"]
    core += [
        f"{split}_{n}"
        for split in ("val", "test")
        for n in ("ssim", "psnr", "mae", "lesion_ssim", "lesion_mae")
    ]
    assert all(math.isfinite(metrics[name]) for name in core), metrics  # KeyError: a metric is missing
    # the rest may be null where undefined (e.g. a rate over no lesion of its kind), never infinite
    assert all(v is None or math.isfinite(v) for v in metrics.values()), metrics
    for name in ("config.json", "best.pt", "last.pt", "panels/epoch_001.png"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp"))
    assert json.loads((out / "config.json").read_text())["distributed"] is True
    last = torch.load(out / "last.pt", weights_only=True)
    assert set(last) == {"generator", "critic", "opt_g", "opt_d", "trainer", "best"}
    assert last["trainer"]["epoch_length"] == 2  # iterations of one rank's share (4 pairs, batches of 2)
    for network in ("generator", "critic"):  # the unwrapped networks are saved
        assert not any(k.startswith("module.") for k in last[network]), network
    best = torch.load(out / "best.pt", weights_only=True)
    assert set(best) == {"generator"} and not any(k.startswith("module.") for k in best["generator"])
    for name in ("val_ssim", "loss_l1", "best_score"):  # logged by rank 0 alone
        assert _mlflow_steps(config.tracking_uri, out, name) == [1], name


@pytest.mark.integration
@pytest.mark.slow  # a second torchrun launch (~25 s on 2 cores)
def test_torchrun_resumes_on_every_rank(ddp_run: tuple, tmp_path: Path) -> None:
    root, config = ddp_run
    out = tmp_path / "run"  # a copy: the one-epoch run stays as the other test reads it
    shutil.copytree(root / "run", out)
    shutil.copy(root / "mlruns.db", tmp_path / "mlruns.db")
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    resumed = {**config.to_json(), "out_dir": str(out), "tracking_uri": uri, "epochs": 2}
    (tmp_path / "config.json").write_text(json.dumps(resumed))
    _torchrun(tmp_path / "config.json", tmp_path)
    # every rank trained the second epoch on its half (had one started over, the ranks would disagree)
    assert [len((tmp_path / f"seen_rank{r}.txt").read_text().split()) for r in (0, 1)] == [4, 4]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["start_epoch"] == 1 and metrics["epochs_completed"] == 2
    state = _trainer_state(out / "last.pt")
    assert state["iteration"] // state["epoch_length"] == 2
    assert (out / "panels" / "epoch_002.png").is_file()
    for name in ("val_ssim", "loss_l1"):  # the MLflow run continues, one value per epoch
        assert _mlflow_steps(uri, out, name) == [1, 2], name
