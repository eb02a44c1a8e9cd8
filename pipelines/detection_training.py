"""Lesion-detection training: the glass-box RetinaNet (:mod:`networks.detection`) on an Ignite engine.

MONAI's detection tutorials train ``RetinaNetDetector`` with a hand-written loop, since the
detector takes a list of images and a list of box targets and returns its own losses, which
MONAI's ``SupervisedTrainer`` (``loss(network(image), label)``) cannot express.
:class:`DetectionStep` is that loop's body as an Ignite process function; everything else
attaches to the engine as in :mod:`pipelines.synthesis_training`: per-epoch loss averages
(Ignite ``Average``), epoch seeding (:mod:`pipelines.epoch_seeding`), validation every epoch
(:mod:`evaluation.detection_metrics`: mAP, FROC, CPM) with a few box figures, ``best.pt`` by
``select_by``, ``last.pt`` every epoch (atomic; resumed with MONAI's ``CheckpointLoader``),
MLflow (:class:`pipelines.mlflow_tracking.RunTracker`: params, per-epoch metrics, figures).

Example:
    >>> from pipelines.detection_config import DetectionConfig
    >>> metrics = train_detection(DetectionConfig(datalist="cohort/datalist.json", out_dir="runs/detect",
    ...                                           epochs=2))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.metrics import Average
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.networks.retinanet_network import RetinaNet
from monai.data import DataLoader
from monai.handlers import CheckpointLoader
from monai.utils import set_determinism

from evaluation.html_report import write_text_atomic
from networks.detection import BOX_KEY, BOX_LABEL_KEY
from pipelines.checkpointing import BestScore, save_last_checkpoint
from pipelines.datalists import mask_labels
from pipelines.detection_config import DetectionConfig
from pipelines.detection_data import load_detection_datalist
from pipelines.detection_figures import draw_boxes
from pipelines.detection_predictions import (
    build_detection_network,
    loader_for,
    make_detector,
    predict_detections,
    score_detections,
)
from pipelines.epoch_seeding import attach_epoch_seeding
from pipelines.mlflow_tracking import RunTracker
from pipelines.synthesis_predictions import finite_numbers, json_numbers, plain_tensor
from pipelines.training_config import resolve_tracking_uri
from pipelines.user_errors import user_error
from transforms.keys import Keys

__all__ = [
    "train_detection",
    "DetectionStep",
    "select_label_fraction",
    "LAST_CHECKPOINT",
    "BEST_CHECKPOINT",
]

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
LOSS_NAMES = ("loss", "loss_cls", "loss_box")


def select_label_fraction(records: Sequence[dict], fraction: float, seed: int) -> list[dict]:
    """The training records whose boxes are used: a ``fraction`` stratified by lesion presence.

    Args:
        records: detection records (``boxes`` arrays).
        fraction: share kept, in (0, 1].
        seed: seed of the choice.

    Returns:
        The kept records, in input order (all of them for ``fraction == 1``).
    """
    if fraction >= 1.0:
        return list(records)
    strata = [{**r, Keys.LABEL: int(len(r[BOX_KEY]) > 0)} for r in records]
    kept = mask_labels(strata, fraction, seed=seed)
    return [r for r, k in zip(records, kept, strict=True) if k[Keys.LABEL] != -1]


def _targets(batch: Sequence[Mapping[str, Any]], device: torch.device) -> list[dict[str, torch.Tensor]]:
    return [
        {
            BOX_KEY: plain_tensor(item[BOX_KEY]).to(device),
            BOX_LABEL_KEY: torch.as_tensor(item[BOX_LABEL_KEY]).long().to(device),
        }
        for item in batch
    ]


class DetectionStep:
    """One training iteration: ``detector(images, targets)`` → classification + box-regression loss.

    Args:
        detector: the MONAI detector (its ``network`` is trained).
        optimizer: optimiser of the trainable parameters.
        device: where batches go.
        frozen: a sub-module kept in eval mode (a frozen encoder keeps its batch-norm statistics).
    """

    def __init__(
        self,
        detector: RetinaNetDetector,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        frozen: torch.nn.Module | None = None,
    ) -> None:
        self.detector = detector
        self.optimizer = optimizer
        self.device = device
        self.frozen = frozen

    def __call__(self, engine: Engine, batch: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        images = torch.stack([plain_tensor(item[Keys.IMAGE]) for item in batch]).to(self.device)
        self.detector.train()
        if self.frozen is not None:
            self.frozen.eval()
        losses = self.detector(images, _targets(batch, self.device))
        loss = losses[self.detector.cls_key] + losses[self.detector.box_reg_key]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {
            "loss": float(loss.detach()),
            "loss_cls": float(losses[self.detector.cls_key].detach()),
            "loss_box": float(losses[self.detector.box_reg_key].detach()),
        }


class _Validation:
    """After every epoch: validation metrics, figures, ``best.pt`` and MLflow logging."""

    def __init__(
        self,
        config: DetectionConfig,
        detector: RetinaNetDetector,
        loader: DataLoader,
        tracker: RunTracker,
        best: SimpleNamespace,
        device: torch.device,
    ) -> None:
        self.config = config
        self.detector = detector
        self.loader = loader
        self.tracker = tracker
        self.best = best
        self.device = device
        self.out_dir = Path(config.out_dir)

    def evaluate(self, loader: DataLoader, prefix: str) -> tuple[dict[str, float], list[dict]]:
        cases = list(predict_detections(self.detector, loader, self.device))
        return score_detections(cases, self.config.iou_threshold, prefix), cases

    def __call__(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        metrics, cases = self.evaluate(self.loader, "val_")
        engine.state.metrics.update(metrics)
        with_boxes = [c for c in cases if len(c[BOX_KEY])] or cases
        for i, case in enumerate(with_boxes[: self.config.figures]):
            figure = draw_boxes(
                self.out_dir / "figures" / f"epoch_{epoch:03d}_{i}.png",
                case[Keys.IMAGE],
                case["pred_boxes"],
                case["pred_scores"],
                case[BOX_KEY],
                title=f"{case[Keys.ID]}, epoch {epoch}",
            )
            self.tracker.log_artifact(figure)
        score = float(metrics.get(f"val_{self.config.select_by}", math.nan))
        if math.isfinite(score) and score > self.best.state.best_metric:
            self.best.state.best_metric = score
            self.best.state.best_metric_epoch = epoch
            save_last_checkpoint(engine, {"network": self.detector.network}, self.out_dir / BEST_CHECKPOINT)
        self.tracker.log_metrics(finite_numbers(engine.state.metrics), step=epoch)
        print(
            f"epoch {epoch}/{engine.state.max_epochs}: "
            + ", ".join(
                f"{k} {v:.4g}" for k, v in engine.state.metrics.items() if not k.startswith("val_froc")
            ),
            file=sys.stderr,
        )


def _apply_pretrained(config: DetectionConfig, network: RetinaNet) -> DetectionConfig:
    """Load the pretraining run's encoder; adopt its intensity range when the config has none."""
    if config.pretrained is None:
        return config
    from pipelines.transfer_learning import load_pretrained_encoder

    run_config = load_pretrained_encoder(
        network.feature_extractor.body, config.pretrained, tracking_uri=config.tracking_uri
    )
    if config.intensity_range is None and run_config.intensity_range is not None:
        config = DetectionConfig.from_json(
            {**config.to_json(), "intensity_range": list(run_config.intensity_range)}
        )
    if config.freeze_encoder:
        for p in network.feature_extractor.body.parameters():
            p.requires_grad_(False)
    return config


