"""Training workflows of ``GlassBoxNet``: ``pretrain`` (β-VAE with context modelling) and ``classify``.

:func:`train` builds MONAI's ``SupervisedTrainer`` and ``SupervisedEvaluator`` (Ignite engines)
with the glass-box iteration steps of :mod:`pipelines.engine_steps`; everything else is a
MONAI/Ignite handler: validation every epoch, stats/progress, checkpoints (``best.pt`` by
validation AUC in ``classify`` mode or by lowest validation loss in ``pretrain`` mode, and
``last.pt``), resuming from ``last.pt``, early stopping, a cosine learning-rate schedule and
MLflow (guarded, see :mod:`pipelines.mlflow_tracking`).

Example:
    >>> from pipelines.training_config import TrainConfig
    >>> metrics = train(TrainConfig(datalist="cohort/datalist.json", out_dir="runs/pre",
    ...                             mode="pretrain", epochs=2))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events
from ignite.metrics import Average
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import (
    ROCAUC,
    CheckpointLoader,
    CheckpointSaver,
    ConfusionMatrix,
    EarlyStopHandler,
    LrScheduleHandler,
    MeanSquaredError,
    StatsHandler,
    ValidationHandler,
)
from monai.transforms import Compose, CopyItemsd, DeleteItemsd, Transform
from monai.utils import set_determinism

from networks.glassbox import GlassBoxNet
from networks.losses import GlassBoxLoss
from pipelines.datalists import UNLABELLED, check_labels, load_datalist, mask_labels
from pipelines.engine_steps import LOSS_TERMS, TARGET_KEY, GlassBoxEvalStep, GlassBoxTrainStep
from pipelines.mlflow_tracking import RunTracker
from pipelines.training_config import TrainConfig, resolve_tracking_uri
from pipelines.transfer_learning import ENCODER_MODULES, freeze_encoder, load_pretrained
from transforms.image_loading import LoadMedicalImaged
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


def build_network(config: TrainConfig) -> GlassBoxNet:
    """The ``GlassBoxNet`` a config describes (one input channel)."""
    return GlassBoxNet(
        spatial_dims=config.spatial_dims,
        in_channels=1,
        num_classes=config.num_classes,
        img_size=config.spatial_size,
        size=config.size,
        latent_dim=config.latent_dim,
    )


def build_transforms(config: TrainConfig, training: bool) -> Compose:
    """Load + preprocess (+ for training: copy the image to ``target``, then random patch erasing).

    Args:
        config: the run's settings (``spatial_size``, ``erase_prob``).
        training: add the context-modelling augmentation.

    Returns:
        A MONAI ``Compose`` for records with ``image`` (and ``label``).
    """
    chain: list[Transform] = [LoadMedicalImaged(Keys.IMAGE.value)]
    chain += preprocessing_transforms(Keys.IMAGE.value, spatial_size=config.spatial_size, channels=1)
    chain.append(CopyItemsd(Keys.IMAGE.value, times=1, names=TARGET_KEY))
    if training and config.erase_prob > 0:
        chain += [
            RandPatchErased(
                Keys.IMAGE.value,
                num_patches=(1, 3),
                size_fraction=(0.1, 0.25),
                fill=0.0,
                prob=config.erase_prob,
            ),
            DeleteItemsd(Keys.ERASED_BOXES.value),  # box counts vary: they would not collate
        ]
    return Compose(chain)


def _records(config: TrainConfig, section: str, required: bool) -> list[dict]:
    """Records of one section reduced to ``image`` (+ ``label``), labels checked."""
    records = load_datalist(config.datalist, section, required=required)
    if config.mode == "pretrain":
        return [{Keys.IMAGE.value: r[Keys.IMAGE.value]} for r in records]
    check_labels(records, config.num_classes, allow_unlabelled=section == "training")
    if section == "training":
        records = mask_labels(records, config.label_fraction, seed=config.seed)
    return [
        {Keys.IMAGE.value: r[Keys.IMAGE.value], Keys.LABEL.value: int(r.get(Keys.LABEL.value, UNLABELLED))}
        for r in records
    ]


def _loader(config: TrainConfig, records: list[dict], training: bool) -> DataLoader:
    return DataLoader(
        Dataset(records, transform=build_transforms(config, training)),
        batch_size=config.batch_size,
        shuffle=training,
        num_workers=config.num_workers,
    )


def _item(name: str) -> Callable[[dict], Any]:
    return lambda output: output[name]


def _eval_metrics(config: TrainConfig, prefix: str) -> tuple[dict, dict]:
    """(key metric, additional metrics) of an evaluator, names prefixed (``val_``/``test_``)."""
    losses = {f"{prefix}_{term}": Average(output_transform=_item(term)) for term in LOSS_TERMS}
    recon = MeanSquaredError(output_transform=lambda o: (o["pred_recon"], o[TARGET_KEY]))
    if config.mode == "pretrain":
        key = {f"{prefix}_loss": losses.pop(f"{prefix}_loss")}
        return key, {**losses, f"{prefix}_recon_mse": recon}
    key = {f"{prefix}_auc": ROCAUC(output_transform=lambda o: (o[Keys.PRED.value], o["label_onehot"]))}
    extra: dict[str, Any] = {**losses, f"{prefix}_recon_mse": recon}
    for name in ("accuracy", "sensitivity", "specificity"):
        extra[f"{prefix}_{name}"] = ConfusionMatrix(
            include_background=config.num_classes > 2,
            metric_name=name,
            output_transform=lambda o: (o["pred_onehot"], o["label_onehot"]),
        )
    return key, extra


def _evaluator(
    config: TrainConfig,
    device: torch.device,
    network: torch.nn.Module,
    loader: DataLoader,
    loss_fn: Any,
    prefix: str,
) -> SupervisedEvaluator:
    key, extra = _eval_metrics(config, prefix)
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


def _number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return _number(value[0])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _flat_numbers(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for name, value in metrics.items():
        number = _number(value)
        if number is not None:
            out[name] = number
    return out


def _cosine(epochs: int) -> Callable[[int], float]:
    return lambda epoch: 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))


def _save_last_checkpoint(engine: Any, save_dict: dict[str, Any], path: Path) -> None:
    """Write ``last.pt`` after every epoch, atomically (temporary file, then rename).

    Hand-written rather than MONAI's ``CheckpointSaver(save_interval=1)`` because resume
    and bundle configs need one fixed file name (MONAI's interval checkpoints embed the
    epoch in theirs), and because a kill during the write must never leave a truncated
    ``last.pt``: the previous epoch's file stays until the new one is complete. The file
    holds ``{key: state_dict}``, the layout MONAI's ``CheckpointLoader`` reads.
    """
    tmp = path.with_name(path.name + ".tmp")
    torch.save({key: obj.state_dict() for key, obj in save_dict.items()}, tmp)
    os.replace(tmp, path)


def train(config: TrainConfig) -> dict[str, float]:
    """Train ``GlassBoxNet`` as ``config`` says; resume from ``out_dir/last.pt`` when present.

    Writes ``out_dir/config.json``, ``best.pt`` / ``last.pt`` checkpoints and
    ``out_dir/metrics.json`` (flat name → number: final validation metrics, the best validation
    key metric and its epoch, and ``test_*`` metrics of the best model when the datalist has a
    ``test`` section), and logs params, per-epoch metrics and the final metrics to MLflow.

    Args:
        config: the run's settings.

    Returns:
        The metrics written to ``metrics.json``.

    Raises:
        ValueError: an unusable datalist (missing/empty section, missing file, label out of
            range) or pretrained checkpoint; the message names it.
    """
    set_determinism(seed=config.seed)
    out_dir = Path(config.out_dir)
    train_records = _records(config, "training", required=True)
    val_records = _records(config, "validation", required=True)
    test_records = _records(config, "test", required=False)
    if config.mode == "classify" and all(r[Keys.LABEL.value] == UNLABELLED for r in train_records):
        raise ValueError(f"datalist {config.datalist}: no labelled training record (classify mode)")

    if config.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(config.device)
    network = build_network(config).to(device)
    result: dict[str, float] = {}
    if config.pretrained is not None:
        loaded = load_pretrained(network, config.pretrained)
        result["pretrained_tensors_loaded"] = float(len(loaded))
        print(
            f"pretrained {config.pretrained}: loaded {len(loaded)} encoder/decoder tensors", file=sys.stderr
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
    )
    labelled = sum(r.get(Keys.LABEL.value, UNLABELLED) != UNLABELLED for r in train_records)
    result["train_labelled"] = float(labelled)
    result["train_images"] = float(len(train_records))

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config.to_json(), indent=1, default=str))
    tracking_uri = resolve_tracking_uri(config.tracking_uri)
    tracker = RunTracker(
        tracking_uri, config.experiment, out_dir, config.run_name or f"{config.mode}-{out_dir.name}"
    )
    tracker.start(config.to_params())

    evaluator = _evaluator(config, device, network, _loader(config, val_records, False), loss_fn, "val")
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=config.epochs,
        train_data_loader=_loader(config, train_records, True),
        network=network,
        optimizer=optimizer,
        loss_function=loss_fn,
        iteration_update=GlassBoxTrainStep(
            loss_fn,
            use_labels=config.mode == "classify",
            amp=config.amp,
            frozen_modules=ENCODER_MODULES if config.freeze_encoder else (),
        ),
        key_train_metric={"train_loss": Average(output_transform=_item("loss"))},
        additional_metrics={f"train_{t}": Average(output_transform=_item(t)) for t in LOSS_TERMS[1:]},
        decollate=False,
    )

    last = out_dir / LAST_CHECKPOINT
    save_dict = {"model": network, "optimizer": optimizer, "trainer": trainer}
    start_epoch = 0
    if last.is_file():
        CheckpointLoader(load_path=str(last), load_dict=save_dict, map_location=device).attach(trainer)

        @trainer.on(Events.STARTED)
        def _resume_schedule(engine: Any) -> None:
            nonlocal start_epoch
            start_epoch = engine.state.epoch
            scheduler.last_epoch = engine.state.epoch  # the schedule continues where it stopped
            for group, base_lr in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
                group["lr"] = base_lr * schedule(engine.state.epoch)
            print(f"resuming {last} at epoch {engine.state.epoch + 1}/{config.epochs}", file=sys.stderr)

    key_name = "val_loss" if config.mode == "pretrain" else "val_auc"
    CheckpointSaver(
        save_dir=str(out_dir),
        save_dict={"model": network},
        save_key_metric=True,
        key_metric_name=key_name,
        key_metric_n_saved=1,
        key_metric_filename=BEST_CHECKPOINT,
        key_metric_negative_sign=config.mode == "pretrain",
    ).attach(evaluator)
    if config.early_stop_patience > 0:
        sign = -1.0 if config.mode == "pretrain" else 1.0
        EarlyStopHandler(
            patience=config.early_stop_patience,
            score_function=lambda engine: sign * float(engine.state.metrics[key_name]),
            trainer=trainer,
        ).attach(evaluator)
    LrScheduleHandler(scheduler, print_lr=False).attach(trainer)
    ValidationHandler(interval=1, validator=evaluator, epoch_level=True).attach(trainer)
    StatsHandler(name="medglass.training", iteration_log=False, tag_name="train_loss").attach(trainer)
    StatsHandler(name="medglass.training", iteration_log=False, output_transform=lambda x: None).attach(
        evaluator
    )
    if config.progress:
        from ignite.handlers import ProgressBar

        ProgressBar(persist=False).attach(trainer, output_transform=lambda o: {"loss": float(o["loss"])})
    tracker.attach(trainer)
    tracker.attach(evaluator, global_epoch=lambda _: trainer.state.epoch)
    # registered last: an epoch counts as done only after validation and logging finished
    trainer.add_event_handler(Events.EPOCH_COMPLETED, _save_last_checkpoint, save_dict, last)

    try:
        trainer.run()
    except BaseException:
        tracker.finish(status="FAILED")
        raise

    result.update(_flat_numbers(evaluator.state.metrics))
    result.update(_flat_numbers(trainer.state.metrics))
    result["epochs_completed"] = float(trainer.state.epoch)
    result["start_epoch"] = float(start_epoch)
    result[f"best_{key_name}"] = float(evaluator.state.best_metric)
    result["best_epoch"] = float(evaluator.state.best_metric_epoch)
    best = out_dir / BEST_CHECKPOINT
    if test_records:
        if best.is_file():
            state = torch.load(best, map_location=device, weights_only=True)
            network.load_state_dict(state.get("model", state))  # ignite unwraps a one-item save_dict
        tester = _evaluator(config, device, network, _loader(config, test_records, False), loss_fn, "test")
        tester.run()
        result.update(_flat_numbers(tester.state.metrics))
    metrics_path = out_dir / "metrics.json"
    metrics_path.write_text(json.dumps(result, indent=1, sort_keys=True))
    per_epoch = set(evaluator.state.metrics) | set(trainer.state.metrics)  # already logged each epoch
    tracker.log_metrics({k: v for k, v in result.items() if k not in per_epoch}, step=trainer.state.epoch)
    tracker.log_artifact(out_dir / "config.json")
    tracker.log_artifact(metrics_path)
    tracker.finish()
    if tracker.run_id is not None:
        logger.info("MLflow run %s at %s", tracker.run_id, tracking_uri)
    return result
