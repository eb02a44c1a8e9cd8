"""Synthetic minority-class images for a classification run (``TrainConfig.synthetic_minority``).

A label-scarce, imbalanced training set shows the classifier a handful of minority-class images.
:func:`prepare_synthetic_minority` draws extra images of that class from a generator run (the
class's learnt Gaussian over the aggregate posterior, :mod:`pipelines.generation`) once before
training and writes them into the run folder (``out_dir/synthetic_minority``: images, latent
codes, a datalist whose records are marked ``synthetic``); validation and test stay real.

``synthetic_minority`` means one of two things:

* a **share** ``R`` in ``(0, 1)``: every training batch holds ``R × batch_size`` synthetic images
  (:class:`SyntheticShareSampler`: ``floor`` of it, plus one more with the fractional part's
  probability, so the mean share is exact); the real images fill the rest, drawn as the run would
  draw them without synthetic images (the labelled-share weights of :mod:`pipelines.sampling`,
  else without replacement), and an epoch holds as many real draws as there are real records.
  The pool holds one epoch's synthetic draws, so each synthetic image is seen about once per epoch.
* a **count** ``N >= 1``: ``N`` synthetic images are appended to the training records and sampled
  like the real ones.

torch's ``WeightedRandomSampler`` (or MONAI's distributed twin) gives a share only on average:
with a batch of 16 and ``R = 0.25`` a batch would hold anywhere from 0 to 9 synthetic images.
The share sampler is written here because no torch/MONAI sampler fixes per-batch composition
across two pools; it yields single indices laid out batch by batch, so the plain ``DataLoader``
(``batch_size``, no shuffle) forms exactly those batches and :mod:`pipelines.epoch_seeding`
reseeds it through its ``generator`` like the labelled-share samplers.

Example:
    >>> minority_class([0, 0, 0, 1, -1], num_classes=2)
    1
    >>> synthetic_pool_size(0.25, n_real=30, batch_size=8)
    10
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Sampler

from pipelines.datalists import UNLABELLED, load_datalist
from pipelines.distributed import DistContext, barrier
from pipelines.generation import fit_prior, generate
from pipelines.sampling import labelled_share_weights
from pipelines.trained_model import load_trained_model
from pipelines.training_config import TrainConfig
from transforms.keys import Keys

__all__ = [
    "SYNTHETIC_DIR",
    "SyntheticMinority",
    "SyntheticShareSampler",
    "minority_class",
    "share_batches",
    "synthetic_pool_size",
    "prepare_synthetic_minority",
    "synthetic_share_sampler",
]

SYNTHETIC_DIR = "synthetic_minority"
"""Folder of a run's synthetic minority images (``medglass generate`` output)."""

_UINT16_MAX = 65535