def train_detection(config: DetectionConfig) -> dict[str, float]:
    """Train the glass-box detector as ``config`` says; resume from ``out_dir/last.pt`` when present.

    Writes ``out_dir/config.json``, ``last.pt`` (every epoch: network, optimiser, scheduler,
    trainer state, best score), ``best.pt`` (``{"network": state_dict}`` of the epoch with the
    best ``val_<select_by>``), ``figures/epoch_NNN_i.png`` and ``metrics.json`` (atomically;
    NaN as ``null``); logs params, per-epoch losses and metrics and the figures to MLflow.

    Args:
        config: the run's settings.

    Returns:
        The last epoch's loss averages and ``val_*`` metrics, ``best_score``, ``best_epoch``,
        ``start_epoch``, ``epochs_completed``, ``train_images`` (after ``label_fraction``) and
        ``test_*`` metrics of ``best.pt`` when the datalist has a ``test`` section.

    Raises:
        ValueError: an unusable datalist (missing or empty section), an unreadable image, a box
            outside its image (file, box and shape named), or a pretrained run that does not fit.
    """
    set_determinism(seed=config.seed)
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    out_dir = Path(config.out_dir)
    all_train = load_detection_datalist(config.datalist, "training")
    train_records = select_label_fraction(all_train, config.label_fraction, config.seed)
    if not train_records:
        raise ValueError(
            f"label_fraction {config.label_fraction} keeps none of the {len(all_train)} training images of "
            f"{config.datalist}; raise it to at least {1 / len(all_train):.3g}"
        )
    val_records = load_detection_datalist(config.datalist, "validation")
    test_records = load_detection_datalist(config.datalist, "test", required=False)

    network = build_detection_network(config)
    config = _apply_pretrained(config, network)
    network.to(device)
    detector = make_detector(config, network)
    train_loader = loader_for(config, train_records, training=True)
    val_loader = loader_for(config, val_records, training=False)
    trainable = [p for p in network.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)

    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.json", json.dumps(config.to_json(relative_to=out_dir), indent=1))
    tracker = RunTracker(
        resolve_tracking_uri(config.tracking_uri),
        config.experiment,
        out_dir,
        config.run_name or f"detection-{out_dir.name}",
    )
    tracker.start(config.to_params())

    frozen = network.feature_extractor.body if config.freeze_encoder else None
    trainer = Engine(DetectionStep(detector, optimizer, device, frozen=frozen))
    for name in LOSS_NAMES:
        Average(output_transform=lambda out, name=name: out[name], device="cpu").attach(trainer, name)
    attach_epoch_seeding(trainer, train_loader, config.seed)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: scheduler.step())

    best = SimpleNamespace(state=SimpleNamespace(best_metric=-math.inf, best_metric_epoch=-1))
    save_dict: dict[str, Any] = {
        "network": network,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "trainer": trainer,
        "best": BestScore(best),
    }
    last = out_dir / LAST_CHECKPOINT
    start_epoch = 0
    if last.is_file():
        CheckpointLoader(load_path=str(last), load_dict=save_dict, map_location=device).attach(trainer)

        @trainer.on(Events.STARTED)
        def _announce_resume(engine: Engine) -> None:
            nonlocal start_epoch
            start_epoch = engine.state.epoch
            print(f"resuming {last} at epoch {engine.state.epoch + 1}/{config.epochs}", file=sys.stderr)

    validation = _Validation(config, detector, val_loader, tracker, best, device)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, validation)
    if config.progress:
        from ignite.handlers import ProgressBar

        ProgressBar(persist=False).attach(trainer, output_transform=lambda o: {"loss": o["loss"]})
    # registered last: an epoch counts as done only after validation and logging finished
    trainer.add_event_handler(Events.EPOCH_COMPLETED, save_last_checkpoint, save_dict, last)

    try:
        trainer.run(train_loader, max_epochs=config.epochs)
    except BaseException as err:
        tracker.finish(status="FAILED")
        cause = user_error(err)
        if cause is not err and isinstance(cause, ValueError):
            raise cause from err
        raise
    return _finish(config, trainer, validation, tracker, start_epoch, test_records, len(train_records))


