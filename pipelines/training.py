"""Training workflows of ``GlassBoxNet``: ``pretrain`` (β-VAE with context modelling) and ``classify``.

:func:`train` builds MONAI's ``SupervisedTrainer`` and ``SupervisedEvaluator`` (Ignite engines)
with the glass-box iteration steps of :mod:`pipelines.engine_steps`; everything else is a
MONAI/Ignite handler: validation every epoch, stats/progress, checkpoints (``best.pt`` by
validation AUC in ``classify`` mode or by lowest validation loss in ``pretrain`` mode, and
``last.pt``, which also keeps the best score so a resumed run replaces ``best.pt`` only by a
better one; see :mod:`pipelines.checkpointing`), resuming from ``last.pt`` (every epoch is
seeded from the seed and its number, :mod:`pipelines.epoch_seeding`, so a resumed run ends
with the uninterrupted run's weights), early stopping, a
cosine learning-rate schedule and MLflow (guarded, see :mod:`pipelines.mlflow_tracking`; the
per-epoch metrics are those of :mod:`pipelines.training_metrics`). ``distributed=True`` runs
data-parallel under torchrun (:mod:`pipelines.distributed`).

Example:
    >>> from pipelines.training_config import TrainConfig
    >>> metrics = train(TrainConfig(datalist="cohort/datalist.json", out_dir="runs/pre",
    ...                             mode="pretrain", epochs=2))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import gc
import json
import logging
import math
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events
from ignite.handlers import Timer
from monai.data import CacheDataset, DataLoader, get_track_meta, set_track_meta
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import (
    CheckpointLoader,
    CheckpointSaver,
    EarlyStopHandler,
    LrScheduleHandler,
    StatsHandler,
    ValidationHandler,
)
from monai.transforms import Compose, CopyItemsd, DeleteItemsd, RandFlipd, Transform
from monai.utils import set_determinism

from evaluation.html_report import write_text_atomic
from networks.glassbox import GlassBoxNet
from networks.losses import GlassBoxLoss
from networks.spatial_glassbox import SpatialGlassBoxNet
from pipelines.checkpointing import BestScore, checkpoint_keys, save_last_checkpoint
from pipelines.datalists import UNLABELLED, check_labels, load_datalist, mask_labels
from pipelines.distributed import (
    DistContext,
    barrier,
    cleanup_distributed,
    init_distributed,
    make_sampler,
    wrap_ddp,
)
from pipelines.engine_steps import TARGET_KEY, GlassBoxEvalStep, GlassBoxTrainStep
from pipelines.epoch_seeding import attach_epoch_seeding
from pipelines.mlflow_tracking import RunTracker
from pipelines.sampling import labelled_share_sampler
from pipelines.synthetic_augmentation import prepare_synthetic_minority, synthetic_share_sampler
from pipelines.training_config import TrainConfig, resolve_tracking_uri, run_intensity_range
from pipelines.training_metrics import eval_metrics, flat_numbers, key_metric_name, train_metrics
from pipelines.transfer_learning import ENCODER_MODULES, freeze_encoder, frozen_modules, load_pretrained
from transforms.image_loading import LoadMedicalImaged
from transforms.intensity_range import dataset_intensity_range
from transforms.keys import Keys
from transforms.patch_erasing import RandPatchErased
from transforms.preprocessing import preprocessing_transforms

__all__ = [
    "train",
    "TrainConfig",
    "build_network",
    "build_transforms",
    "load_pretrained",
    "freeze_encoder",
    "ENCODER_MODULES",
    "LAST_CHECKPOINT",
    "BEST_CHECKPOINT",
]

logger = logging.getLogger("medglass.training")

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


def build_network(config: TrainConfig) -> GlassBoxNet | SpatialGlassBoxNet:
    """The network a config describes (one input channel): the spatial-latent or the vector core."""
    if config.latent == "spatial":
        return SpatialGlassBoxNet(
            spatial_dims=config.spatial_dims,
            in_channels=1,
            num_classes=config.num_classes,
            img_size=config.spatial_size,
            size=config.size,
            latent_dim=config.latent_dim,
            spatial_channels=config.spatial_channels,
        )
    return GlassBoxNet(
        spatial_dims=config.spatial_dims,
        in_channels=1,
        num_classes=config.num_classes,
        img_size=config.spatial_size,
        size=config.size,
        latent_dim=config.latent_dim,
        latent_pool=config.latent_pool,
        pooled_logits=config.pooled_logits,
    )


def build_transforms(config: TrainConfig, training: bool) -> Compose:
    """Load + preprocess (+ for training: random flips, copy the image to ``target``, then random
    patch erasing).

    Args:
        config: the run's settings (``spatial_size``, ``flip_prob``, ``erase_prob``).
        training: add the augmentations.

    Returns:
        A MONAI ``Compose`` for records with ``image`` (and ``label``).
    """
    chain: list[Transform] = [LoadMedicalImaged(Keys.IMAGE)]
    chain += preprocessing_transforms(
        Keys.IMAGE, spatial_size=config.spatial_size, channels=1, intensity_range=config.intensity_range
    )
    if training and config.flip_prob > 0:
        # before the copy: the reconstruction target is the flipped image
        chain += [
            RandFlipd(Keys.IMAGE, prob=config.flip_prob, spatial_axis=axis)
            for axis in range(config.spatial_dims)
        ]
    chain.append(CopyItemsd(Keys.IMAGE, times=1, names=TARGET_KEY))
    if training and config.erase_prob > 0:
        chain += [
            RandPatchErased(
                Keys.IMAGE,
                num_patches=(1, 3),
                size_fraction=(0.1, 0.25),
                fill=0.0,
                prob=config.erase_prob,
            ),
            DeleteItemsd(Keys.ERASED_BOXES),  # box counts vary: they would not collate
        ]
    return Compose(chain)


def resolve_intensity_range(config: TrainConfig, train_records: list[dict], verbose: bool = True) -> None:
    """Fill ``config.intensity_range`` in place when ``intensity="dataset"`` and none is set.

    A fine-tuning run (``pretrained``) takes the range its pretraining run stored in the
    ``config.json`` beside the checkpoint, so that the encoder sees inputs scaled as it learned
    them; otherwise the range is computed from the training images
    (:func:`transforms.intensity_range.dataset_intensity_range`, seeded by ``config.seed``).

    Args:
        config: the run's settings (changed in place).
        train_records: the training records (``image`` paths).
        verbose: print the range and where it came from to stderr.

    Raises:
        ValueError: the pretraining run's ``config.json`` is not valid JSON or holds an invalid
            range (naming the file).
    """
    if config.intensity != "dataset" or config.intensity_range is not None:
        return
    source = None
    if config.pretrained is not None:
        run_dir = Path(config.pretrained).parent
        config.intensity_range = run_intensity_range(run_dir)  # None when the run has none
        source = f"from the pretraining run's {run_dir / 'config.json'}"
    if config.intensity_range is None:
        images = [r[Keys.IMAGE] for r in train_records]
        config.intensity_range = dataset_intensity_range(images, seed=config.seed)
        source = f"0.5th/99.5th percentiles of {min(len(images), 200)} training images"
    if verbose:
        lo, hi = config.intensity_range
        print(f"intensity range {lo:.6g} .. {hi:.6g} ({source})", file=sys.stderr)


def _records(config: TrainConfig, section: str, required: bool) -> list[dict]:
    """Records of one section reduced to ``image`` (+ ``label``), labels checked."""
    records = load_datalist(config.datalist, section, required=required)
    if config.mode == "pretrain":
        return [{Keys.IMAGE: r[Keys.IMAGE]} for r in records]
    check_labels(records, config.num_classes, allow_unlabelled=section == "training")
    if section == "training":
        records = mask_labels(records, config.label_fraction, seed=config.seed)
    return [{Keys.IMAGE: r[Keys.IMAGE], Keys.LABEL: int(r.get(Keys.LABEL, UNLABELLED))} for r in records]


def _loader(
    config: TrainConfig,
    records: list[dict],
    training: bool,
    ctx: DistContext,
    synthetic: list[dict] | None = None,
) -> DataLoader:
    """The loader of one split; ``synthetic`` (training only) records follow the real ones."""
    synthetic = [{Keys.IMAGE: r[Keys.IMAGE], Keys.LABEL: int(r[Keys.LABEL])} for r in synthetic or ()]
    records = records + synthetic
    dataset = CacheDataset(
        records,
        transform=build_transforms(config, training),
        cache_rate=config.cache_rate,
        progress=config.progress and ctx.is_main,
    )
    sampler = None
    if training and config.mode == "classify":
        labels = [int(r.get(Keys.LABEL, UNLABELLED)) for r in records]
        if synthetic and config.synthetic_minority < 1:  # a share of every batch
            sampler = synthetic_share_sampler(labels, len(synthetic), config, ctx)
        else:
            sampler = labelled_share_sampler(dataset, labels, config.labelled_share, ctx, config.seed)
    if sampler is None:
        sampler = make_sampler(dataset, ctx, training=training, seed=config.seed)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=training and sampler is None,
        sampler=sampler,
        num_workers=config.num_workers,
    )


def _evaluator(
    config: TrainConfig,
    device: torch.device,
    network: torch.nn.Module,
    loader: DataLoader,
    loss_fn: Any,
    prefix: str,
) -> SupervisedEvaluator:
    key, extra = eval_metrics(config.mode, config.num_classes, config.spatial_dims, prefix)
    lower_is_better = config.mode == "pretrain"
    return SupervisedEvaluator(
        device=device,
        val_data_loader=loader,
        network=network,
        iteration_update=GlassBoxEvalStep(loss_fn, use_labels=config.mode == "classify", amp=config.amp),
        key_val_metric=key,
        additional_metrics=extra,
        metric_cmp_fn=(lambda cur, prev: cur < prev) if lower_is_better else (lambda cur, prev: cur > prev),
        decollate=False,
    )


def _cosine(epochs: int) -> Callable[[int], float]:
    return lambda epoch: 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))


@contextmanager
def _untracked_metadata() -> Iterator[None]:
    """MONAI metadata tracking off inside the block (MONAI's ``set_track_meta(False)``), restored after.

    Training needs no image metadata (no inverse transform, no file written from a batch), and
    with tracking on every cached image is deep-copied as a ``MetaTensor``, every random flip
    records itself in ``applied_operations`` and the collate merges metadata dicts: measured on
    the ``bench/bench_training.py`` cohort (``tiny`` training transforms, batch 32, one thread),
    the loader took 2.1 ms per image with tracking and 0.4–0.7 ms without (cores otherwise idle;
    ``bench/bench_loader.py``: 1.75 vs 0.47 ms), against ~12.7 ms for a ``tiny`` training step;
    the benchmark's whole training loop went from 57.2 to 60.5 images/s. MONAI's fast-training
    tutorial turns it off the same way.
    """
    previous = get_track_meta()
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(previous)


def train(config: TrainConfig) -> dict[str, float]:
    """Train ``GlassBoxNet`` as ``config`` says; resume from ``out_dir/last.pt`` when present.

    Writes ``out_dir/config.json``, ``best.pt`` / ``last.pt`` checkpoints and
    ``out_dir/metrics.json`` (flat name → number: final validation metrics, the best validation
    key metric and its epoch, and ``test_*`` metrics of the best model when the datalist has a
    ``test`` section), and logs params, per-epoch metrics, the final metrics, the files and the
    best model (registered when ``config.registered_model_name`` is set) to MLflow. With
    ``config.distributed`` (under torchrun) every rank trains on its share of the data and only
    rank 0 writes files and logs.

    Args:
        config: the run's settings.

    Returns:
        The metrics written to ``metrics.json`` (the same on every rank).

    Raises:
        ValueError: an unusable datalist (missing/empty section, missing file, label out of
            range), pretrained checkpoint or distributed launch; the message names it.
    """
    ctx = init_distributed(config.device) if config.distributed else None
    try:
        if ctx is None:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            ctx = DistContext.single(device if config.device == "auto" else torch.device(config.device))
        with _untracked_metadata():
            result = _train(config, ctx)
        # rank 0 still logs to MLflow after the others return: tearing the group down while a peer
        # works aborted a gloo rank now and then ("terminate called without an active exception")
        barrier(ctx)
        if ctx.distributed:
            # the Ignite engines form reference cycles that keep the DDP wrapper (its reducer and
            # gloo work objects) alive until a later collection, at worst during interpreter
            # shutdown after the group is gone, where freeing them can abort the rank; free them now
            gc.collect()
        return result
    finally:
        if ctx is not None:
            cleanup_distributed(ctx)


def _train(config: TrainConfig, ctx: DistContext) -> dict[str, float]:
    set_determinism(seed=config.seed)
    out_dir = Path(config.out_dir)
    train_records = _records(config, "training", required=True)
    val_records = _records(config, "validation", required=True)
    test_records = _records(config, "test", required=False)
    if config.mode == "classify" and all(r[Keys.LABEL] == UNLABELLED for r in train_records):
        raise ValueError(f"datalist {config.datalist}: no labelled training record (classify mode)")

    resolve_intensity_range(config, train_records, verbose=ctx.is_main)
    synthetic = None  # drawn from the generator once, into the run folder; training records only
    if config.synthetic_minority > 0:
        synthetic = prepare_synthetic_minority(config, train_records, ctx)
    device = ctx.device
    if config.amp and device.type == "cpu" and ctx.is_main:
        warnings.warn(
            "amp: bfloat16 autocast on a CPU without native bfloat16 kernels runs the convolutions "
            "in emulation and trains several times slower than float32 (bench/bench_models.py "
            "--precisions fp32 bf16 measures it on this machine); use amp on CUDA only",
            UserWarning,
            stacklevel=2,
        )
    network = build_network(config).to(device)
    result: dict[str, float] = {}
    if config.pretrained is not None:
        loaded = load_pretrained(network, config.pretrained)
        result["pretrained_tensors_loaded"] = float(len(loaded))
        if ctx.is_main:
            print(
                f"pretrained {config.pretrained}: loaded {len(loaded)} encoder/decoder tensors",
                file=sys.stderr,
            )
    if config.freeze_encoder:
        freeze_encoder(network)
    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
    schedule = _cosine(config.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    loss_fn = GlassBoxLoss(
        beta=config.beta,
        c_max=config.c_max,
        c_steps=config.c_steps,
        ce_weight=config.effective_ce_weight,
        spatial_dims=config.spatial_dims,
        attention_weight=config.attention_sparsity * config.effective_ce_weight,
        spatial_beta=config.spatial_beta,
    )
    labelled = sum(r.get(Keys.LABEL, UNLABELLED) != UNLABELLED for r in train_records)
    result["train_labelled"] = float(labelled)
    result["train_images"] = float(len(train_records))
    if synthetic is not None:
        result["train_synthetic"] = float(len(synthetic.records))
        result["synthetic_minority_class"] = float(synthetic.cls)
    if ctx.distributed:
        result["world_size"] = float(ctx.world_size)
    # the classifier head gets no gradient in pretrain mode: DDP must look for unused parameters
    engine_net = wrap_ddp(network, ctx, find_unused_parameters=config.mode == "pretrain")

    out_dir.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:
        # paths relative to the run folder: the folder tree can be moved and read from anywhere
        config_json = json.dumps(config.to_json(relative_to=out_dir), indent=1, default=str)
        (out_dir / "config.json.tmp").write_text(config_json)
        (out_dir / "config.json.tmp").replace(out_dir / "config.json")
    tracking_uri = resolve_tracking_uri(config.tracking_uri)
    run_name = config.run_name or f"{config.mode}-{out_dir.name}"
    tracker = RunTracker(tracking_uri, config.experiment, out_dir, run_name, enabled=ctx.is_main)
    tracker.start(config.to_params())

    val_loader = _loader(config, val_records, False, ctx)
    evaluator = _evaluator(config, device, engine_net, val_loader, loss_fn, "val")
    key_metric, train_extra = train_metrics(config.latent_dim)
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=config.epochs,
        train_data_loader=_loader(config, train_records, True, ctx, synthetic and synthetic.records),
        network=engine_net,
        optimizer=optimizer,
        loss_function=loss_fn,
        iteration_update=GlassBoxTrainStep(
            loss_fn,
            use_labels=config.mode == "classify",
            amp=config.amp,
            frozen_modules=frozen_modules(network) if config.freeze_encoder else (),
        ),
        key_train_metric=key_metric,
        additional_metrics=train_extra,
        decollate=False,
    )

    # each epoch's batches, augmentations and noise depend on (seed, epoch, rank) only: a resumed
    # run trains its remaining epochs exactly as the uninterrupted run would have
    attach_epoch_seeding(trainer, trainer.data_loader, config.seed, ctx.rank)

    key_name = key_metric_name(config.mode)
    saver = None
    if ctx.is_main:
        saver = CheckpointSaver(
            save_dir=str(out_dir),
            save_dict={"model": network},
            save_key_metric=True,
            key_metric_name=key_name,
            key_metric_n_saved=1,
            key_metric_filename=BEST_CHECKPOINT,
            key_metric_negative_sign=config.mode == "pretrain",
        )
        saver.attach(evaluator)
    last = out_dir / LAST_CHECKPOINT
    save_dict = {
        "model": network,
        "optimizer": optimizer,
        "trainer": trainer,
        "best": BestScore(evaluator, saver),
    }
    start_epoch = 0
    if last.is_file():  # every rank loads it
        keys = checkpoint_keys(last)  # a last.pt written before "best" existed still resumes
        load_dict = {k: v for k, v in save_dict.items() if k in keys}
        CheckpointLoader(load_path=str(last), load_dict=load_dict, map_location=device).attach(trainer)

        @trainer.on(Events.STARTED)
        def _resume_schedule(engine: Any) -> None:
            nonlocal start_epoch
            start_epoch = engine.state.epoch
            scheduler.last_epoch = engine.state.epoch  # the schedule continues where it stopped
            for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
                group["lr"] = base_lr * schedule(engine.state.epoch)
            if ctx.is_main:
                print(f"resuming {last} at epoch {engine.state.epoch + 1}/{config.epochs}", file=sys.stderr)

    if config.early_stop_patience > 0:  # every rank: the metrics are global, so all stop together
        sign = -1.0 if config.mode == "pretrain" else 1.0
        EarlyStopHandler(
            patience=config.early_stop_patience,
            score_function=lambda engine: sign * float(engine.state.metrics[key_name]),
            trainer=trainer,
        ).attach(evaluator)
    LrScheduleHandler(scheduler, print_lr=False).attach(trainer)
    # training time only: attached before validation, so each epoch's clock stops before it runs
    train_timer = Timer().attach(
        trainer, start=Events.STARTED, resume=Events.EPOCH_STARTED, pause=Events.EPOCH_COMPLETED
    )
    ValidationHandler(interval=1, validator=evaluator, epoch_level=True).attach(trainer)
    if ctx.is_main:
        StatsHandler(name="medglass.training", iteration_log=False, tag_name="train_loss").attach(trainer)
        StatsHandler(name="medglass.training", iteration_log=False, output_transform=lambda x: None).attach(
            evaluator
        )
        if config.progress:
            from ignite.handlers import ProgressBar

            ProgressBar(persist=False).attach(trainer, output_transform=lambda o: {"loss": float(o["loss"])})
    tracker.attach(trainer)
    tracker.attach(evaluator, global_epoch=lambda _: trainer.state.epoch)
    if ctx.is_main:
        # registered last: an epoch counts as done only after validation and logging finished
        trainer.add_event_handler(Events.EPOCH_COMPLETED, save_last_checkpoint, save_dict, last)

    try:
        trainer.run()
    except BaseException:
        tracker.finish(status="FAILED")
        raise

    result.update(flat_numbers(evaluator.state.metrics))
    result.update(flat_numbers(trainer.state.metrics))
    result["epochs_completed"] = float(trainer.state.epoch)
    result["start_epoch"] = float(start_epoch)
    train_seconds = train_timer.value()
    samples = (trainer.state.epoch - start_epoch) * len(trainer.data_loader.sampler)  # this rank's images
    result["train_seconds"] = float(train_seconds)
    result["train_img_s"] = float(samples / train_seconds) if train_seconds > 0 else float("nan")
    result[f"best_{key_name}"] = float(evaluator.state.best_metric)
    result["best_epoch"] = float(evaluator.state.best_metric_epoch)
    best = out_dir / BEST_CHECKPOINT
    barrier(ctx)  # best.pt is complete before any rank reads it
    if best.is_file():
        state = torch.load(best, map_location=device, weights_only=True)
        network.load_state_dict(state.get("model", state))  # ignite unwraps a one-item save_dict
    if test_records:  # every rank tests its share of the best model; the metrics are gathered
        test_loader = _loader(config, test_records, False, ctx)
        tester = _evaluator(config, device, network, test_loader, loss_fn, "test")
        tester.run()
        result.update(flat_numbers(tester.state.metrics))
    if not ctx.is_main:
        return result
    metrics_path = out_dir / "metrics.json"
    write_text_atomic(metrics_path, json.dumps(result, indent=1, sort_keys=True))  # whole or not at all
    from pipelines.ood_reference import write_ood_reference  # late: it loads runs through this module

    ood_file = write_ood_reference(out_dir, device=device)  # what the model's own inputs look like
    per_epoch = set(evaluator.state.metrics) | set(trainer.state.metrics)  # already logged each epoch
    tracker.log_metrics({k: v for k, v in result.items() if k not in per_epoch}, step=trainer.state.epoch)
    tracker.log_artifact(out_dir / "config.json")
    tracker.log_artifact(metrics_path)
    if synthetic is not None:
        tracker.log_artifact(synthetic.out_dir / "generation.json")
    if ood_file is not None:
        tracker.log_artifact(ood_file)
    tracker.log_model(copy.deepcopy(network).cpu().eval(), registered_model_name=config.registered_model_name)
    tracker.finish()
    if tracker.run_id is not None:
        logger.info("MLflow run %s at %s", tracker.run_id, tracking_uri)
    return result