def minority_class(labels: Sequence[int], num_classes: int) -> int:
    """The class with the fewest labelled records (ties: the higher class, the finding in a binary task).

    Args:
        labels: training labels, ``-1`` for unlabelled.
        num_classes: the classifier's classes.

    Returns:
        The minority class in ``[0, num_classes)``.

    Raises:
        ValueError: ``num_classes < 1``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    counts = [0] * num_classes
    for label in labels:
        if int(label) != UNLABELLED and 0 <= int(label) < num_classes:
            counts[int(label)] += 1
    return min(range(num_classes), key=lambda c: (counts[c], -c))


def share_batches(n_real: int, batch_size: int, share: float, world_size: int = 1) -> int:
    """Batches of one epoch of one rank with ``share`` synthetic: as many real draws as real records.

    Args:
        n_real: real training records.
        batch_size: images per batch.
        share: synthetic share in ``(0, 1)``.
        world_size: ranks under torchrun (each draws its share of the real records).

    Returns:
        ``ceil(ceil(n_real / world_size) / (batch_size × (1 - share)))``, at least 1.
    """
    per_rank = math.ceil(n_real / world_size)
    return max(1, math.ceil(per_rank / (batch_size * (1.0 - share))))


def synthetic_pool_size(share: float, n_real: int, batch_size: int, world_size: int = 1) -> int:
    """How many synthetic images to generate: the count itself, or one epoch's synthetic draws of every rank.

    Args:
        share: ``synthetic_minority`` (a share in ``(0, 1)`` or a count ``>= 1``).
        n_real: real training records.
        batch_size: images per batch.
        world_size: ranks under torchrun.

    Returns:
        The number of images to draw from the generator (at least 1).
    """
    if share >= 1:
        return int(share)
    batches = share_batches(n_real, batch_size, share, world_size)
    return max(1, math.ceil(batches * world_size * batch_size * share))


class SyntheticShareSampler(Sampler[int]):
    """Training indices laid out batch by batch, each batch holding a set share of synthetic records.

    Args:
        n_real: real records, indices ``[0, n_real)`` of the dataset.
        n_synthetic: synthetic records, indices ``[n_real, n_real + n_synthetic)``.
        share: synthetic share of each batch, in ``(0, 1)``.
        batch_size: images per batch (the ``DataLoader``'s, which must not shuffle).
        num_batches: batches per epoch.
        real_weights: sampling weights of the real records (drawn with replacement), e.g. the
            labelled-share weights; ``None``: without replacement, a new permutation whenever
            one is used up.
        generator: the random generator (:mod:`pipelines.epoch_seeding` reseeds it every epoch).

    Raises:
        ValueError: a count below 1, ``share`` outside ``(0, 1)`` or weights of the wrong length.

    Example:
        >>> sampler = SyntheticShareSampler(12, 4, 0.25, batch_size=4, num_batches=4)
        >>> batches = [list(sampler)[i : i + 4] for i in range(0, 16, 4)]
        >>> [sum(i >= 12 for i in b) for b in batches]
        [1, 1, 1, 1]
    """

    def __init__(
        self,
        n_real: int,
        n_synthetic: int,
        share: float,
        batch_size: int,
        num_batches: int,
        real_weights: Sequence[float] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        for name, value in (
            ("n_real", n_real),
            ("n_synthetic", n_synthetic),
            ("batch_size", batch_size),
            ("num_batches", num_batches),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < share < 1.0:
            raise ValueError(f"share must be a number in (0, 1), got {share!r}")
        if real_weights is not None and len(real_weights) != n_real:
            raise ValueError(f"real_weights has {len(real_weights)} entries for {n_real} real records")
        self.n_real, self.n_synthetic = n_real, n_synthetic
        self.share, self.batch_size, self.num_batches = float(share), batch_size, num_batches
        self.real_weights = (
            None if real_weights is None else torch.as_tensor(real_weights, dtype=torch.double)
        )
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def _cycled(self, n: int, count: int) -> torch.Tensor:
        """``count`` indices of ``[0, n)``: permutations joined end to end."""
        rounds = math.ceil(count / n)
        return torch.cat([torch.randperm(n, generator=self.generator) for _ in range(rounds)])[:count]

    def __iter__(self) -> Iterator[int]:
        whole = math.floor(self.share * self.batch_size)
        extra = torch.rand(self.num_batches, generator=self.generator) < self.share * self.batch_size - whole
        per_batch = [min(self.batch_size, whole + int(e)) for e in extra]
        n_syn = sum(per_batch)
        n_real = self.num_batches * self.batch_size - n_syn
        if self.real_weights is None:
            real = self._cycled(self.n_real, n_real) if n_real else torch.zeros(0, dtype=torch.long)
        else:
            real = torch.multinomial(self.real_weights, n_real, replacement=True, generator=self.generator)
        synthetic = self.n_real + self._cycled(self.n_synthetic, n_syn) if n_syn else real[:0]
        r = s = 0
        for k in per_batch:
            batch = torch.cat([real[r : r + self.batch_size - k], synthetic[s : s + k]])
            r, s = r + self.batch_size - k, s + k
            yield from batch[torch.randperm(len(batch), generator=self.generator)].tolist()


def synthetic_share_sampler(
    labels: Sequence[int], n_synthetic: int, config: TrainConfig, ctx: DistContext
) -> SyntheticShareSampler:
    """The training sampler of a run with ``0 < synthetic_minority < 1``.

    Args:
        labels: labels of every training record, real first, then the ``n_synthetic`` synthetic ones.
        n_synthetic: synthetic records at the end of ``labels``.
        config: the run's settings (``synthetic_minority``, ``labelled_share``, ``batch_size``, ``seed``).
        ctx: the run's distributed context (each rank draws its own batches).

    Returns:
        A :class:`SyntheticShareSampler`.

    Raises:
        ValueError: no real or no synthetic record.
    """
    n_real = len(labels) - n_synthetic
    if n_real < 1 or n_synthetic < 1:
        raise ValueError(
            f"synthetic_minority needs real and synthetic records, got {n_real} and {n_synthetic}"
        )
    return SyntheticShareSampler(
        n_real,
        n_synthetic,
        float(config.synthetic_minority),
        config.batch_size,
        share_batches(n_real, config.batch_size, float(config.synthetic_minority), ctx.world_size),
        real_weights=labelled_share_weights(labels[:n_real], config.labelled_share),
        generator=torch.Generator().manual_seed(int(config.seed) + ctx.rank),
    )


@dataclass
class SyntheticMinority:
    """The synthetic images of one run.

    Attributes:
        records: their datalist records (absolute ``image`` paths, ``label``, ``"synthetic": true``, latent).
        cls: the minority class they were drawn for.
        out_dir: the folder holding them and their ``datalist.json``/``generation.json``.
        summary: what :func:`pipelines.generation.generate` reported.
    """

    records: list[dict[str, Any]]
    cls: int
    out_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)


def prepare_synthetic_minority(
    config: TrainConfig, train_records: Sequence[dict], ctx: DistContext
) -> SyntheticMinority:
    """Draw the run's synthetic minority images into ``out_dir/synthetic_minority`` (rank 0) and read them.

    Args:
        config: the run's settings (``synthetic_minority > 0`` and ``generator``).
        train_records: the real training records after label masking (they pick the minority class).
        ctx: the run's distributed context (rank 0 generates, every rank reads).

    Returns:
        The :class:`SyntheticMinority`.

    Raises:
        ValueError: ``synthetic_minority`` is 0, the generator cannot be loaded, has no decoder,
            or its latent prior has no Gaussian of the minority class; the message names the
            generator.
    """
    share = float(config.synthetic_minority)
    if share <= 0 or config.generator is None:
        raise ValueError(f"synthetic_minority must be > 0 with a generator, got {share!r}")
    labels = [int(r.get(Keys.LABEL, UNLABELLED)) for r in train_records]
    cls = minority_class(labels, config.num_classes)
    n = synthetic_pool_size(share, len(train_records), config.batch_size, ctx.world_size)
    out = Path(config.out_dir) / SYNTHETIC_DIR
    summary: dict[str, Any] = {}
    if ctx.is_main:
        trained = load_trained_model(config.generator, device=ctx.device)
        prior = fit_prior(trained)  # refuses a model without a decoder; fits and caches a missing prior
        if cls not in prior["classes"]:
            raise ValueError(
                f"generator {config.generator}: its latent prior has no Gaussian of the minority class {cls} "
                f"(classes {prior['classes']}: a class needs 2 labelled images among the {prior['images']} training "
                "images of the generator's datalist its prior was fitted on)"
            )
        span = trained.intensity_range
        flat = len(trained.spatial_size) == 2 and (span is None or (span[0] >= 0 and span[1] <= _UINT16_MAX))
        summary = generate(
            trained, out, n=n, cls=cls, seed=int(config.seed), image_format="png" if flat else "nifti"
        )
    barrier(ctx)  # the images are written before any rank reads them
    datalist = out / "datalist.json"
    records = load_datalist(datalist, "training") + load_datalist(datalist, "validation", required=False)
    return SyntheticMinority(records=records, cls=cls, out_dir=out, summary=summary)