def _finish(
    config: DetectionConfig,
    trainer: Engine,
    validation: _Validation,
    tracker: RunTracker,
    start_epoch: int,
    test_records: list[dict],
    train_images: int,
) -> dict[str, float]:
    """After training: test ``best.pt``, write ``metrics.json``, log the run's end."""
    out_dir = Path(config.out_dir)
    if trainer.state.epoch == start_epoch and (out_dir / "metrics.json").is_file():
        stored = json.loads((out_dir / "metrics.json").read_text())
        tracker.finish()
        return {k: math.nan if v is None else float(v) for k, v in stored.items()}
    result: dict[str, float] = {k: float(v) for k, v in trainer.state.metrics.items()}
    best = validation.best.state
    result.update(
        {
            "best_score": float(best.best_metric),
            "best_epoch": float(best.best_metric_epoch),
            "start_epoch": float(start_epoch),
            "epochs_completed": float(trainer.state.epoch),
            "train_images": float(train_images),
        }
    )
    best_path = out_dir / BEST_CHECKPOINT
    if test_records and best_path.is_file():
        network = validation.detector.network
        network.load_state_dict(
            torch.load(best_path, map_location=validation.device, weights_only=True)["network"]
        )
        test_metrics, _ = validation.evaluate(loader_for(config, test_records, training=False), "test_")
        result.update(test_metrics)
    metrics_path = write_text_atomic(
        out_dir / "metrics.json", json.dumps(json_numbers(result), indent=1, sort_keys=True)
    )
    tracker.log_metrics(
        finite_numbers({k: v for k, v in result.items() if k.startswith(("best_", "test_"))}),
        step=trainer.state.epoch,
    )
    tracker.log_artifact(out_dir / "config.json")
    tracker.log_artifact(metrics_path)
    tracker.finish()
    return result
