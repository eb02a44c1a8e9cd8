"""Lesion-segmentation training of ``GlassBoxSegmenter`` on MONAI's engines, single process or torchrun DDP.

:func:`train_segmentation` runs MONAI's ``SupervisedTrainer`` (``DiceCELoss`` with softmax over
background/lesion logits, Adam, cosine schedule) on patches of ``patch_size`` and validates each
epoch with a ``SupervisedEvaluator`` whose ``SlidingWindowInferer`` (ROI = the training patch)
takes whole images of any size (:mod:`pipelines.segmentation_engines`). Everything else attaches
as in :mod:`pipelines.training`: ``best.pt`` by validation ``val_mean_dice`` (MONAI ``MeanDice``,
lesion class, images with a lesion), ``last.pt`` every epoch (atomic, with the best score,
resumed with MONAI's ``CheckpointLoader``), per-epoch seeding (:mod:`pipelines.epoch_seeding`),
MLflow (params, per-epoch metrics, a few overlay figures per epoch:
:mod:`pipelines.segmentation_figures`). The validation metrics are
:mod:`evaluation.segmentation_metrics` (Dice, HD95, NSD, lesion-wise sensitivity and precision).

``distributed=True`` runs one rank of a data-parallel ``torchrun`` job (:mod:`pipelines.distributed`):
each rank trains on its ``DistributedSampler`` share of the training records with the network in
``DistributedDataParallel`` and validates (and tests) its share of those splits, the metrics
gathered over the ranks (the validation and test sections need at least one image per rank);
rank 0 alone writes files and logs; every rank resumes from ``last.pt`` and returns rank 0's
numbers::

    torchrun --standalone --nproc_per_node=2 -m pipelines.segmentation_training runs/seg/config.json

Example:
    >>> from pipelines.segmentation_config import SegmentationConfig
    >>> metrics = train_segmentation(SegmentationConfig(datalist="cohort/datalist.json",
    ...                                                 out_dir="runs/seg", epochs=2))  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from ignite.engine import Events
from ignite.handlers import Timer
from ignite.metrics import Average
from monai.data import CacheDataset, DataLoader
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import (
    CheckpointLoader,
    CheckpointSaver,
    LrScheduleHandler,
    StatsHandler,
    ValidationHandler,
)
from monai.losses import DiceCELoss
from monai.utils import set_determinism

from evaluation.html_report import write_text_atomic
from pipelines.checkpointing import BestScore, checkpoint_keys, save_last_checkpoint
from pipelines.distributed import (
    DistContext,
    barrier,
    cleanup_distributed,
    init_distributed,
    make_sampler,
    wrap_ddp,
)
from pipelines.epoch_seeding import attach_epoch_seeding
from pipelines.mlflow_tracking import RunTracker
from pipelines.segmentation_config import SegmentationConfig
from pipelines.segmentation_data import choose_label_fraction, load_segmentation_records
from pipelines.segmentation_engines import (
    BEST_CHECKPOINT,
    KEY_METRIC,
    LAST_CHECKPOINT,
    build_inferer,
    build_seg_evaluator,
    build_segmenter,
    evaluation_loader,
    load_best,
    segmentation_batch,
    segmentation_dataset,
)
from pipelines.segmentation_figures import overlay_figure
from pipelines.synthesis_predictions import finite_numbers, json_numbers
from pipelines.training_config import resolve_tracking_uri
from pipelines.user_errors import user_error
from transforms.keys import Keys

__all__ = ["train_segmentation", "main"]


def _device(config: SegmentationConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def _from_rank0(ctx: DistContext, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself in a single-process run)."""
    if not ctx.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _cosine(epochs: int) -> Callable[[int], float]:
    return lambda epoch: 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))


def _prepare_pretrained(config: SegmentationConfig, resuming: bool) -> Any:
    """Load the pretraining run (when there is one and the run is new); set ``size`` from it."""
    if config.pretrained is None or resuming:
        return None
    from pipelines.trained_model import load_trained_model

    trained = load_trained_model(config.pretrained, tracking_uri=config.tracking_uri)
    if trained.config.spatial_dims != config.spatial_dims:
        raise ValueError(
            f"pretrained run {config.pretrained}: a {trained.config.spatial_dims}D encoder, but patch_size "
            f"{config.patch_size} asks for a {config.spatial_dims}D segmenter"
        )
    if trained.config.size != config.size:
        print(
            f"pretrained run {config.pretrained}: size {trained.config.size!r} (its encoder) replaces {config.size!r}",
            file=sys.stderr,
        )
        config.size = trained.config.size
        config.__post_init__()  # patch_size must suit the new preset's stride
    return trained


