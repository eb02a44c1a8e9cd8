"""Tests of networks/translation.py: shapes in 2D and 3D, identity at start, argument checks."""

from __future__ import annotations

import pytest
import torch

from networks.translation import (
    ConditionalPatchDiscriminator,
    ResidualTranslator,
    build_discriminator,
    build_generator,
    generator_stride,
)


@pytest.mark.parametrize(
    ("dims", "shape"),
    [(2, (2, 1, 32, 32)), (2, (1, 1, 16, 24)), (3, (1, 1, 16, 16, 16)), (3, (2, 1, 8, 16, 8))],
)
def test_generator_keeps_shape_and_starts_as_identity(dims: int, shape: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    generator = build_generator(dims, channels=(4, 8, 16))
    x = torch.rand(shape)
    out = generator(x)
    assert isinstance(generator, ResidualTranslator)
    assert out.shape == x.shape
    assert torch.equal(out, x)  # the zero-initialised head adds nothing yet
    assert torch.count_nonzero(generator.delta(x)) == 0


def test_generator_learns_a_change() -> None:
    torch.manual_seed(0)
    generator = build_generator(2, channels=(4, 8))
    x = torch.rand(2, 1, 16, 16)
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.l1_loss(generator(x), x + 0.5).backward()
        optimizer.step()
    assert not torch.equal(generator(x), x)  # gradients reach the head and then the body


@pytest.mark.parametrize(("dims", "side", "layers", "grid"), [(2, 32, 3, 2), (2, 32, 2, 6), (3, 16, 2, 2)])
def test_discriminator_scores_patches(dims: int, side: int, layers: int, grid: int) -> None:
    critic = build_discriminator(dims, channels=4, num_layers_d=layers)
    source = torch.rand((2, 1) + (side,) * dims)
    logits = critic(source, source)
    assert isinstance(critic, ConditionalPatchDiscriminator)
    assert logits.shape == (2, 1) + (grid,) * dims
    # conditioned on the source: another source changes the score of the same image
    assert not torch.allclose(logits, critic(torch.zeros_like(source), source))


def test_generator_stride() -> None:
    assert generator_stride((16, 32, 64, 128)) == 8
    assert generator_stride((4, 8)) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spatial_dims": 1}, r"spatial_dims must be 2 or 3, got 1"),
        ({"spatial_dims": 2, "channels": (8,)}, r"channels must be at least 2 positive ints"),
        ({"spatial_dims": 2, "channels": (8, 0)}, r"channels must be at least 2 positive ints"),
        ({"spatial_dims": 2, "num_res_units": -1}, r"num_res_units must be an int >= 0, got -1"),
    ],
)
def test_generator_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_generator(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spatial_dims": 4}, r"spatial_dims must be 2 or 3, got 4"),
        ({"spatial_dims": 2, "channels": 0}, r"channels must be an int >= 1, got 0"),
        ({"spatial_dims": 2, "num_layers_d": 0}, r"num_layers_d must be an int >= 1, got 0"),
    ],
)
def test_discriminator_rejects_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_discriminator(**kwargs)
