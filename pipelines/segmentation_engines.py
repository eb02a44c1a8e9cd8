"""The engine parts of the segmentation workflow, and scoring a trained run.

The segmenter a config describes, MONAI's sliding-window inferer with the training patch as
ROI, the ``prepare_batch`` that feeds ``(image, mask)`` to MONAI's engines, the
``SupervisedEvaluator`` with every segmentation metric (:mod:`evaluation.segmentation_metrics`)
and :func:`evaluate_segmentation`, which scores a trained run on a datalist section. Training
(:mod:`pipelines.segmentation_training`) and inference (:mod:`pipelines.segmentation_inference`)
share them.

Example:
    >>> metrics = evaluate_segmentation("runs/seg", section="test")  # doctest: +SKIP
    >>> sorted(metrics)[:2]  # doctest: +SKIP
    ['test_correct_lesions', 'test_detected_lesions']
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from monai.data import CacheDataset, DataLoader
from monai.engines import SupervisedEvaluator
from monai.handlers import MeanDice, from_engine
from monai.inferers import SlidingWindowInferer
from monai.transforms import AsDiscreted, Compose
from monai.utils import convert_to_tensor

from evaluation.html_report import write_text_atomic
from evaluation.segmentation_metrics import SegmentationScores
from networks.segmentation import GlassBoxSegmenter
from pipelines.segmentation_config import SegmentationConfig
from pipelines.segmentation_data import load_segmentation_records, segmentation_transforms
from pipelines.synthesis_predictions import json_numbers
from pipelines.user_errors import user_error
from transforms.keys import Keys

__all__ = [
    "build_segmenter",
    "build_inferer",
    "segmentation_batch",
    "build_seg_evaluator",
    "segmentation_dataset",
    "evaluation_loader",
    "load_best",
    "load_segmentation_run",
    "evaluate_segmentation",
    "LAST_CHECKPOINT",
    "BEST_CHECKPOINT",
    "KEY_METRIC",
]

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
KEY_METRIC = "mean_dice"
"""The metric ``best.pt`` is chosen by (``val_mean_dice``): MONAI ``MeanDice`` of the lesion class."""


def build_segmenter(config: SegmentationConfig) -> torch.nn.Module:
    """The network a config describes: one input channel, background/lesion logits.

    ``architecture="glassbox"`` gives :class:`~networks.segmentation.GlassBoxSegmenter`; ``"unet"``
    and ``"segresnet"`` give MONAI's networks, the baselines of ``bench/bench_segmentation.py``.
    """
    if config.architecture == "unet":
        from monai.networks.nets import UNet

        return UNet(config.spatial_dims, 1, 2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=2)
    if config.architecture == "segresnet":
        from monai.networks.nets import SegResNet

        return SegResNet(config.spatial_dims, init_filters=16, in_channels=1, out_channels=2)
    return GlassBoxSegmenter(
        spatial_dims=config.spatial_dims,
        in_channels=1,
        out_channels=2,
        size=config.size,
        freeze_encoder=config.freeze_encoder,
    )


def build_inferer(config: SegmentationConfig) -> SlidingWindowInferer:
    """MONAI's sliding-window inferer with the training patch as ROI (any image size works)."""
    return SlidingWindowInferer(
        roi_size=tuple(config.patch_size),
        sw_batch_size=config.sw_batch_size,
        overlap=config.overlap,
        mode="gaussian",
    )


def segmentation_batch(
    batchdata: Mapping[str, Any],
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MONAI ``prepare_batch``: the batch's ``(image, mask)`` as plain tensors on ``device``."""
    image = convert_to_tensor(batchdata[Keys.IMAGE], track_meta=False).float()
    mask = convert_to_tensor(batchdata[Keys.MASK], track_meta=False).float()
    return image.to(device, non_blocking=non_blocking), mask.to(device, non_blocking=non_blocking)


def build_seg_evaluator(
    config: SegmentationConfig,
    network: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    prefix: str = "val_",
) -> SupervisedEvaluator:
    """A ``SupervisedEvaluator`` with sliding-window inference and every segmentation metric.

    Metrics: ``<prefix>mean_dice`` (the key metric, MONAI ``MeanDice`` of the lesion class over the
    images whose truth has a lesion) and ``<prefix>dice``, ``hd95``, ``nsd``, ``nsd_tolerance``,
    ``lesion_sensitivity``, ``lesion_precision`` and the lesion counts
    (:class:`~evaluation.segmentation_metrics.SegmentationScores`: every image, empty masks as that
    module defines).
    """
    pair = from_engine([Keys.PRED, Keys.LABEL])
    return SupervisedEvaluator(
        device=device,
        val_data_loader=loader,
        network=network,
        prepare_batch=segmentation_batch,
        inferer=build_inferer(config),
        postprocessing=Compose(
            [AsDiscreted(Keys.PRED, argmax=True, to_onehot=2), AsDiscreted(Keys.LABEL, to_onehot=2)]
        ),
        key_val_metric={f"{prefix}{KEY_METRIC}": MeanDice(include_background=False, output_transform=pair)},
        additional_metrics={
            f"{prefix}scores": SegmentationScores(
                output_transform=pair, prefix=prefix, nsd_tolerance=config.nsd_tolerance
            )
        },
    )


def segmentation_dataset(config: SegmentationConfig, records: list[dict], training: bool) -> CacheDataset:
    """One split's ``CacheDataset`` (training: patch sampling and flips); a bad record's error unwrapped."""
    try:
        return CacheDataset(
            records,
            transform=segmentation_transforms(
                config.patch_size, training, config.intensity_range, flip_prob=config.flip_prob
            ),
            cache_rate=config.cache_rate,
            progress=config.progress,
        )
    except Exception as err:
        raise user_error(err) from err


def evaluation_loader(
    config: SegmentationConfig, records: list[dict], ctx: Any = None, dataset: CacheDataset | None = None
) -> DataLoader:
    """Whole images one at a time (their sizes may differ), in order; under torchrun, this rank's share.

    Args:
        config: the run's settings.
        records: the split's records.
        ctx: the run's :class:`~pipelines.distributed.DistContext`, or ``None`` (one process).
        dataset: the split's dataset when already built (else built from ``records``).
    """
    from pipelines.distributed import make_sampler

    dataset = dataset if dataset is not None else segmentation_dataset(config, records, False)
    sampler = None if ctx is None else make_sampler(dataset, ctx, training=False, seed=config.seed)
    return DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=config.num_workers)


