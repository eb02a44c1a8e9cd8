"""Where the model looks: attention, contribution, counterfactual, infill, Grad-CAM and occlusion maps for one image.

Every map is a non-negative float tensor with the image's spatial shape ``(*spatial)``, so maps of
different methods can be scored against a lesion mask with the same functions
(:mod:`evaluation.map_scores`) and drawn on the image (:mod:`evaluation.explanation_figures`).
Values keep each method's own scale (no normalisation); only their order matters for the scores.

- ``attention``: the network's own spatial attention, resized bi/trilinearly to the input size
  with each feature cell over the centre of its receptive field
  (:func:`networks.upsample_attention`).
- ``contribution``: each feature position's exact share of the target class's logit margin
  (:meth:`networks.GlassBoxNet.position_contributions`: attention × class evidence, plus the
  flattened branch's share), positive part, resized like ``attention``. Unlike GradCAM it is no
  approximation: the shares add up to the margin. Which map localises best depends on the
  trained model; ``medglass explain --datalist`` scores every map against the lesion masks.
- ``counterfactual``: ``|counterfactual − reconstruction|`` of a latent shift, summed over channels
  (:func:`evaluation.counterfactuals.latent_shift_counterfactual`).
- ``infill``: ``|counterfactual − image|`` of the infill counterfactual, summed over channels: the
  smallest region found whose replacement by the network's reconstruction changes the decision
  (:func:`evaluation.infill_counterfactuals.infill_counterfactual`); zero outside that region.
- ``gradcam``: MONAI's :class:`~monai.visualize.GradCAM` on the logits, resized like ``attention``.
- ``occlusion``: MONAI's :class:`~monai.visualize.OcclusionSensitivity`, as the drop in the target
  probability when a patch is occluded.

Example:
    >>> from networks import GlassBoxNet
    >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=8)
    >>> maps = compute_maps(net, torch.rand(1, 1, 32, 32), methods=("attention", "gradcam"))
    >>> {k: tuple(v.shape) for k, v in maps.items()}
    {'attention': (32, 32), 'gradcam': (32, 32)}
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence

import torch
from monai.networks.utils import eval_mode
from monai.visualize import GradCAM, OcclusionSensitivity
from torch import nn

from evaluation.counterfactuals import CounterfactualResult, latent_shift_counterfactual
from evaluation.infill_counterfactuals import InfillCounterfactual, infill_counterfactual
from evaluation.latent_traversal import _check_target
from networks.attention import upsample_attention

__all__ = [
    "SALIENCY_METHODS",
    "attention_map",
    "compute_maps",
    "contribution_map",
    "counterfactual_map",
    "default_gradcam_layer",
    "gradcam_map",
    "infill_map",
    "occlusion_map",
]

SALIENCY_METHODS = ("attention", "contribution", "counterfactual", "infill", "gradcam", "occlusion")
"""Names accepted by :func:`compute_maps`."""


class _Logits(nn.Module):
    """``image → classify(encode(image)["mu"])``: the logits-only view MONAI's visualisers expect."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        # a new module starts in training mode; MONAI's ``eval_mode`` (used by its visualisers)
        # puts a module that *was* training back with a recursive ``train()``, which switched an
        # eval-mode network to training: later forward passes then updated its batch-norm
        # statistics. Mirror the network's mode (the flag only, no recursion).
        self.training = net.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.classify(self.net.encode(x)["mu"])


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() not in (4, 5) or image.shape[0] != 1:
        raise ValueError(
            f"image must have shape (1, C, *spatial) with 2 or 3 spatial dims, got {tuple(image.shape)}"
        )


