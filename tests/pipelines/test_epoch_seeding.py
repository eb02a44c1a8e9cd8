import pytest
import torch
from monai.data import Dataset
from monai.transforms import Compose, RandGaussianNoise
from torch.utils.data import DataLoader, WeightedRandomSampler

from pipelines.epoch_seeding import epoch_seed, seed_epoch


def test_epoch_seed_depends_on_each_part_and_rejects_negatives():
    seeds = {epoch_seed(s, e, r) for s in (0, 1) for e in (1, 2, 3) for r in (0, 1)}
    assert len(seeds) == 12 and all(0 <= s < 2**32 for s in seeds)
    assert epoch_seed(5, 2, 1) == epoch_seed(5, 2, 1)
    with pytest.raises(ValueError, match="epoch must be >= 0, got -1"):
        epoch_seed(0, -1)


def _draws(loader: DataLoader, epoch: int) -> tuple[list[int], torch.Tensor, torch.Tensor]:
    """What one epoch draws: the sampler's order, a transform's noise, the global torch RNG."""
    seed_epoch(loader, seed=3, epoch=epoch)
    order = list(loader.sampler)
    noise = loader.dataset[0]
    return order, noise, torch.rand(3)


def test_seed_epoch_repeats_an_epoch_whatever_was_drawn_before():
    dataset = Dataset([torch.zeros(1, 4, 4)] * 6, transform=Compose([RandGaussianNoise(prob=1.0)]))
    sampler = WeightedRandomSampler([1.0] * 6, 6, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(dataset, sampler=sampler)
    first = _draws(loader, epoch=2)
    _draws(loader, epoch=1)  # other draws in between, as epoch 1 of an uninterrupted run
    torch.rand(100)
    again = _draws(loader, epoch=2)
    assert first[0] == again[0]
    assert torch.equal(torch.as_tensor(first[1]), torch.as_tensor(again[1]))
    assert torch.equal(first[2], again[2])
    other = _draws(loader, epoch=3)
    assert not torch.equal(torch.as_tensor(first[1]), torch.as_tensor(other[1]))
