"""Counterfactuals that remove one predicted lesion, with real (fixed) predictors.

The predictors are real image filters, not answers written in: the segmenter is a Gaussian
filter followed by a sigmoid (a one-layer convolutional network with fixed weights) and the
detector boxes the connected components of its output (a classical blob detector). The infill is
MONAI's median filter, which removes findings smaller than half its window and keeps larger
structures. The images hold a small lesion and a large bright structure that both predictors
also mark, but that no median infill can remove.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from monai.networks.layers import GaussianFilter
from scipy import ndimage

from evaluation.dense_counterfactuals import (
    DenseCounterfactual,
    autoencoder_reconstruction,
    box_mask,
    detection_counterfactual,
    explain_detection,
    explain_segmentation,
    median_reconstruction,
    retinanet_predictor,
    score_against_lesion,
    segmentation_counterfactual,
    segmentation_lesions,
    softmax_lesion_predictor,
    summarise_dense_explanations,
)


def blob_probability(images: torch.Tensor) -> torch.Tensor:
    """Lesion probability: Gaussian-smoothed intensity (sigma 1 px) through a steep sigmoid."""
    smooth = GaussianFilter(images.dim() - 2, sigma=1.0)(images[:, :1].float())
    return torch.sigmoid(12.0 * (smooth - 0.45))[:, 0]


def blob_detector(image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Boxes around the connected components of p >= 0.5, scored by their highest p."""
    prob = blob_probability(image)[0].numpy()
    labels, _ = ndimage.label(prob >= 0.5)
    boxes, scores = [], []
    for i, slices in enumerate(ndimage.find_objects(labels), start=1):
        boxes.append([s.start for s in slices] + [s.stop for s in slices])
        scores.append(float(prob[labels == i].max()))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 2 * prob.ndim), np.asarray(scores)


