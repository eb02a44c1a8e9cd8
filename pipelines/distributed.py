"""Data-parallel training under ``torchrun`` (MONAI's ``multi_gpu_train`` pattern), thin over ``torch.distributed``.

One process per device: the process group comes from torchrun's ``env://`` variables (gloo on
the CPU, nccl on CUDA), training batches from a ``DistributedSampler``, validation batches from
MONAI's ``DistributedSampler(even_divisible=False)`` (MONAI's metrics all-gather across ranks),
and the model is wrapped in ``DistributedDataParallel``. Only rank 0 writes files, prints and
talks to MLflow.

Run (every rank reads the same config JSON, e.g. a run's ``config.json``)::

    torchrun --standalone --nproc_per_node=2 -m pipelines.distributed config.json

Example:
    >>> ctx = DistContext.single(torch.device("cpu"))
    >>> ctx.is_main, ctx.world_size
    (True, 1)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from ignite import distributed as idist
from monai.data import DistributedSampler
from torch.utils.data import Dataset, Sampler

__all__ = [
    "DistContext",
    "init_distributed",
    "cleanup_distributed",
    "wrap_ddp",
    "make_sampler",
    "barrier",
    "main",
]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run.

    Args:
        rank: global rank.
        world_size: number of processes.
        local_rank: rank on this machine (the CUDA device index).
        device: this process's device.
        distributed: a process group is in use.
        owns_group: this run created the process group (and destroys it at the end).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    distributed: bool = False
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, metrics, MLflow and prints."""
        return self.rank == 0

    @classmethod
    def single(cls, device: torch.device) -> DistContext:
        """The context of an ordinary single-process run."""
        return cls(rank=0, world_size=1, local_rank=0, device=device)


def _pick_device(preference: str) -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group torchrun set up (or reuse one already initialised).

    Args:
        device: ``"cpu"`` (gloo), ``"cuda"`` (nccl, device ``cuda:<LOCAL_RANK>``) or ``"auto"``.

    Returns:
        This process's :class:`DistContext`.

    Raises:
        ValueError: not launched by torchrun (its environment variables are missing), or
            ``device="cuda"`` without CUDA.
    """
    chosen = _pick_device(device)
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("distributed training on device 'cuda' needs CUDA, which is not available")
    owns = False
    if not dist.is_initialized():
        missing = [name for name in _TORCHRUN_VARS if name not in os.environ]
        if missing:
            raise ValueError(
                f"distributed=True needs a torchrun launch (missing environment variables {missing}); "
                "run e.g. `torchrun --standalone --nproc_per_node=2 -m pipelines.distributed config.json`"
            )
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo", init_method="env://")
        owns = True
    # Ignite (metrics, Checkpoint) adopts the process group lazily with a collective call on its
    # first rank query; make every rank do it now, not only the rank that first asks (rank 0's saver)
    idist.sync()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        device=chosen,
        distributed=True,
        owns_group=owns,
    )


def cleanup_distributed(ctx: DistContext) -> None:
    """Destroy the process group if this run created it (and return Ignite to single-process mode)."""
    if ctx.owns_group and dist.is_initialized():
        idist.finalize()  # destroys the group Ignite adopted
        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op in a single-process run)."""
    if ctx.distributed:
        dist.barrier()


def wrap_ddp(network: torch.nn.Module, ctx: DistContext, find_unused_parameters: bool) -> torch.nn.Module:
    """``DistributedDataParallel(network)`` in a distributed run, else ``network``.

    Args:
        network: the model, already on ``ctx.device``.
        ctx: the run's context.
        find_unused_parameters: needed when some trainable parameters get no gradient
            (the classifier head in ``pretrain`` mode).

    Returns:
        The module the engines call.
    """
    if not ctx.distributed:
        return network
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        network, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def make_sampler(dataset: Dataset, ctx: DistContext, training: bool, seed: int) -> Sampler | None:
    """The data sampler of one rank (``None`` in a single-process run).

    Training: every rank gets an equal share, shuffled each epoch (MONAI's workflow calls
    ``set_epoch``); short shares are padded by repeating samples. Evaluation: MONAI's
    ``DistributedSampler(even_divisible=False)``, no sample repeated, so the all-gathered metrics
    cover each sample once.

    Args:
        dataset: the dataset to split.
        ctx: the run's context.
        training: shuffle and pad (training) or split in order (evaluation).
        seed: shuffling seed (the same on every rank).

    Returns:
        A sampler, or ``None``.

    Raises:
        ValueError: fewer samples than ranks (a rank would get no batch).
    """
    if not ctx.distributed:
        return None
    if len(dataset) < ctx.world_size:
        raise ValueError(
            f"{len(dataset)} samples cannot be split over {ctx.world_size} ranks (each needs at least one)"
        )
    return DistributedSampler(
        dataset,
        even_divisible=training,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=training,
        seed=seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry of ``torchrun ... -m pipelines.distributed CONFIG_JSON``: train with ``distributed=True``.

    Args:
        argv: ``[config_json]`` (default: ``sys.argv[1:]``); the JSON holds :class:`TrainConfig` fields.

    Returns:
        0 on success, 2 for a bad argument.
    """
    from pipelines.training import train
    from pipelines.training_config import TrainConfig

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: torchrun [...] -m pipelines.distributed CONFIG_JSON", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object of TrainConfig fields")
        config = TrainConfig.from_json({**data, "distributed": True}, base=path.parent)
    except (OSError, ValueError) as err:
        print(f"pipelines.distributed: error: {path}: {err}", file=sys.stderr)
        return 2
    train(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
