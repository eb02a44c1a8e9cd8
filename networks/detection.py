"""Lesion detection: the glass-box encoder as the feature-pyramid backbone of MONAI's RetinaNet.

MONAI's detection stack does the detection (:mod:`monai.apps.detection`): ``RetinaNet`` (the
classification and box-regression heads), ``RetinaNetDetector`` (anchors, ATSS matching, the
hard-negative sampler, box coding, BCE classification and smooth-L1 box losses, box selection
with NMS), ``AnchorGeneratorWithAnchorShape``. What is written here is the feature extractor
those expect: :class:`PyramidFeatureExtractor` runs a backbone that returns its stage outputs finest
first (:meth:`networks.encoder.ShuffleEncoder.stage_features`, or MONAI's ``ResNetFeatures`` for
the baseline) and puts MONAI's ``FeaturePyramidNetwork`` on the chosen stages. MONAI's own
``resnet_fpn_feature_extractor``/``BackboneWithFPN`` cannot be used for either: they take the
stages out with torchvision's ``IntermediateLayerGetter`` (torchvision is not a dependency, and
it is pinned to one torch build) and know only ResNet layer names. For the same reason
:class:`ATSSRetinaNetDetector` overrides the one detector method that touches torchvision.

Boxes are MONAI's corner mode, ``[x0, y0(, z0), x1, y1(, z1)]`` in array-index coordinates
with exclusive upper bounds, the mode the phantom datalists write.

Example:
    >>> net = build_glassbox_retinanet(spatial_dims=2)
    >>> detector = build_detector(net)
    >>> out = net(torch.zeros(1, 1, 64, 64))
    >>> [tuple(m.shape) for m in out["classification"]]
    [(1, 3, 32, 32), (1, 3, 16, 16), (1, 3, 8, 8)]
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.networks.retinanet_network import RetinaNet
from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
from monai.apps.detection.utils.ATSS_matcher import ATSSMatcher
from monai.networks.blocks.feature_pyramid_network import FeaturePyramidNetwork
from monai.networks.nets.resnet import ResNetFeatures
from torch import nn

from networks.encoder import ShuffleEncoder
from networks.presets import get_preset

__all__ = [
    "BOX_KEY",
    "BOX_LABEL_KEY",
    "SCORE_KEY",
    "DEFAULT_ANCHOR_SHAPES",
    "PyramidFeatureExtractor",
    "RetinaNetHeadMaps",
    "ATSSRetinaNetDetector",
    "build_glassbox_retinanet",
    "build_resnet_retinanet",
    "build_anchor_generator",
    "build_detector",
]

BOX_KEY = "boxes"
"""Record/target key of the boxes (the phantom datalists' key)."""
BOX_LABEL_KEY = "box_labels"
"""Record/target key of the box classes (0 = lesion)."""
SCORE_KEY = "box_labels_scores"
"""Key of the predicted scores (``RetinaNetDetector`` names it ``<label key>_scores``)."""

DEFAULT_ANCHOR_SHAPES: dict[int, tuple[tuple[int, ...], ...]] = {
    2: ((4, 4), (6, 6), (8, 8)),
    3: ((4, 4, 4), (6, 6, 6), (8, 8, 8)),
}
"""Anchor shapes (pixels) of the finest pyramid level, doubled at each coarser level. Phantom
lesions are discs/balls of 3–7 px across at size 64 (:mod:`phantoms.lesions`): the finest level
(stride 2) covers them, the coarser ones larger findings."""


def _check_spatial_dims(spatial_dims: object) -> int:
    if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return int(spatial_dims)  # type: ignore[call-overload]


class PyramidFeatureExtractor(nn.Module):
    """A backbone's stage outputs → MONAI ``FeaturePyramidNetwork`` → one map per chosen stage.

    Args:
        backbone: a :class:`~networks.encoder.ShuffleEncoder` (its :meth:`stage_features` are
            used) or a module whose forward returns its stage outputs, finest first (MONAI
            ``ResNetFeatures``).
        stage_channels: channels of each backbone output.
        stage_strides: downsampling factor of each backbone output.
        levels: indices of the backbone outputs the pyramid is built on, finest first.
        out_channels: channels of every pyramid map (and of the RetinaNet heads).
        spatial_dims: 2 or 3.

    Raises:
        ValueError: empty, unsorted or out-of-range ``levels``, or ``out_channels`` < 1.

    Attributes:
        out_channels: channels of every output map (``RetinaNet`` reads it).
        strides: downsampling factor of each output map, finest first.
    """

    def __init__(
        self,
        backbone: nn.Module,
        stage_channels: Sequence[int],
        stage_strides: Sequence[int],
        levels: Sequence[int],
        out_channels: int,
        spatial_dims: int,
    ) -> None:
        super().__init__()
        spatial_dims = _check_spatial_dims(spatial_dims)
        levels = tuple(int(i) for i in levels)
        n = len(stage_channels)
        if not levels or list(levels) != sorted(set(levels)) or not all(0 <= i < n for i in levels):
            raise ValueError(
                f"levels must be increasing indices into the {n} backbone stages, got {levels!r}"
            )
        if isinstance(out_channels, bool) or not isinstance(out_channels, int) or out_channels < 1:
            raise ValueError(f"out_channels must be an int >= 1, got {out_channels!r}")
        self.body = backbone
        self.levels = levels
        self.out_channels = out_channels
        self.strides = tuple(int(stage_strides[i]) for i in levels)
        self.fpn = FeaturePyramidNetwork(
            spatial_dims=spatial_dims,
            in_channels_list=[int(stage_channels[i]) for i in levels],
            out_channels=out_channels,
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pyramid maps, finest first, keyed ``"0"``, ``"1"``, ...

        Args:
            x: images ``(batch, channels, *spatial)``.

        Returns:
            One ``(batch, out_channels, *spatial / stride)`` map per level.
        """
        if isinstance(self.body, ShuffleEncoder):
            stages = self.body.stage_features(x)
        else:
            stages = list(self.body(x))
        chosen = OrderedDict((str(k), stages[i]) for k, i in enumerate(self.levels))
        return self.fpn(chosen)


class RetinaNetHeadMaps(RetinaNet):
    """MONAI ``RetinaNet`` whose ``forward`` returns one tensor: the finest level's head maps.

    ``(batch, A * (num_classes + 2 * dims), *spatial / stride)``: the classification logits of
    the ``A`` anchors, then their box regressions, at the finest pyramid level (where lesions of a
    few pixels are found). For MONAI's bundle tools (``verify_net_in_out``, ``ckpt_export``),
    which need a network mapping an image batch to *one* tensor, while ``RetinaNet`` returns a
    dict of per-level lists; as :mod:`networks.bundle_adapters` does for ``GlassBoxNet``, a
    subclass keeps the ``state_dict`` keys, so the detector's checkpoints load as they are.
    """

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """The finest level's classification and box-regression maps, concatenated along channels.

        Args:
            images: ``(batch, channels, *spatial)``, sizes divisible by ``size_divisible``.

        Returns:
            ``(batch, num_anchors * (num_classes + 2 * spatial_dims), *spatial / stride)``.
        """
        maps = list(self.feature_extractor(images).values())
        return torch.cat([self.classification_head(maps)[0], self.regression_head(maps)[0]], dim=1)


def build_glassbox_retinanet(
    spatial_dims: int = 2,
    in_channels: int = 1,
    num_classes: int = 1,
    size: str = "tiny",
    unit: str = "dense",
    fpn_channels: int = 32,
    levels: Sequence[int] | None = None,
    num_anchors: int | None = None,
    head_maps: bool = False,
) -> RetinaNet:
    """MONAI ``RetinaNet`` whose feature extractor is the glass-box encoder with a feature pyramid.

    The encoder is :class:`~networks.encoder.ShuffleEncoder` built from the size preset
    (:mod:`networks.presets`), so a pretrained ``GlassBoxNet``'s ``encoder.*`` weights load into
    ``feature_extractor.body``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: box classes (excluding background).
        size: encoder preset (``"tiny"``, ``"small"``, ``"base"``, ``"tiny_fine"``).
        unit: encoder unit, ``"dense"`` or ``"shuffle"``.
        fpn_channels: channels of the pyramid and the heads.
        levels: encoder outputs the pyramid uses (0 = stem, 1.. = stages); default every stage
            (strides 2, 4, 8 for ``tiny``), not the full-resolution stem.
        num_anchors: anchors per location (default ``len(DEFAULT_ANCHOR_SHAPES[spatial_dims])``).
        head_maps: build :class:`RetinaNetHeadMaps` (one output tensor, for bundle tools).

    Returns:
        The network; ``size_divisible`` is the largest pyramid stride.

    Raises:
        ValueError: an argument out of range (named with its value).
    """
    spatial_dims = _check_spatial_dims(spatial_dims)
    preset = get_preset(size)
    encoder = ShuffleEncoder(
        spatial_dims, in_channels, preset.stem_channels, preset.widths, preset.depths, unit=unit
    )
    levels = tuple(range(1, len(encoder.stage_channels))) if levels is None else tuple(levels)
    extractor = PyramidFeatureExtractor(
        encoder, encoder.stage_channels, encoder.stage_strides, levels, fpn_channels, spatial_dims
    )
    return _retinanet(
        spatial_dims, num_classes, num_anchors, extractor, RetinaNetHeadMaps if head_maps else RetinaNet
    )


def build_resnet_retinanet(
    spatial_dims: int = 2,
    in_channels: int = 1,
    num_classes: int = 1,
    model_name: str = "resnet18",
    fpn_channels: int = 256,
    levels: Sequence[int] = (0, 1, 2),
    num_anchors: int | None = None,
) -> RetinaNet:
    """The baseline: MONAI ``RetinaNet`` on MONAI ``ResNetFeatures`` (no pretrained weights) with an FPN.

    As MONAI's ``resnet_fpn_feature_extractor`` builds it (FPN of 256 channels on ResNet
    stages), without torchvision (see the module docstring). ``ResNetFeatures`` returns the
    stride-2 stem then ``layer1``–``layer4`` (strides 4–32); the default levels are strides 2, 4,
    8, the same as the glass-box default, so both detectors see the same anchors.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        num_classes: box classes (excluding background).
        model_name: ``resnet10`` ... ``resnet200`` (MONAI's names).
        fpn_channels: pyramid and head channels (256 in MONAI's extractor).
        levels: ``ResNetFeatures`` outputs used (0 = stem, 1–4 = layers).
        num_anchors: anchors per location.

    Returns:
        The network.
    """
    spatial_dims = _check_spatial_dims(spatial_dims)
    backbone = ResNetFeatures(
        model_name, pretrained=False, spatial_dims=spatial_dims, in_channels=in_channels
    )
    planes = [64, *(p * backbone.layer1[0].expansion for p in (64, 128, 256, 512))]
    extractor = PyramidFeatureExtractor(
        backbone, planes, (2, 4, 8, 16, 32), levels, fpn_channels, spatial_dims
    )
    return _retinanet(spatial_dims, num_classes, num_anchors, extractor)


def _retinanet(
    spatial_dims: int,
    num_classes: int,
    num_anchors: int | None,
    extractor: PyramidFeatureExtractor,
    network_class: type[RetinaNet] = RetinaNet,
) -> RetinaNet:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    anchors = len(DEFAULT_ANCHOR_SHAPES[spatial_dims]) if num_anchors is None else num_anchors
    return network_class(
        spatial_dims=spatial_dims,
        num_classes=num_classes,
        num_anchors=anchors,
        feature_extractor=extractor,
        size_divisible=max(extractor.strides),
    )


def build_anchor_generator(
    network: RetinaNet, base_anchor_shapes: Sequence[Sequence[int]] | None = None
) -> AnchorGeneratorWithAnchorShape:
    """MONAI's anchor generator for ``network``'s pyramid: the base shapes at the finest level, ×2 per level.

    Args:
        network: a network from :func:`build_glassbox_retinanet` or :func:`build_resnet_retinanet`.
        base_anchor_shapes: anchor shapes in pixels at the finest level (default
            :data:`DEFAULT_ANCHOR_SHAPES`); their count must equal ``network.num_anchors``.

    Returns:
        The generator.

    Raises:
        ValueError: shapes of the wrong dimension or count.
    """
    spatial_dims = network.spatial_dims
    shapes = DEFAULT_ANCHOR_SHAPES[spatial_dims] if base_anchor_shapes is None else base_anchor_shapes
    shapes = tuple(tuple(int(s) for s in shape) for shape in shapes)
    if len(shapes) != network.num_anchors or any(len(s) != spatial_dims or min(s) < 1 for s in shapes):
        raise ValueError(
            f"base_anchor_shapes must be {network.num_anchors} shapes of {spatial_dims} positive ints, "
            f"got {base_anchor_shapes!r}"
        )
    strides = network.feature_extractor.strides
    scales = tuple(s // strides[0] for s in strides)
    return AnchorGeneratorWithAnchorShape(feature_map_scales=scales, base_anchor_shapes=shapes)


class ATSSRetinaNetDetector(RetinaNetDetector):
    """MONAI ``RetinaNetDetector`` whose anchor matching is MONAI's ATSS matcher, without torchvision.

    MONAI's ``compute_anchor_matched_idxs`` first tests ``isinstance(matcher, Matcher)`` against
    torchvision's ``Matcher``, an optional import that raises when torchvision is absent (it is
    not a dependency here), even when the ATSS matcher is set. This override is that method's
    ATSS branch alone, as MONAI's error message invites ("override
    self.compute_anchor_matched_idxs(*) for your own matcher"); everything else is MONAI's.
    """

    def compute_anchor_matched_idxs(
        self,
        anchors: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]],
        num_anchor_locs_per_level: Sequence[int],
    ) -> list[torch.Tensor]:
        """Per image, the ground-truth index matched to each anchor (-1: none), by ATSS.

        Args:
            anchors: per image, ``(sum(HWA), 2 * spatial_dims)`` anchors.
            targets: per image, ``{boxes, box_labels}``.
            num_anchor_locs_per_level: ``H*W(*D)`` of each level.

        Returns:
            Per image, an int64 ``(sum(HWA),)`` tensor of matched box indices or negatives.

        Raises:
            TypeError: the matcher set is not MONAI's ``ATSSMatcher``.
        """
        if not isinstance(self.proposal_matcher, ATSSMatcher):
            raise TypeError(
                f"proposal_matcher must be an ATSSMatcher (set_atss_matcher), got {type(self.proposal_matcher).__name__}"
            )
        matched = []
        for anchors_per_image, targets_per_image in zip(anchors, targets, strict=True):
            boxes = targets_per_image[self.target_box_key]
            if boxes.numel() == 0:
                matched.append(
                    torch.full(
                        (anchors_per_image.size(0),), -1, dtype=torch.int64, device=anchors_per_image.device
                    )
                )
                continue
            _, idxs = self.proposal_matcher(
                boxes.to(anchors_per_image.device),
                anchors_per_image,
                num_anchor_locs_per_level,
                self.num_anchors_per_loc,
            )
            matched.append(idxs)
        return matched


def build_detector(
    network: RetinaNet,
    base_anchor_shapes: Sequence[Sequence[int]] | None = None,
    score_thresh: float = 0.02,
    nms_thresh: float = 0.22,
    detections_per_img: int = 100,
    sampler_batch_size: int = 64,
    positive_fraction: float = 0.3,
) -> RetinaNetDetector:
    """MONAI's RetinaNet detector (:class:`ATSSRetinaNetDetector`) set up as MONAI's LUNA16 tutorial sets it up.

    ATSS matcher (4 candidates per level, centre not required inside the box: recommended
    for small objects), hard-negative sampler (``sampler_batch_size`` anchors per image,
    ``positive_fraction`` of them positive, min 16 negatives, pool 20), target keys
    :data:`BOX_KEY`/:data:`BOX_LABEL_KEY`, and box selection with ``score_thresh``,
    ``nms_thresh`` and ``detections_per_img``.

    Args:
        network: the RetinaNet.
        base_anchor_shapes: see :func:`build_anchor_generator`.
        score_thresh: boxes scoring below it are dropped at inference.
        nms_thresh: IoU above which NMS drops the lower-scoring box.
        detections_per_img: most boxes kept per image.
        sampler_batch_size: anchors sampled per image for the classification loss.
        positive_fraction: share of positives among them.

    Returns:
        The detector (training mode: ``detector(images, targets)`` → losses; eval mode:
        ``detector(images)`` → one ``{boxes, box_labels, box_labels_scores}`` per image).

    Raises:
        ValueError: a threshold outside [0, 1] or a count < 1.
    """
    for name, value in (
        ("score_thresh", score_thresh),
        ("nms_thresh", nms_thresh),
        ("positive_fraction", positive_fraction),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    for name, value in (
        ("detections_per_img", detections_per_img),
        ("sampler_batch_size", sampler_batch_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    detector = ATSSRetinaNetDetector(
        network=network, anchor_generator=build_anchor_generator(network, base_anchor_shapes)
    )
    detector.set_target_keys(box_key=BOX_KEY, label_key=BOX_LABEL_KEY)
    detector.set_atss_matcher(num_candidates=4, center_in_gt=False)
    detector.set_hard_negative_sampler(
        batch_size_per_image=sampler_batch_size, positive_fraction=positive_fraction, min_neg=16, pool_size=20
    )
    detector.set_box_selector_parameters(
        score_thresh=score_thresh,
        topk_candidates_per_level=1000,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
    )
    return detector
