"""Training-batch sampling for semi-supervised runs: give the few labelled records a set share.

With 10 % of the labels and plain shuffling, a batch of 16 carries 1.6 labelled images on
average and many batches carry none, so the cross-entropy sees each labelled image once per
epoch while the reconstruction sees everything. ``labelled_share`` draws records with
replacement (torch's ``WeightedRandomSampler``, MONAI's ``DistributedWeightedRandomSampler``
under torchrun) so that on average that share of every batch carries a label; the epoch keeps
its length (one draw per training record).

Example:
    >>> labelled_share_weights([1, -1, -1, -1], share=0.5)
    [0.5, 0.16666666666666666, 0.16666666666666666, 0.16666666666666666]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import DistributedWeightedRandomSampler
from torch.utils.data import Dataset, Sampler, WeightedRandomSampler

from pipelines.datalists import UNLABELLED
from pipelines.distributed import DistContext

__all__ = ["labelled_share_weights", "labelled_share_sampler"]


def labelled_share_weights(labels: Sequence[int], share: float) -> list[float] | None:
    """Per-record sampling weights that give the labelled records ``share`` of the draws.

    Args:
        labels: one label per training record, ``-1`` for unlabelled.
        share: wanted fraction in ``[0, 1)`` of draws that carry a label; 0 turns it off.

    Returns:
        The weights (summing to 1), or ``None`` when plain shuffling already does it: ``share``
        0, no labelled or no unlabelled record, or labelled records already at least ``share``
        of the data.

    Raises:
        ValueError: ``share`` outside ``[0, 1)``.
    """
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share < 1.0:
        raise ValueError(f"labelled_share must be a number in [0, 1), got {share!r}")
    n_labelled = sum(1 for label in labels if int(label) != UNLABELLED)
    n_unlabelled = len(labels) - n_labelled
    if share == 0 or n_labelled == 0 or n_unlabelled == 0 or n_labelled / len(labels) >= share:
        return None
    w_labelled, w_unlabelled = share / n_labelled, (1.0 - share) / n_unlabelled
    return [w_labelled if int(label) != UNLABELLED else w_unlabelled for label in labels]


def labelled_share_sampler(
    dataset: Dataset, labels: Sequence[int], share: float, ctx: DistContext, seed: int
) -> Sampler | None:
    """The training sampler that gives labelled records ``share`` of each epoch's draws.

    Args:
        dataset: the training dataset (one item per entry of ``labels``).
        labels: the records' labels, ``-1`` for unlabelled.
        share: see :func:`labelled_share_weights`.
        ctx: the run's distributed context (MONAI's distributed sampler under torchrun).
        seed: seed of the draws.

    Returns:
        A sampler, or ``None`` when :func:`labelled_share_weights` returns ``None``.

    Raises:
        ValueError: ``share`` outside ``[0, 1)``, or ``labels`` and ``dataset`` of different lengths.
    """
    if len(labels) != len(dataset):
        raise ValueError(f"labels has {len(labels)} entries for a dataset of {len(dataset)} records")
    weights = labelled_share_weights(labels, share)
    if weights is None:
        return None
    generator = torch.Generator().manual_seed(int(seed))
    if ctx.distributed:
        return DistributedWeightedRandomSampler(
            dataset,
            weights,
            generator=generator,
            num_replicas=ctx.world_size,
            rank=ctx.rank,
            seed=seed,
        )
    return WeightedRandomSampler(weights, num_samples=len(weights), replacement=True, generator=generator)