def _phantom(spatial=(32, 32), centre=(8, 22), radius=2.2, seed=0):
    """Background with noise, a small disc/ball lesion, and a large bright block (not a lesion)."""
    gen = torch.Generator().manual_seed(seed)
    image = 0.1 + 0.03 * torch.rand(1, 1, *spatial, generator=gen)
    grid = torch.stack(
        torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in spatial], indexing="ij")
    )
    distance = (
        ((grid - torch.tensor(centre, dtype=torch.float32).view(-1, *[1] * len(spatial))) ** 2).sum(0).sqrt()
    )
    lesion = distance <= radius
    image[0, 0][lesion] = 0.9
    block = tuple(slice(s // 2, s // 2 + s // 3) for s in spatial)
    image[(0, 0, *block)] = 0.9
    return image, lesion


SEARCH_2D = {"window": 6, "stride": 3, "fine_window": 4, "fine_stride": 2}


@pytest.mark.parametrize(
    "spatial, centre, search",
    [
        ((32, 32), (8, 22), SEARCH_2D),
        ((16, 16, 16), (4, 11, 4), {"window": 4, "stride": 4, "fine_window": None}),
    ],
)
def test_segmentation_lesion_is_removed_and_the_map_points_at_it(spatial, centre, search):
    image, truth = _phantom(spatial, centre)
    components = segmentation_lesions(blob_probability(image)[0])
    assert len(components) == 2  # the block and the lesion
    lesion = min(components, key=lambda m: int(m.sum()))
    assert bool((lesion & truth).any())
    result = segmentation_counterfactual(blob_probability, median_reconstruction(3), image, lesion, **search)
    assert result.score >= 0.5 and result.removed and result.final_score < 0.5
    # the counterfactual's own prediction no longer marks any voxel of the lesion
    assert float(blob_probability(result.counterfactual[None])[0][lesion].max()) < 0.5
    scores = score_against_lesion(result, truth)
    assert scores["removed"] and scores["pointing"]
    assert scores["iou"] > 0.3
    assert result.search.region_fraction < 0.15  # a local edit, not the whole image
    outside = ~result.search.region
    assert torch.equal(result.counterfactual[0][outside], image[0, 0][outside])


def test_a_structure_the_infill_cannot_remove_is_reported_not_removed():
    image, _ = _phantom()
    block = max(segmentation_lesions(blob_probability(image)[0]), key=lambda m: int(m.sum()))
    result = segmentation_counterfactual(
        blob_probability, median_reconstruction(3), image, block, **SEARCH_2D
    )
    assert not result.removed and result.final_score >= 0.5


def test_explain_segmentation_explains_true_positives_only():
    image, truth = _phantom()
    rows = explain_segmentation(blob_probability, median_reconstruction(3), image, truth.int(), **SEARCH_2D)
    assert len(rows) == 1  # the block matches no true lesion
    assert rows[0]["lesion"] == 0 and rows[0]["removed"] and rows[0]["pointing"]
    summary = summarise_dense_explanations(rows)
    assert summary["removal_rate"] == 1.0 and summary["pointing_share"] == 1.0 and summary["lesions"] == 1


def _true_box(truth: torch.Tensor) -> np.ndarray:
    voxels = np.argwhere(truth.numpy())
    return np.concatenate([voxels.min(0), voxels.max(0) + 1])


def test_detection_box_is_removed_and_the_map_points_inside_the_true_box():
    image, truth = _phantom()
    boxes, scores = blob_detector(image)
    assert len(boxes) == 2 and bool((scores >= 0.5).all())
    small = boxes[np.argmin(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1))]
    search = {"window": 8, "stride": 4, "fine_window": 4, "fine_stride": 2}
    result = detection_counterfactual(blob_detector, median_reconstruction(3), image, small, **search)
    assert result.removed and result.score >= 0.5 > result.final_score
    # after the infill the detector finds the block only
    after_boxes, _ = blob_detector(result.counterfactual[None])
    assert len(after_boxes) == 1 and not box_mask(after_boxes[0], (32, 32))[truth].any()
    scores = score_against_lesion(result, box_mask(_true_box(truth), (32, 32)))
    assert scores["pointing"] and scores["iou"] > 0.3


def test_explain_detection_explains_each_true_lesion_once():
    image, truth = _phantom()
    far_box = [0, 0, 4, 4]  # a true lesion the detector misses
    rows = explain_detection(
        blob_detector,
        median_reconstruction(3),
        image,
        [far_box, _true_box(truth)],
        window=8,
        stride=8,
        fine_window=None,
    )
    assert [r["lesion"] for r in rows] == [1]  # the missed lesion and the block are not explained
    assert rows[0]["removed"] and rows[0]["pointing"]
    explained = box_mask(rows[0]["box"], (32, 32))
    assert bool(explained[truth].any()) and not bool(
        (explained & ~box_mask(_true_box(truth), (32, 32))).any()
    )


def test_scores_by_hand():
    image, truth = _phantom()
    lesion = min(segmentation_lesions(blob_probability(image)[0]), key=lambda m: int(m.sum()))
    result = segmentation_counterfactual(
        blob_probability, median_reconstruction(3), image, lesion, **SEARCH_2D
    )
    hand_truth = torch.zeros(32, 32, dtype=torch.bool)
    hand_truth[0, :2] = True
    diff = torch.zeros(32, 32)
    diff[0, :3] = torch.tensor([1.0, 0.9, 0.6])  # > half the max: 3 pixels, 2 of them in the lesion
    scores = score_against_lesion(dataclasses.replace(result, diff_map=diff), hand_truth)
    assert scores["pointing"] and scores["iou"] == pytest.approx(2 / 3)
    diff[5, 5] = 2.0  # the maximum now lies outside; above half of it: (5, 5) only
    scores = score_against_lesion(dataclasses.replace(result, diff_map=diff), hand_truth)
    assert not scores["pointing"] and scores["iou"] == 0.0
    assert box_mask([1, 1, 3, 2.5], (4, 4)).sum() == 4


def test_glassbox_reconstruction_plugs_in():
    from networks import GlassBoxNet

    torch.manual_seed(0)
    net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=8).train()
    image, _ = _phantom()
    lesion = min(segmentation_lesions(blob_probability(image)[0]), key=lambda m: int(m.sum()))
    result = segmentation_counterfactual(
        blob_probability, autoencoder_reconstruction(net), image, lesion, window=8, stride=8, fine_window=None
    )
    assert isinstance(result, DenseCounterfactual) and net.training
    with torch.no_grad():
        recon = net.eval()(image)["recon"][0]
    region = result.search.region
    torch.testing.assert_close(result.counterfactual[:, region], recon[:, region])
    assert result.removed == (result.final_score < 0.5)