def _aligned_upsampler(spatial_size: Sequence[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """MONAI CAM ``upsampler`` that places each feature cell like :func:`networks.upsample_attention`.

    MONAI's default resizes with ``align_corners=False``, which shifts a stride-8 map of this
    encoder by 3.5 px down and right of where its cells look (see ``upsample_attention``).
    """
    return lambda x: upsample_attention(x, [int(s) for s in spatial_size])


def _positive_at_input_size(values: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``(1, 1, *feature_size)`` values resized (bi/trilinear) to the image's size, positive part, ``(*spatial)``."""
    spatial = list(image.shape[2:])
    if list(values.shape[2:]) != spatial:
        values = upsample_attention(values, spatial)
    return values[0, 0].clamp_min(0)


def attention_map(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """The network's spatial attention for one image, resized to the input size.

    Args:
        model: a :class:`~networks.GlassBoxNet` (``encode`` returns ``attention``).
        image: ``(1, C, *spatial)``.

    Returns:
        ``(*spatial)`` map in [0, 1].

    Raises:
        TypeError: if ``image`` is not a tensor.
        ValueError: if ``image`` is not one 2D/3D image the model accepts.

    Example:
        >>> from networks import GlassBoxNet
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32))
        >>> attention_map(net, torch.rand(1, 1, 32, 32)).shape
        torch.Size([32, 32])
    """
    _check_image(image)
    with eval_mode(model):
        attention = model.encode(image)["attention"].float()
    return _positive_at_input_size(attention, image)


def contribution_map(model: nn.Module, image: torch.Tensor, target_class: int = 1) -> torch.Tensor:
    """The positive part of each position's exact share of the target margin, at the input size.

    Args:
        model: a :class:`~networks.GlassBoxNet` with a linear head.
        image: ``(1, C, *spatial)``.
        target_class: the class whose margin is split
            (:meth:`~networks.GlassBoxNet.position_contributions`).

    Returns:
        ``(*spatial)`` non-negative map (the evidence *for* ``target_class``).

    Raises:
        TypeError: if ``image`` is not a tensor or the head is not linear.
        ValueError: if ``image`` is not one 2D/3D image the model accepts, or ``target_class``
            is out of range.

    Example:
        >>> from networks import GlassBoxNet
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32))
        >>> contribution_map(net, torch.rand(1, 1, 32, 32)).shape
        torch.Size([32, 32])
    """
    _check_image(image)
    with eval_mode(model):
        shares = model.position_contributions(image, target_class=target_class).float()
    return _positive_at_input_size(shares, image)


def counterfactual_map(result: CounterfactualResult) -> torch.Tensor:
    """``|counterfactual − reconstruction|`` summed over channels, ``(*spatial)``.

    Args:
        result: a latent-shift result.

    Returns:
        Non-negative map of the image's spatial shape.

    Raises:
        TypeError: if ``result`` is not a :class:`~evaluation.counterfactuals.CounterfactualResult`.

    Example:
        >>> from networks import GlassBoxNet
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32))
        >>> counterfactual_map(latent_shift_counterfactual(net, torch.rand(1, 1, 32, 32))).shape
        torch.Size([32, 32])
    """
    if not isinstance(result, CounterfactualResult):
        raise TypeError(f"result must be a CounterfactualResult, got {type(result).__name__}")
    return result.diff_map.abs().sum(dim=0).float()


def infill_map(result: InfillCounterfactual) -> torch.Tensor:
    """``|counterfactual − image|`` of an infill counterfactual, summed over channels, ``(*spatial)``.

    Args:
        result: an infill counterfactual.

    Returns:
        Non-negative map of the image's spatial shape, zero outside the infilled region.

    Raises:
        TypeError: if ``result`` is not an :class:`~evaluation.infill_counterfactuals.InfillCounterfactual`.

    Example:
        >>> from networks import GlassBoxNet
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32))
        >>> infill_map(infill_counterfactual(net, torch.rand(1, 1, 32, 32))).shape
        torch.Size([32, 32])
    """
    if not isinstance(result, InfillCounterfactual):
        raise TypeError(f"result must be an InfillCounterfactual, got {type(result).__name__}")
    return result.diff_map.abs().sum(dim=0).float()


def default_gradcam_layer(model: nn.Module) -> str:
    """Name of the layer Grad-CAM reads by default: the encoder's last block.

    For :class:`~networks.GlassBoxNet` that is ``encoder.layers.<last>``, the last shuffle unit at
    the encoder's total stride (1/8 of the input size; 1/4 for ``tiny_fine``): the deepest spatial features, the ones the attention gates and the
    latent layer flattens (after it there is no spatial map left to weight).

    Args:
        model: a network with an ``encoder`` (with a sequential ``layers``, or a plain module).

    Returns:
        The module name, as in ``model.named_modules()``.

    Raises:
        ValueError: if the model has no ``encoder``.

    Example:
        >>> from networks import GlassBoxNet
        >>> default_gradcam_layer(GlassBoxNet(spatial_dims=2, img_size=(32, 32)))
        'encoder.layers.6'
    """
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ValueError(f"layer must be given: {type(model).__name__} has no 'encoder' module")
    layers = getattr(encoder, "layers", None)
    if isinstance(layers, nn.Sequential) and len(layers) > 0:
        return f"encoder.layers.{len(layers) - 1}"
    return "encoder"


def gradcam_map(
    model: nn.Module, image: torch.Tensor, target_class: int = 1, layer: str | None = None
) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) of one class's logit, via MONAI's ``GradCAM``.

    MONAI's ``ModelWithHooks`` registers forward and full backward hooks that it never removes
    and switches off in-place activations of the target layer, so the map is computed on a deep
    copy of ``model`` (with gradients enabled on its parameters); the caller's model is left as
    it was. MONAI's default post-processing (which rescales the map to [1, 0], *inverting* it) is
    replaced by the identity: the result is the ReLU'd map, resized bi/trilinearly.

    Args:
        model: a :class:`~networks.GlassBoxNet` (anything with ``encode`` → ``mu`` and ``classify``).
        image: ``(1, C, *spatial)``.
        target_class: class whose logit is explained.
        layer: module name to read (see ``model.named_modules()``); default
            :func:`default_gradcam_layer`.

    Returns:
        ``(*spatial)`` non-negative map.

    Raises:
        TypeError: if ``image`` is not a tensor or ``target_class`` not an int.
        ValueError: if ``image`` is not one 2D/3D image the model accepts, ``layer`` is not a module
            of ``model``, or ``target_class`` is out of range.

    Example:
        >>> from networks import GlassBoxNet
        >>> net = GlassBoxNet(spatial_dims=3, in_channels=1, num_classes=2, img_size=16, latent_dim=4)
        >>> gradcam_map(net, torch.rand(1, 1, 16, 16, 16)).shape
        torch.Size([16, 16, 16])
    """
    _check_image(image)
    layer = default_gradcam_layer(model) if layer is None else layer
    names = dict(model.named_modules())
    if not isinstance(layer, str) or layer not in names or layer == "":
        raise ValueError(f"layer must name a submodule of the model (see named_modules()), got {layer!r}")
    with eval_mode(model):
        num_classes = model.classify(model.encode(image)["mu"]).shape[1]
    target_class = _check_target(target_class, num_classes)
    net = copy.deepcopy(model).requires_grad_(True)
    cam = GradCAM(
        nn_module=_Logits(net),
        target_layers=f"net.{layer}",
        upsampler=_aligned_upsampler,
        postprocessing=lambda m: m,
    )
    with torch.enable_grad():
        result = cam(x=image.detach(), class_idx=target_class)
    return result[0, 0].detach().float().clamp_min(0)


def occlusion_map(
    model: nn.Module,
    image: torch.Tensor,
    target_class: int = 1,
    mask_size: int | Sequence[int] = 8,
    overlap: float = 0.5,
    mode: str | float = "gaussian",
    n_batch: int = 16,
) -> torch.Tensor:
    """Occlusion sensitivity (Zeiler & Fergus 2014) via MONAI's ``OcclusionSensitivity``.

    MONAI returns, at every pixel, the (window-averaged) class probabilities of the image with a
    patch around that pixel occluded, ``(1, num_classes, *spatial)``; the importance here is the
    *drop* ``p(original) − p(occluded)`` of ``target_class``, clipped at 0 (patches whose occlusion
    raises the probability get 0). The softmax is passed to MONAI explicitly: its
    ``activate=True`` picks sigmoid or softmax from the *input's* channel count, which would apply a
    sigmoid to the logits of a 1-channel image.

    Args:
        model: a :class:`~networks.GlassBoxNet` (anything with ``encode`` → ``mu`` and ``classify``).
        image: ``(1, C, *spatial)``.
        target_class: class whose probability drop is mapped.
        mask_size: occluded patch size, one int or one per spatial dim; at most the image size.
        overlap: overlap of successive patches, in [0, 1).
        mode: MONAI's occlusion: ``"gaussian"`` (multiply by 1 − Gaussian, the default: a soft
            patch fading to 0 at its centre), ``"mean_patch"``, ``"mean_img"`` or a constant value.
        n_batch: occluded images per forward pass.

    Returns:
        ``(*spatial)`` non-negative map.

    Raises:
        TypeError: if ``image`` is not a tensor or ``target_class`` not an int.
        ValueError: if ``image`` is not one 2D/3D image the model accepts, ``mask_size`` exceeds the
            image, ``overlap`` is outside [0, 1), or ``target_class`` is out of range.

    Example:
        >>> from networks import GlassBoxNet
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32))
        >>> bool((occlusion_map(net, torch.rand(1, 1, 32, 32)) >= 0).all())
        True
    """
    _check_image(image)
    spatial = tuple(image.shape[2:])
    sizes = [mask_size] * len(spatial) if isinstance(mask_size, int) else list(mask_size)
    if len(sizes) != len(spatial) or any(
        not isinstance(m, int) or not 1 <= m <= s for m, s in zip(sizes, spatial, strict=True)
    ):
        raise ValueError(f"mask_size must be ints in [1, image size {spatial}], got {mask_size!r}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    logits_model = _Logits(model)
    with eval_mode(model):
        probs = torch.softmax(logits_model(image).float(), dim=1)
    target_class = _check_target(target_class, probs.shape[1])
    occlusion = OcclusionSensitivity(
        logits_model,
        mask_size=sizes,
        n_batch=n_batch,
        verbose=False,
        mode=mode,
        overlap=overlap,
        activate=lambda out: out.float().softmax(dim=1),
    )
    with warnings.catch_warnings():
        # MONAI indexes with lists of slices, which torch flags as deprecated; the maps are checked
        # against a known answer in tests/evaluation/test_saliency_maps.py.
        warnings.filterwarnings("ignore", message="Using a non-tuple sequence", category=UserWarning)
        occluded, _ = occlusion(image.detach())
    occluded = torch.as_tensor(occluded)[0, target_class]  # drop MetaTensor metadata
    return (probs[0, target_class] - occluded).clamp_min(0).float()


def compute_maps(
    model: nn.Module,
    image: torch.Tensor,
    target_class: int = 1,
    methods: Sequence[str] = SALIENCY_METHODS,
    counterfactual: CounterfactualResult | None = None,
    infill: InfillCounterfactual | None = None,
) -> dict[str, torch.Tensor]:
    """Compute several saliency maps of one image with default settings.

    Args:
        model: a :class:`~networks.GlassBoxNet`.
        image: ``(1, C, *spatial)``.
        target_class: class explained by ``contribution``, ``gradcam``, ``occlusion``,
            ``counterfactual`` and ``infill``.
        methods: names from :data:`SALIENCY_METHODS`, in the order wanted.
        counterfactual: a ready latent-shift result for ``"counterfactual"`` (computed with
            default settings when ``None``).
        infill: a ready infill counterfactual for ``"infill"`` (computed with default settings
            when ``None``).

    Returns:
        ``{method: (*spatial) map}`` in the order of ``methods``.

    Raises:
        ValueError: if ``methods`` is empty or names an unknown method (and as the map functions).

    Example:
        >>> from networks import GlassBoxNet
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32))
        >>> sorted(compute_maps(net, torch.rand(1, 1, 32, 32), methods=["attention"]))
        ['attention']
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if m not in SALIENCY_METHODS]
    if not methods or unknown:
        raise ValueError(f"methods must be a non-empty selection of {SALIENCY_METHODS}, got {methods!r}")
    maps: dict[str, torch.Tensor] = {}
    for method in methods:
        if method == "attention":
            maps[method] = attention_map(model, image)
        elif method == "contribution":
            maps[method] = contribution_map(model, image, target_class=target_class)
        elif method == "counterfactual":
            if counterfactual is None:
                counterfactual = latent_shift_counterfactual(model, image, target_class=target_class)
            maps[method] = counterfactual_map(counterfactual)
        elif method == "infill":
            if infill is None:
                infill = infill_counterfactual(model, image, target_class=target_class)
            maps[method] = infill_map(infill)
        elif method == "gradcam":
            maps[method] = gradcam_map(model, image, target_class=target_class)
        else:
            maps[method] = occlusion_map(model, image, target_class=target_class)
    return maps