def load_best(network: torch.nn.Module, out_dir: Path, device: torch.device) -> Path:
    """Load ``best.pt`` (else ``last.pt``) of a run folder into ``network``; returns the file used."""
    for name in (BEST_CHECKPOINT, LAST_CHECKPOINT):
        path = out_dir / name
        if path.is_file():
            try:
                state = torch.load(path, map_location=device, weights_only=True)
            except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
                raise ValueError(f"{path}: not a readable checkpoint ({err})") from err
            state = state.get("model", state) if isinstance(state, dict) else state
            try:
                network.load_state_dict(state)
            except (RuntimeError, TypeError) as err:
                first = " ".join(str(err).split())[:300]
                raise ValueError(f"{path}: does not fit the segmenter of its config.json ({first})") from err
            return path
    raise ValueError(f"run {out_dir}: no checkpoint (looked for {BEST_CHECKPOINT}, {LAST_CHECKPOINT})")


def load_segmentation_run(
    run: str | PathLike, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, SegmentationConfig]:
    """A trained segmenter (eval mode) and its settings from a ``medglass segment train`` run folder.

    Args:
        run: the run folder (``config.json`` + ``best.pt`` or ``last.pt``).
        device: where to put the network.

    Returns:
        ``(network, config)``.

    Raises:
        ValueError: no such folder, no or unreadable ``config.json``, no checkpoint, or one that
            does not fit (each naming the file).
    """
    folder = Path(run)
    config_path = folder / "config.json"
    if not folder.is_dir():
        raise ValueError(
            f"segmentation run {folder}: not a folder (expected a `medglass segment train` output)"
        )
    if not config_path.is_file():
        raise ValueError(f"segmentation run {folder}: no config.json (the settings that rebuild the network)")
    try:
        data = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{config_path}: not a readable JSON file ({err})") from err
    try:
        config = SegmentationConfig.from_json(data, base=folder)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{config_path}: {' '.join(str(err).split())}") from err
    config.freeze_encoder, config.pretrained = False, None  # analysis needs neither
    device = torch.device(device)
    network = build_segmenter(config).to(device)
    load_best(network, folder, device)
    return network.eval(), config


def evaluate_segmentation(
    run: str | PathLike,
    datalist: str | PathLike | None = None,
    section: str = "test",
    out_dir: str | PathLike | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Score a trained run on one datalist section: Dice, HD95, NSD, lesion-wise sensitivity/precision.

    Args:
        run: the ``medglass segment train`` run folder.
        datalist: the datalist (default: the run's own).
        section: the section to score.
        out_dir: where ``metrics.json`` goes (default: ``<run>/evaluate_<section>``).
        device: where to run.

    Returns:
        ``<section>_*`` metrics (see :func:`build_seg_evaluator`) and ``<section>_images``.

    Raises:
        ValueError: an unusable run, datalist or section, an unreadable image, a mask whose shape
            differs from its image, or an image of the wrong dimensionality (naming the file).
    """
    network, config = load_segmentation_run(run, device)
    records = load_segmentation_records(datalist or config.datalist, section)
    out = Path(out_dir) if out_dir is not None else Path(run) / f"evaluate_{section}"
    evaluator = build_seg_evaluator(
        config, network, evaluation_loader(config, records), torch.device(device), f"{section}_"
    )
    try:
        evaluator.run()
    except BaseException as err:
        cause = user_error(err)
        if cause is not err and isinstance(cause, ValueError):
            raise cause from err
        raise
    result = {k: float(v) for k, v in evaluator.state.metrics.items()}
    write_text_atomic(out / "metrics.json", json.dumps(json_numbers(result), indent=1, sort_keys=True))
    return result
