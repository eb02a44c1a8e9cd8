"""Tests for pipelines.sampling: labelled records get their share of the training draws."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import WeightedRandomSampler

from pipelines.distributed import DistContext
from pipelines.sampling import labelled_share_sampler, labelled_share_weights

LABELS = [1, 0] + [-1] * 18  # 10 % labelled


def test_weights_give_the_labelled_records_the_share():
    weights = labelled_share_weights(LABELS, share=0.5)
    assert weights is not None and len(weights) == len(LABELS)
    assert sum(weights) == pytest.approx(1.0)
    assert sum(w for w, label in zip(weights, LABELS, strict=True) if label != -1) == pytest.approx(0.5)
    assert weights[0] == weights[1] and weights[2] == weights[-1] and weights[0] > weights[2]


@pytest.mark.parametrize(
    "labels, share",
    [
        (LABELS, 0.0),  # turned off
        ([-1, -1, -1], 0.5),  # nothing labelled
        ([0, 1, 1], 0.5),  # nothing unlabelled
        ([0, 1, -1, -1], 0.5),  # already half labelled
    ],
)
def test_no_weights_when_plain_shuffling_already_does_it(labels, share):
    assert labelled_share_weights(labels, share) is None


@pytest.mark.parametrize("share", [-0.1, 1.0, 1.5, True, "0.5"])
def test_share_outside_the_range_is_refused(share):
    with pytest.raises(ValueError, match="labelled_share"):
        labelled_share_weights(LABELS, share)


def test_single_process_sampler_draws_about_the_share_of_labelled_records():
    labels = [1, 0] * 10 + [-1] * 180  # 10 % labelled
    ctx = DistContext.single(torch.device("cpu"))
    sampler = labelled_share_sampler(list(range(len(labels))), labels, 0.5, ctx, seed=0)
    assert isinstance(sampler, WeightedRandomSampler)
    drawn = [labels[i] for _ in range(5) for i in sampler]  # five epochs
    assert len(drawn) == 5 * len(labels)
    share = sum(1 for label in drawn if label != -1) / len(drawn)
    assert 0.45 < share < 0.55  # plain shuffling gives 0.10


def test_distributed_sampler_splits_the_draws_between_ranks():
    labels = [1, 0] * 10 + [-1] * 180
    dataset = list(range(len(labels)))
    drawn = []
    for rank in (0, 1):
        ctx = DistContext(
            rank=rank, world_size=2, local_rank=rank, device=torch.device("cpu"), distributed=True
        )
        sampler = labelled_share_sampler(dataset, labels, 0.5, ctx, seed=0)
        indices = list(sampler)
        assert len(indices) == len(labels) // 2
        drawn += [labels[i] for i in indices]
    share = sum(1 for label in drawn if label != -1) / len(drawn)
    assert 0.4 < share < 0.6


def test_sampler_is_none_without_unlabelled_records_and_checks_lengths():
    ctx = DistContext.single(torch.device("cpu"))
    assert labelled_share_sampler([0, 1, 2], [0, 1, 1], 0.5, ctx, seed=0) is None
    with pytest.raises(ValueError, match="3 records"):
        labelled_share_sampler([0, 1, 2], [0, 1], 0.5, ctx, seed=0)


def test_training_loader_uses_the_sampler_only_for_semi_supervised_classification(tmp_path):
    from pipelines.training import _loader
    from pipelines.training_config import TrainConfig

    ctx = DistContext.single(torch.device("cpu"))
    records = [{"image": f"x{i}.png", "label": label} for i, label in enumerate(LABELS)]
    common = {"datalist": tmp_path / "d.json", "out_dir": tmp_path, "intensity_range": (0.0, 1.0)}
    common["cache_rate"] = 0.0  # the images do not exist: nothing may be loaded here
    config = TrainConfig(**common)
    assert isinstance(_loader(config, records, True, ctx).sampler, WeightedRandomSampler)
    assert not isinstance(_loader(config, records, False, ctx).sampler, WeightedRandomSampler)  # evaluation
    plain = TrainConfig(**common, labelled_share=0.0)
    assert not isinstance(_loader(plain, records, True, ctx).sampler, WeightedRandomSampler)
    pretrain = TrainConfig(**common, mode="pretrain")
    assert not isinstance(_loader(pretrain, records, True, ctx).sampler, WeightedRandomSampler)
