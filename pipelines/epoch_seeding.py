"""Per-epoch seeding of a training run, so that a resumed run repeats what an uninterrupted one does.

A run seeded once at its start (MONAI ``set_determinism``) draws its batch order, its
augmentations and the reparameterisation noise from streams that depend on everything drawn
since that start. A run resumed at epoch ``k`` after a crash starts those streams again from
the seed, so it would train epochs ``k + 1 …`` on other batches and augmentations than the
uninterrupted run. Seeding every stream at the start of each epoch from ``(seed, epoch, rank)``
makes epoch ``k + 1`` the same whichever way the run got there.

This holds for data loaded in the training process (``num_workers=0``, the default). With
worker processes the loader draws the workers' seeds, and starts drawing indices, when Ignite
creates the epoch's iterator — at the end of the previous epoch, before this module reseeds —
so a resumed run may then see other batches and augmentations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data.utils import set_rnd
from monai.utils import set_determinism

__all__ = ["epoch_seed", "seed_epoch", "attach_epoch_seeding"]


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one epoch of one process, mixed from its parts (NumPy ``SeedSequence``).

    Args:
        seed: the run's seed (``TrainConfig.seed``).
        epoch: the epoch, counted from 1 as Ignite does.
        rank: the process rank under ``torchrun`` (0 otherwise): each rank augments differently.

    Returns:
        A seed in ``[0, 2**32)``.

    Raises:
        ValueError: a negative part.

    Example:
        >>> epoch_seed(0, 1) == epoch_seed(0, 1), epoch_seed(0, 1) == epoch_seed(0, 2)
        (True, False)
    """
    for name, value in (("seed", seed), ("epoch", epoch), ("rank", rank)):
        if int(value) < 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    return int(np.random.SeedSequence([int(seed), int(epoch), int(rank)]).generate_state(1)[0])


def seed_epoch(loader: Any, seed: int, epoch: int, rank: int = 0) -> int:
    """Seed every random stream one training epoch draws from.

    The global torch/NumPy/``random`` generators (batch order of a plain shuffle, the
    reparameterisation noise), the MONAI random transforms of ``loader.dataset`` and the
    sampler's own generator when it has one (the labelled-share samplers).

    Args:
        loader: the training data loader.
        seed: the run's seed.
        epoch: the epoch about to start (from 1).
        rank: the process rank.

    Returns:
        The seed used.
    """
    value = epoch_seed(seed, epoch, rank)
    set_determinism(seed=value)
    set_rnd(loader.dataset, value)
    generator = getattr(loader.sampler, "generator", None)
    if isinstance(generator, torch.Generator):
        generator.manual_seed(value)
    return value


def attach_epoch_seeding(trainer: Engine, loader: Any, seed: int, rank: int = 0) -> None:
    """Call :func:`seed_epoch` at the start of every epoch of ``trainer``.

    Args:
        trainer: the Ignite trainer.
        loader: its training data loader.
        seed: the run's seed.
        rank: the process rank.
    """
    trainer.add_event_handler(
        Events.EPOCH_STARTED, lambda engine: seed_epoch(loader, seed, engine.state.epoch, rank)
    )
