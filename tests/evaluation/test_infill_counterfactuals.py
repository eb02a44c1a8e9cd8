import pytest
import torch
from torch import nn

from evaluation.infill_counterfactuals import InfillCounterfactual, infill_counterfactual, window_masks
from evaluation.map_scores import pointing_game
from evaluation.saliency_maps import infill_map


class SpotDetector(nn.Module):
    """Known answer: class 1 when the brightest pixel exceeds 0.5; the 'reconstruction' has no spots.

    The reconstruction is a flat background: infilling a region with it removes whatever bright
    spot the region holds, and nothing else changes the decision.
    """

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        peak = torch.flatten(x, 1).amax(dim=1)
        logit = 20.0 * (peak - 0.5)
        return {"recon": torch.full_like(x, 0.1), "logits": torch.stack([-logit, logit], dim=1)}


def _spot_image(spatial=(32, 32), corner=(20, 9), edge=3) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.full((1, 1, *spatial), 0.1) + 0.05 * torch.rand(1, 1, *spatial)
    spot = torch.zeros(spatial, dtype=torch.bool)
    spot[tuple(slice(c, c + edge) for c in corner)] = True
    image[0, 0][spot] = 0.9
    return image, spot


def test_window_masks_cover_the_image_and_respect_within():
    masks = window_masks((10, 10), 4, 4)  # starts 0, 4 and the flush 6
    assert masks.shape == (9, 1, 10, 10) and bool((masks.sum(0) >= 1).all())
    inside = torch.zeros(10, 10, dtype=torch.bool)
    inside[:6, :6] = True
    kept = window_masks((10, 10), 4, 2, within=inside)
    assert len(kept) == 4 and not bool(kept[:, 0][:, ~inside].any())
    assert window_masks((3, 3, 3), 8, 4).shape == (1, 1, 3, 3, 3)  # a window larger than the image is clipped
    with pytest.raises(ValueError, match="window and stride must be >= 1, got window=0"):
        window_masks((8, 8), 0, 1)


@pytest.mark.parametrize("spatial, corner", [((32, 32), (20, 9)), ((16, 16, 16), (3, 10, 6))])
def test_the_counterfactual_removes_exactly_the_evidence_and_the_map_points_at_it(spatial, corner):
    torch.manual_seed(0)
    image, spot = _spot_image(spatial, corner)
    result = infill_counterfactual(SpotDetector(), image, window=8, stride=4)
    assert isinstance(result, InfillCounterfactual)
    assert result.prob > 0.99 and result.final_prob < 0.01 and result.flipped
    assert bool(result.region[spot].all())  # the whole spot is infilled ...
    assert result.region_fraction < 0.1  # ... by a small region (the fine pass shrinks it)
    assert float(result.counterfactual[0][spot].max()) == pytest.approx(0.1)
    outside = ~result.region
    assert torch.equal(result.counterfactual[0][outside], image[0, 0][outside])  # unchanged elsewhere
    saliency = infill_map(result)
    assert pointing_game(saliency, spot)  # strictly inside the spot
    assert torch.equal(result.diff_map, result.counterfactual - result.image)


def test_an_image_without_evidence_to_remove_is_reported_not_flipped():
    image = torch.full((1, 1, 16, 16), 0.9)  # bright everywhere: no small region removes it
    result = infill_counterfactual(SpotDetector(), image, window=4, stride=4, max_windows=3)
    assert not result.flipped and result.final_prob > 0.5
    assert result.windows == 3 and result.region_fraction == pytest.approx(3 * 16 / 256)


def test_a_negative_moves_towards_the_positive_side():
    # the flat reconstruction holds no spot: nothing moves a negative over, and it says so
    image = torch.full((1, 1, 16, 16), 0.1)
    result = infill_counterfactual(SpotDetector(), image, window=8, stride=8)
    assert result.prob < 0.5 and not result.flipped


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"image": torch.rand(2, 1, 8, 8)}, ValueError, r"image must have shape \(1, C, \*spatial\)"),
        ({"image": [[0.0]]}, TypeError, "image must be a torch.Tensor, got list"),
        ({"threshold": 1.0}, ValueError, r"threshold must be in \(0, 1\), got 1.0"),
        ({"window": 0}, ValueError, "window must be an int >= 1, got 0"),
        ({"fine_window": 2.5}, ValueError, "fine_window must be None or an int >= 1, got 2.5"),
        ({"target_class": 2}, ValueError, r"target_class must be in \[0, 1\], got 2"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, message):
    args = {"model": SpotDetector(), "image": torch.rand(1, 1, 8, 8), **kwargs}
    with pytest.raises(error, match=message):
        infill_counterfactual(**args)


def test_a_model_whose_reconstruction_has_another_shape_is_rejected():
    class Cropper(SpotDetector):
        def forward(self, x):
            out = super().forward(x)
            return {**out, "recon": out["recon"][..., :-1]}

    with pytest.raises(
        ValueError, match=r"reconstruction must have the image's shape \(1, 1, 8, 8\), got \(1, 1, 8, 7\)"
    ):
        infill_counterfactual(Cropper(), torch.rand(1, 1, 8, 8))