def _resolve_intensity(config: SegmentationConfig, train_records: list[dict], trained: Any) -> None:
    """Fill ``config.intensity_range`` (dataset mode): the pretraining run's, else the training images'."""
    if config.intensity != "dataset" or config.intensity_range is not None:
        return
    if trained is not None and trained.intensity_range is not None:
        config.intensity_range = trained.intensity_range
        source = f"from the pretraining run {config.pretrained}"
    else:
        from transforms.intensity_range import dataset_intensity_range

        try:
            config.intensity_range = dataset_intensity_range(
                [r[Keys.IMAGE] for r in train_records], seed=config.seed
            )
        except Exception as err:
            raise user_error(err) from err
        source = f"0.5th/99.5th percentiles of {min(len(train_records), 200)} training images"
    lo, hi = config.intensity_range
    print(f"intensity range {lo:.6g} .. {hi:.6g} ({source})", file=sys.stderr)


class _EpochReport:
    """After each validation: overlay figures of the first validation images, MLflow metrics, one line."""

    def __init__(
        self,
        config: SegmentationConfig,
        network: torch.nn.Module,
        evaluator: SupervisedEvaluator,
        dataset: CacheDataset,
        tracker: RunTracker,
        device: torch.device,
    ) -> None:
        self.config = config
        self.network = network
        self.evaluator = evaluator
        self.dataset = dataset
        self.tracker = tracker
        self.device = device
        self.inferer = build_inferer(config)

    def __call__(self, engine: Any) -> None:
        epoch = engine.state.epoch
        metrics = {**engine.state.metrics, **self.evaluator.state.metrics}
        self.tracker.log_metrics(finite_numbers(metrics), step=epoch)
        folder = Path(self.config.out_dir) / "figures"
        self.network.eval()
        with torch.no_grad():
            for index in range(min(self.config.figures, len(self.dataset))):
                item = self.dataset[index]
                image, mask = segmentation_batch(
                    {k: v[None] for k, v in item.items() if k in (Keys.IMAGE, Keys.MASK)}
                )
                pred = self.inferer(image.to(self.device), self.network).argmax(1)[0].cpu()
                name = self.dataset.data[index].get(Keys.ID, str(index))
                path = overlay_figure(
                    folder / f"epoch_{epoch:03d}_{name}.png",
                    image[0, 0],
                    mask[0, 0],
                    pred,
                    f"{name}, epoch {epoch}",
                )
                self.tracker.log_artifact(path)
        shown = ("train_loss", "val_mean_dice", "val_dice", "val_hd95", "val_nsd", "val_lesion_sensitivity")
        print(
            f"epoch {epoch}/{engine.state.max_epochs}: "
            + ", ".join(f"{k} {float(metrics[k]):.4g}" for k in shown if k in metrics),
            file=sys.stderr,
        )


def train_segmentation(config: SegmentationConfig) -> dict[str, float]:
    """Train the glass-box segmenter as ``config`` says; resume from ``out_dir/last.pt`` when present.

    Writes ``out_dir/config.json``, ``last.pt``, ``best.pt`` (the network's state dict at the
    epoch with the best ``val_mean_dice``), ``figures/epoch_NNN_<id>.png`` and ``metrics.json``
    (atomically; NaN as ``null``); logs params, per-epoch metrics, figures and files to MLflow.

    Args:
        config: the run's settings (``size`` and ``intensity_range`` are filled in from a
            pretraining run or the training images when needed).

    Returns:
        The last epoch's ``train_loss`` and ``val_*`` metrics, ``best_val_mean_dice``,
        ``best_epoch``, ``start_epoch``, ``epochs_completed``, ``train_images`` (after the label
        fraction), ``train_seconds``, ``train_img_s`` (patches per second of training, this
        rank's) and, when the datalist has a ``test`` section, the best model's ``test_*``
        metrics. A run whose ``last.pt`` already holds every epoch trains nothing and returns
        the stored ``metrics.json``. The same on every rank.

    Raises:
        ValueError: an unusable datalist (missing or empty section, record without a mask,
            missing file), an unreadable image, a mask whose shape differs from its image, an
            image of the wrong dimensionality, a pretraining run that does not fit, or
            ``distributed=True`` without a torchrun launch; the message names the file or setting.
    """
    ctx = init_distributed(config.device) if config.distributed else DistContext.single(_device(config))
    try:
        result = _train(config, ctx)
        barrier(ctx)  # rank 0 has finished with MLflow and the files before the group goes
        if ctx.distributed:
            gc.collect()  # free the engines' DDP wrapper while the group exists (see pipelines.training)
        return result
    finally:
        cleanup_distributed(ctx)