def test_bad_input_is_refused():
    image, truth = _phantom()
    nothing = torch.zeros(32, 32, dtype=torch.bool)
    nothing[1, 1] = True  # background: the segmenter does not predict it
    with pytest.raises(ValueError, match=r"below the threshold 0.5: the predictor does not predict it"):
        segmentation_counterfactual(blob_probability, median_reconstruction(3), image, nothing)
    with pytest.raises(
        ValueError, match=r"lesion must have the image's spatial shape \(32, 32\), got \(16, 16\)"
    ):
        segmentation_counterfactual(blob_probability, median_reconstruction(3), image, truth[:16, :16])
    with pytest.raises(ValueError, match=r"predict must return lesion probabilities of shape \(1, 32, 32\)"):
        segmentation_counterfactual(lambda x: x[:, 0, :16], median_reconstruction(3), image, truth)
    with pytest.raises(ValueError, match=r"reconstruct must return the image's shape"):
        segmentation_counterfactual(blob_probability, lambda x: x[..., :16], image, truth)
    with pytest.raises(ValueError, match=r"image must have shape \(1, C, \*spatial\)"):
        segmentation_counterfactual(blob_probability, median_reconstruction(3), image[0], truth)
    with pytest.raises(ValueError, match="rows must hold at least one"):
        summarise_dense_explanations([])


def test_network_adapters_keep_the_mode_and_shapes():
    from networks.detection import build_detector, build_glassbox_retinanet
    from networks.segmentation import GlassBoxSegmenter

    torch.manual_seed(0)
    images = torch.rand(2, 1, 32, 32)
    segmenter = GlassBoxSegmenter(spatial_dims=2).train()
    prob = softmax_lesion_predictor(segmenter)(images)
    assert segmenter.training and prob.shape == (2, 32, 32)
    with torch.no_grad():
        logits = segmenter.eval()(images)
    torch.testing.assert_close(prob, torch.softmax(logits, dim=1)[:, 1])
    detector = build_detector(
        build_glassbox_retinanet(spatial_dims=2), score_thresh=0.0, detections_per_img=5
    ).train()
    boxes, scores = retinanet_predictor(detector)(images[:1])
    assert detector.training and boxes.shape == (5, 4) and scores.shape == (5,)
    assert bool((boxes[:, 2:] >= boxes[:, :2]).all())
    pairs = retinanet_predictor(detector, batched=True)(images)
    assert len(pairs) == 2 and detector.training
    torch.testing.assert_close(pairs[0][0], boxes)


def test_batched_detection_predictor_gives_the_same_counterfactual():
    image, _ = _phantom()
    boxes, _ = blob_detector(image)
    small = boxes[np.argmin(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1))]
    search = {"window": 8, "stride": 8, "fine_window": None}

    def batch_detector(images):
        return [blob_detector(one) for one in images.split(1)]

    one = detection_counterfactual(blob_detector, median_reconstruction(3), image, small, **search)
    batch = detection_counterfactual(
        batch_detector, median_reconstruction(3), image, small, batched=True, **search
    )
    assert one.removed and batch.removed
    assert torch.equal(one.search.region, batch.search.region) and one.final_score == batch.final_score
    with pytest.raises(ValueError, match=r"a batched predict must return one \(boxes, scores\) per image"):
        detection_counterfactual(
            lambda x: [blob_detector(x[:1])], median_reconstruction(3), image, small, batched=True, **search
        )
