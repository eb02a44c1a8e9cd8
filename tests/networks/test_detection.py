"""The glass-box RetinaNet: pyramid and head shapes (2D, 3D), training losses, eval-mode boxes."""

from __future__ import annotations

import pytest
import torch

from networks.detection import (
    BOX_KEY,
    BOX_LABEL_KEY,
    SCORE_KEY,
    build_detector,
    build_glassbox_retinanet,
    build_resnet_retinanet,
)
from networks.glassbox import GlassBoxNet


@pytest.mark.parametrize(("dims", "size"), [(2, 32), (3, 16)])
def test_head_maps_follow_the_pyramid(dims, size):
    torch.manual_seed(0)
    net = build_glassbox_retinanet(dims, num_classes=2).eval()
    out = net(torch.rand(2, 1, *(size,) * dims))
    strides = net.feature_extractor.strides
    assert strides == (2, 4, 8)
    for cls_map, box_map, stride in zip(out["classification"], out["box_regression"], strides, strict=True):
        grid = (size // stride,) * dims
        assert tuple(cls_map.shape) == (2, net.num_anchors * 2, *grid)
        assert tuple(box_map.shape) == (2, net.num_anchors * 2 * dims, *grid)
    # the bundle adapter: the finest level's maps as one tensor, same weights
    maps = build_glassbox_retinanet(dims, num_classes=2, head_maps=True).eval()
    maps.load_state_dict(net.state_dict())
    x = torch.rand(1, 1, *(size,) * dims)
    with torch.no_grad():
        expected = net(x)
        assert torch.equal(
            maps(x), torch.cat([expected["classification"][0], expected["box_regression"][0]], dim=1)
        )


@pytest.mark.parametrize(("dims", "size"), [(2, 32), (3, 16)])
def test_training_losses_and_eval_boxes(dims, size):
    torch.manual_seed(0)
    detector = build_detector(build_glassbox_retinanet(dims))
    images = torch.rand(2, 1, *(size,) * dims)
    targets = [
        {
            BOX_KEY: torch.tensor([[4.0] * dims + [10.0] * dims]),
            BOX_LABEL_KEY: torch.zeros(1, dtype=torch.long),
        },
        {BOX_KEY: torch.zeros(0, 2 * dims), BOX_LABEL_KEY: torch.zeros(0, dtype=torch.long)},  # no lesion
    ]
    detector.train()
    losses = detector(images, targets)
    assert set(losses) == {"classification", "box_regression"}
    total = losses["classification"] + losses["box_regression"]
    assert torch.isfinite(total) and total > 0
    total.backward()
    encoder_grad = next(detector.network.feature_extractor.body.parameters()).grad
    assert encoder_grad is not None and encoder_grad.abs().sum() > 0  # the encoder learns from the boxes

    detector.eval()
    detector.set_box_selector_parameters(score_thresh=0.0, detections_per_img=5)
    with torch.no_grad():
        result = detector(images)
    assert len(result) == 2
    for r in result:
        boxes = r[BOX_KEY]
        assert boxes.shape[1] == 2 * dims and 0 < boxes.shape[0] <= 5
        assert r[SCORE_KEY].shape == r[BOX_LABEL_KEY].shape == (boxes.shape[0],)
        assert (boxes[:, :dims] >= 0).all() and (boxes[:, dims:] <= size).all()  # clipped to the image


def test_pretrained_glassbox_encoder_weights_fit_the_backbone():
    source = GlassBoxNet(spatial_dims=2, img_size=(32, 32), size="tiny")
    net = build_glassbox_retinanet(2, size="tiny")
    encoder = {k[len("encoder.") :]: v for k, v in source.state_dict().items() if k.startswith("encoder.")}
    missing, unexpected = net.feature_extractor.body.load_state_dict(encoder, strict=True)
    assert not missing and not unexpected


def test_resnet_baseline_has_the_same_pyramid_strides():
    net = build_resnet_retinanet(2, model_name="resnet10", fpn_channels=16).eval()
    out = net(torch.rand(1, 1, 32, 32))
    assert [tuple(m.shape[-2:]) for m in out["classification"]] == [(16, 16), (8, 8), (4, 4)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spatial_dims": 4}, "spatial_dims must be 2 or 3"),
        ({"levels": (2, 1)}, "levels must be increasing"),
        ({"levels": (1, 9)}, "levels must be increasing"),
        ({"fpn_channels": 0}, "out_channels must be an int >= 1"),
        ({"num_classes": 0}, "num_classes must be an int >= 1"),
        ({"size": "huge"}, "size must be one of"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_glassbox_retinanet(**kwargs)


def test_detector_checks_its_settings():
    net = build_glassbox_retinanet(2)
    with pytest.raises(ValueError, match="base_anchor_shapes must be 3 shapes"):
        build_detector(net, base_anchor_shapes=((4, 4),))
    with pytest.raises(ValueError, match=r"score_thresh must be a number in \[0, 1\]"):
        build_detector(net, score_thresh=2.0)