def _restore_settings(config: SegmentationConfig, out_dir: Path) -> None:
    """A resumed run keeps the preset and intensity range its ``config.json`` stored."""
    stored = json.loads((out_dir / "config.json").read_text())
    config.size = stored.get("size", config.size)
    if config.intensity_range is None and stored.get("intensity_range") is not None:
        config.intensity_range = tuple(stored["intensity_range"])
    config.__post_init__()


def _train(config: SegmentationConfig, ctx: DistContext) -> dict[str, float]:
    set_determinism(seed=config.seed)
    device = ctx.device
    out_dir = Path(config.out_dir)
    last = out_dir / LAST_CHECKPOINT
    resuming = last.is_file()
    if resuming and (out_dir / "config.json").is_file():
        _restore_settings(config, out_dir)
    train_records = load_segmentation_records(config.datalist, "training")
    val_records = load_segmentation_records(config.datalist, "validation")
    test_records = load_segmentation_records(config.datalist, "test", required=False)
    all_train = len(train_records)
    train_records = choose_label_fraction(train_records, config.label_fraction, seed=config.seed)
    trained = _prepare_pretrained(config, resuming)
    _resolve_intensity(config, train_records, trained)

    network = build_segmenter(config)
    result: dict[str, float] = {"train_images": float(len(train_records)), "train_records": float(all_train)}
    if trained is not None:
        from pipelines.transfer_learning import load_pretrained_encoder

        load_pretrained_encoder(network.encoder, trained)
        result["pretrained_encoder"] = 1.0
    if ctx.distributed:
        result["world_size"] = float(ctx.world_size)
    network.to(device)
    train_dataset = segmentation_dataset(config, train_records, training=True)
    sampler = make_sampler(train_dataset, ctx, training=True, seed=config.seed)
    train_loader = DataLoader(
        train_dataset,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=config.num_workers,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:
        write_text_atomic(out_dir / "config.json", json.dumps(config.to_json(relative_to=out_dir), indent=1))
    tracker = RunTracker(
        resolve_tracking_uri(config.tracking_uri),
        config.experiment,
        out_dir,
        config.run_name or f"segmentation-{out_dir.name}",
        enabled=ctx.is_main,
    )
    tracker.start(config.to_params())

    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
    schedule = _cosine(config.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    # every rank validates its share of the split (the metrics are gathered), as pipelines.training does
    val_dataset = segmentation_dataset(config, val_records, training=False)
    val_loader = evaluation_loader(config, val_records, ctx, dataset=val_dataset)
    evaluator = build_seg_evaluator(config, network, val_loader, device, prefix="val_")
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=config.epochs,
        train_data_loader=train_loader,
        network=wrap_ddp(network, ctx, find_unused_parameters=False),
        optimizer=optimizer,
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        prepare_batch=segmentation_batch,
        key_train_metric={"train_loss": Average(output_transform=lambda out: float(out[Keys.LOSS]))},
        decollate=False,
    )
    attach_epoch_seeding(trainer, train_loader, config.seed, ctx.rank)
    saver = None
    if ctx.is_main:
        saver = CheckpointSaver(
            save_dir=str(out_dir),
            save_dict={"model": network},
            save_key_metric=True,
            key_metric_name=f"val_{KEY_METRIC}",
            key_metric_n_saved=1,
            key_metric_filename=BEST_CHECKPOINT,
        )
        saver.attach(evaluator)
    save_dict = {
        "model": network,
        "optimizer": optimizer,
        "trainer": trainer,
        "best": BestScore(evaluator, saver),
    }
    start_epoch = 0
    if resuming:  # every rank loads it
        keys = checkpoint_keys(last)
        load_dict = {k: v for k, v in save_dict.items() if k in keys}
        CheckpointLoader(load_path=str(last), load_dict=load_dict, map_location=device).attach(trainer)

        @trainer.on(Events.STARTED)
        def _resume_schedule(engine: Any) -> None:
            nonlocal start_epoch
            start_epoch = engine.state.epoch
            scheduler.last_epoch = engine.state.epoch
            for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
                group["lr"] = base_lr * schedule(engine.state.epoch)
            if ctx.is_main:
                print(f"resuming {last} at epoch {engine.state.epoch + 1}/{config.epochs}", file=sys.stderr)

    LrScheduleHandler(scheduler, print_lr=False).attach(trainer)
    train_timer = Timer().attach(
        trainer, start=Events.STARTED, resume=Events.EPOCH_STARTED, pause=Events.EPOCH_COMPLETED
    )
    ValidationHandler(interval=1, validator=evaluator, epoch_level=True).attach(trainer)
    if ctx.is_main:
        StatsHandler(name="medglass.segmentation", iteration_log=False, tag_name="train_loss").attach(trainer)
        if config.progress:
            from ignite.handlers import ProgressBar

            ProgressBar(persist=False).attach(
                trainer, output_transform=lambda o: {"loss": float(o[Keys.LOSS])}
            )
        trainer.add_event_handler(
            Events.EPOCH_COMPLETED, _EpochReport(config, network, evaluator, val_dataset, tracker, device)
        )
        # registered last: an epoch counts as done only after validation, figures and logging
        trainer.add_event_handler(Events.EPOCH_COMPLETED, save_last_checkpoint, save_dict, last)

    try:
        trainer.run()
    except BaseException as err:
        tracker.finish(status="FAILED")
        cause = user_error(err)
        if cause is not err and isinstance(cause, ValueError):
            raise cause from err
        raise
    seconds = train_timer.value()
    patches = (trainer.state.epoch - start_epoch) * len(train_loader.sampler or train_dataset)
    result.update({k: float(v) for k, v in trainer.state.metrics.items()})
    result.update(
        {
            "start_epoch": float(start_epoch),
            "epochs_completed": float(trainer.state.epoch),
            "train_seconds": float(seconds),
            "train_img_s": float(patches / seconds) if seconds > 0 else math.nan,
        }
    )
    result.update({k: float(v) for k, v in evaluator.state.metrics.items()})
    result[f"best_val_{KEY_METRIC}"] = float(evaluator.state.best_metric)
    result["best_epoch"] = float(evaluator.state.best_metric_epoch)
    barrier(ctx)  # best.pt is complete before any rank reads it
    load_best(network, out_dir, device)
    if test_records:  # every rank tests its share of the best model; the metrics are gathered
        tester = build_seg_evaluator(
            config, network, evaluation_loader(config, test_records, ctx), device, "test_"
        )
        tester.run()
        result.update({k: float(v) for k, v in tester.state.metrics.items()})
    if not ctx.is_main:  # rank 0 writes and logs, then shares its numbers
        return _from_rank0(ctx, None)
    return _from_rank0(ctx, _finish(config, tracker, result))


def _finish(config: SegmentationConfig, tracker: RunTracker, result: dict[str, float]) -> dict[str, float]:
    """Rank 0 after training and testing: write ``metrics.json``, log the run's end."""
    out_dir = Path(config.out_dir)
    epoch = int(result["epochs_completed"])
    if epoch == int(result["start_epoch"]) and (out_dir / "metrics.json").is_file():
        tracker.finish()  # nothing left to train: the numbers are the finished run's
        stored = json.loads((out_dir / "metrics.json").read_text())
        return {k: math.nan if v is None else float(v) for k, v in stored.items()}
    metrics_path = write_text_atomic(
        out_dir / "metrics.json", json.dumps(json_numbers(result), indent=1, sort_keys=True)
    )
    tracker.log_metrics(
        finite_numbers({k: v for k, v in result.items() if k.startswith(("best_", "test_", "train_img"))}),
        step=epoch,
    )
    tracker.log_artifact(out_dir / "config.json")
    tracker.log_artifact(metrics_path)
    tracker.finish()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry of ``torchrun ... -m pipelines.segmentation_training CONFIG_JSON``: train with ``distributed=True``.

    Args:
        argv: ``[config_json]`` (default: ``sys.argv[1:]``); the JSON holds :class:`SegmentationConfig`
            fields (e.g. a run's ``config.json``; relative paths are taken relative to its folder).

    Returns:
        0 on success, 2 for a bad argument.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: torchrun [...] -m pipelines.segmentation_training CONFIG_JSON", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object of SegmentationConfig fields")
        config = SegmentationConfig.from_json({**data, "distributed": True}, base=path.parent)
    except (OSError, ValueError) as err:
        print(f"pipelines.segmentation_training: error: {path}: {err}", file=sys.stderr)
        return 2
    train_segmentation(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
