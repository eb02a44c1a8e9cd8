"""Paired image-to-image translation training (pix2pix recipe), e.g. pre- → post-contrast MRI.

:func:`train_synthesis` trains the residual UNet generator of :mod:`networks.translation`
against a conditional PatchGAN critic (MONAI ``PatchDiscriminator`` +
``PatchAdversarialLoss``, least squares) with ``l1_weight × L1 + adversarial_weight ×
adversarial``; ``adversarial_weight=0`` trains L1 alone, without a critic. An Ignite ``Engine``
runs :class:`Pix2PixStep` (the critic's update, then the generator's); MONAI's ``GanTrainer``
does not fit, since it draws its generator input from random latent codes, while pix2pix
conditions both networks on the source image. Everything else attaches to the engine: per-epoch
loss averages (Ignite ``Average``), epoch seeding (:mod:`pipelines.epoch_seeding`, so a resumed
run repeats the uninterrupted one), validation every epoch with the metrics of
:mod:`evaluation.synthesis_metrics` and a PNG panel, ``best.pt`` by the validation metric ``select_by`` (in-lesion error by default), ``last.pt``
every epoch (atomic, :func:`pipelines.checkpointing.save_last_checkpoint`; resumed with MONAI's
``CheckpointLoader`` when ``out_dir`` holds one) and MLflow (:class:`pipelines.mlflow_tracking.RunTracker`).
Data: :mod:`pipelines.synthesis_data` (source and target scaled by one shared map).

``distributed=True`` runs one rank of a data-parallel ``torchrun`` job (:mod:`pipelines.distributed`):
each rank trains on its ``DistributedSampler`` share of the training pairs with generator and
critic in ``DistributedDataParallel`` (the loss averages are reduced over the ranks); rank 0
validates the unwrapped generator on the whole validation (and test) set and alone writes
files, panels and MLflow; every rank resumes from ``last.pt`` and returns rank 0's numbers::

    torchrun --standalone --nproc_per_node=2 -m pipelines.synthesis_training runs/synth/config.json

Example:
    >>> from pipelines.synthesis_config import SELECT_BY, SynthesisConfig
    >>> metrics = train_synthesis(SynthesisConfig(datalist="pairs/datalist.json", out_dir="runs/synth",
    ...                                           spatial_size=(64, 64), epochs=2))  # doctest: +SKIP
"""

from __future__ import annotations

import gc
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from ignite.metrics import Average
from monai.data import CacheDataset, DataLoader
from monai.handlers import CheckpointLoader
from monai.utils import set_determinism
from torch.utils.data.distributed import DistributedSampler

from evaluation.html_report import write_text_atomic
from evaluation.synthesis_figures import synthesis_panel
from evaluation.synthesis_metrics import synthesis_metrics
from networks.patch_critic import adversarial_loss, critic_loss, generator_loss
from networks.translation import (
    ConditionalPatchDiscriminator,
    ResidualTranslator,
    build_discriminator,
    build_generator,
)
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
from pipelines.synthesis_config import SELECT_BY, SynthesisConfig
from pipelines.synthesis_data import PairKeys, load_paired_datalist, paired_transforms
from pipelines.synthesis_predictions import (
    finite_numbers,
    json_numbers,
    mean_metrics,
    plain_tensor,
    predict_cases,
)
from pipelines.training_config import resolve_tracking_uri
from pipelines.user_errors import user_error

__all__ = [
    "train_synthesis",
    "Pix2PixStep",
    "build_synthesis_networks",
    "selection_score",
    "LAST_CHECKPOINT",
    "BEST_CHECKPOINT",
    "main",
]

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
LOSS_NAMES = ("loss_g", "loss_l1", "loss_adv", "loss_d")


def selection_score(metrics: Mapping[str, float], select_by: str) -> float:
    """The score ``best.pt`` is chosen by: ``val_<select_by>`` signed so that higher is better.

    Falls back to whole-image validation SSIM when the chosen metric is not finite (no lesion
    mask in the validation section).

    Example:
        >>> selection_score({"val_lesion_mae": 0.2, "val_ssim": 0.7}, "lesion_mae")
        -0.2
        >>> selection_score({"val_lesion_mae": float("nan"), "val_ssim": 0.7}, "lesion_mae")
        0.7
    """
    value = float(metrics.get(f"val_{select_by}", float("nan")))
    if math.isfinite(value):
        return SELECT_BY[select_by] * value
    return float(metrics.get("val_ssim", float("nan")))


def build_synthesis_networks(
    config: SynthesisConfig,
) -> tuple[ResidualTranslator, ConditionalPatchDiscriminator | None]:
    """The generator and (when ``adversarial_weight > 0``) the critic a config describes."""
    generator = build_generator(config.spatial_dims, channels=config.channels)
    critic = None
    if config.use_discriminator:
        critic = build_discriminator(
            config.spatial_dims, channels=config.disc_channels, num_layers_d=config.disc_layers
        )
    return generator, critic


class Pix2PixStep:
    """One pix2pix iteration: update the critic on (real, synthetic), then the generator.

    Args:
        generator: the translator (its ``DistributedDataParallel`` wrapper under torchrun).
        critic: the conditional critic (or its wrapper), or ``None`` for L1 alone.
        opt_g: generator optimiser.
        opt_d: critic optimiser (``None`` without a critic).
        l1_weight: weight of the L1 term.
        adversarial_weight: weight of the generator's adversarial term.
        device: where batches go.
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        critic: torch.nn.Module | None,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer | None,
        l1_weight: float,
        adversarial_weight: float,
        device: torch.device,
    ) -> None:
        self.device = device
        self.generator = generator
        self.critic = critic
        self.opt_g = opt_g
        self.opt_d = opt_d
        self.l1_weight = float(l1_weight)
        self.adversarial_weight = float(adversarial_weight)
        self.adversarial = adversarial_loss()

    def __call__(self, engine: Engine, batch: Mapping[str, Any]) -> dict[str, float]:
        device = self.device
        source = plain_tensor(batch[PairKeys.SOURCE]).to(device)
        target = plain_tensor(batch[PairKeys.TARGET]).to(device)
        self.generator.train()
        synthetic = self.generator(source)
        loss_d = torch.zeros((), device=device)
        if self.critic is not None and self.opt_d is not None:
            self.critic.train()
            self.opt_d.zero_grad(set_to_none=True)
            loss_d = critic_loss(
                self.adversarial, self.critic(source, target), self.critic(source, synthetic.detach())
            )
            loss_d.backward()
            self.opt_d.step()
        self.opt_g.zero_grad(set_to_none=True)
        loss_l1 = torch.nn.functional.l1_loss(synthetic, target)
        loss_adv = torch.zeros((), device=device)
        if self.critic is not None:
            loss_adv = generator_loss(self.adversarial, self.critic(source, synthetic))
        loss_g = self.l1_weight * loss_l1 + self.adversarial_weight * loss_adv
        loss_g.backward()
        self.opt_g.step()
        return {
            "loss_g": float(loss_g.detach()),
            "loss_l1": float(loss_l1.detach()),
            "loss_adv": float(loss_adv.detach()),
            "loss_d": float(loss_d.detach()),
        }


def _loader(
    config: SynthesisConfig, records: list[dict], training: bool, ctx: DistContext | None = None
) -> DataLoader:
    """A split's loader; under torchrun the training split is sampled per rank (evaluation: whole split)."""
    ctx = ctx or DistContext.single(torch.device("cpu"))
    try:
        dataset = CacheDataset(
            records,
            transform=paired_transforms(config.spatial_size, training=training, flip_prob=config.flip_prob),
            cache_rate=config.cache_rate,
            progress=config.progress and ctx.is_main,
        )
    except Exception as err:
        raise user_error(err) from err
    sampler = make_sampler(dataset, ctx, training=True, seed=config.seed) if training else None
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=training and sampler is None,
        sampler=sampler,
        num_workers=config.num_workers,
    )


def _same_on_every_rank(ctx: DistContext, what: str, value: Any) -> Any:
    """``value``, checked to be equal on every rank (ranks that disagree would wait on each other forever).

    Raises:
        ValueError: the ranks see different values (the message lists them by rank).
    """
    if not ctx.distributed:
        return value
    values: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        raise ValueError(
            f"{what} differs between ranks (by rank: {values}); every rank needs the same files in out_dir"
        )
    return value


def _from_rank0(ctx: DistContext, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (``value`` itself in a single-process run)."""
    if not ctx.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class _Validation:
    """Validation after every epoch: metrics, panel, ``best.pt`` (by SSIM) and MLflow logging."""

    def __init__(
        self,
        config: SynthesisConfig,
        generator: torch.nn.Module,
        loader: DataLoader,
        tracker: RunTracker,
        best: SimpleNamespace,
        device: torch.device,
    ) -> None:
        self.device = device
        self.config = config
        self.generator = generator
        self.loader = loader
        self.tracker = tracker
        self.best = best
        self.out_dir = Path(config.out_dir)

    def evaluate(
        self, loader: DataLoader, device: torch.device, prefix: str
    ) -> tuple[dict[str, float], dict]:
        rows, first = [], {}
        for case in predict_cases(self.generator, loader, device):
            first = first or case
            rows.append(
                synthesis_metrics(
                    case[PairKeys.SOURCE],
                    case[PairKeys.PRED],
                    case[PairKeys.TARGET],
                    case[PairKeys.MASK],
                    threshold=self.config.enhancement_threshold,
                )
            )
        return mean_metrics(rows, prefix), first

    def __call__(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        metrics, first = self.evaluate(self.loader, self.device, "val_")
        engine.state.metrics.update(metrics)
        panel = synthesis_panel(
            self.out_dir / "panels" / f"epoch_{epoch:03d}.png",
            first[PairKeys.SOURCE],
            first[PairKeys.PRED],
            first[PairKeys.TARGET],
            first[PairKeys.MASK],
            title=f"{first[PairKeys.ID]}, epoch {epoch}",
        )
        score = selection_score(metrics, self.config.select_by)
        if math.isfinite(score) and score > self.best.state.best_metric:
            self.best.state.best_metric = score
            self.best.state.best_metric_epoch = epoch
            save_last_checkpoint(engine, {"generator": self.generator}, self.out_dir / BEST_CHECKPOINT)
        self.tracker.log_metrics(finite_numbers(engine.state.metrics), step=epoch)
        self.tracker.log_artifact(panel)
        print(
            f"epoch {epoch}/{engine.state.max_epochs}: "
            + ", ".join(f"{k} {v:.4g}" for k, v in engine.state.metrics.items()),
            file=sys.stderr,
        )


def train_synthesis(config: SynthesisConfig) -> dict[str, float]:
    """Train a source → target translator as ``config`` says; resume from ``out_dir/last.pt`` when present.

    Writes ``out_dir/config.json``, ``last.pt`` (every epoch: networks, optimisers, trainer state,
    best score), ``best.pt`` (``{"generator": state_dict}`` of the epoch with the best validation
    SSIM), ``panels/epoch_NNN.png`` (first validation case: source | synthetic | target |
    predicted | true enhancement | error) and ``metrics.json`` (atomically; NaN written as
    ``null``); logs params, per-epoch losses and metrics, panels and files to MLflow.

    Args:
        config: the run's settings.

    Returns:
        Final numbers: the last epoch's ``train`` loss averages (``loss_g``, ``loss_l1``,
        ``loss_adv``, ``loss_d``) and ``val_*`` metrics, ``best_score`` (the selection metric of ``best.pt``, signed so that
        higher is better: see ``SynthesisConfig.select_by``), ``best_epoch``,
        ``start_epoch`` (0, or the epoch a resumed run started after), ``epochs_completed``, and
        ``test_*`` metrics of the best generator when the datalist has a ``test`` section. A run
        whose ``last.pt`` already holds every epoch trains nothing and returns the stored
        ``metrics.json``.

    Raises:
        ValueError: an unusable datalist, an unreadable image, or a pair whose source and target
            differ in shape or affine (the message names both files); ``distributed=True`` without
            a torchrun launch, or fewer training pairs than ranks.
    """
    ctx = init_distributed(config.device) if config.distributed else None
    try:
        if ctx is None:
            use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
            ctx = DistContext.single(torch.device("cuda" if use_cuda else "cpu"))
        result = _train_synthesis(config, ctx)
        barrier(ctx)  # rank 0 has finished with MLflow and the files before the group goes
        if ctx.distributed:
            gc.collect()  # free the engines' DDP wrappers while the group still exists (see pipelines.training)
        return result
    finally:
        if ctx is not None:
            cleanup_distributed(ctx)


def _train_synthesis(config: SynthesisConfig, ctx: DistContext) -> dict[str, float]:
    set_determinism(seed=config.seed)
    device = ctx.device
    out_dir = Path(config.out_dir)
    train_records = load_paired_datalist(config.datalist, "training")
    val_records = load_paired_datalist(config.datalist, "validation")
    test_records = load_paired_datalist(config.datalist, "test", required=False)
    train_loader = _loader(config, train_records, training=True, ctx=ctx)
    # validation and test run on rank 0 only, over the whole split
    val_loader = _loader(config, val_records, training=False) if ctx.is_main else None

    generator, critic = build_synthesis_networks(config)
    generator.to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=(0.5, 0.999))
    opt_d = None
    if critic is not None:
        critic.to(device)
        opt_d = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=(0.5, 0.999))

    out_dir.mkdir(parents=True, exist_ok=True)
    if ctx.is_main:
        write_text_atomic(out_dir / "config.json", json.dumps(config.to_json(relative_to=out_dir), indent=1))
    tracking_uri = resolve_tracking_uri(config.tracking_uri)
    tracker = RunTracker(
        tracking_uri,
        config.experiment,
        out_dir,
        config.run_name or f"synthesis-{out_dir.name}",
        enabled=ctx.is_main,
    )
    tracker.start(config.to_params())

    # the step trains the DDP wrappers (gradients averaged over the ranks); everything else (checkpoints,
    # validation, best.pt) uses the plain networks, so no file holds "module."-prefixed names
    step = Pix2PixStep(
        wrap_ddp(generator, ctx, find_unused_parameters=False),
        None if critic is None else wrap_ddp(critic, ctx, find_unused_parameters=False),
        opt_g,
        opt_d,
        config.l1_weight,
        config.adversarial_weight,
        device,
    )
    trainer = Engine(step)
    for name in LOSS_NAMES:  # Ignite reduces the averages over the ranks
        Average(output_transform=lambda out, name=name: out[name], device="cpu").attach(trainer, name)
    attach_epoch_seeding(trainer, train_loader, config.seed, ctx.rank)
    sampler = train_loader.sampler
    if isinstance(sampler, DistributedSampler):  # each epoch's split and order from (seed, epoch)

        @trainer.on(Events.EPOCH_STARTED)
        def _set_sampler_epoch(engine: Engine) -> None:
            sampler.set_epoch(engine.state.epoch)

    best = SimpleNamespace(state=SimpleNamespace(best_metric=-math.inf, best_metric_epoch=-1))
    save_dict: dict[str, Any] = {
        "generator": generator,
        "opt_g": opt_g,
        "trainer": trainer,
        "best": BestScore(best),
    }
    if critic is not None and opt_d is not None:
        save_dict.update({"critic": critic, "opt_d": opt_d})
    last = out_dir / LAST_CHECKPOINT
    start_epoch = 0
    if _same_on_every_rank(ctx, f"whether {last} exists", last.is_file()):  # every rank resumes
        keys = checkpoint_keys(last)  # a run resumed with another adversarial_weight keeps what fits
        load_dict = {k: v for k, v in save_dict.items() if k in keys}
        CheckpointLoader(load_path=str(last), load_dict=load_dict, map_location=device).attach(trainer)

        @trainer.on(Events.STARTED)
        def _announce_resume(engine: Engine) -> None:
            nonlocal start_epoch
            start_epoch = engine.state.epoch
            if ctx.is_main:
                print(f"resuming {last} at epoch {engine.state.epoch + 1}/{config.epochs}", file=sys.stderr)

    validation = None
    if ctx.is_main:
        validation = _Validation(config, generator, val_loader, tracker, best, device)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, validation)
        if config.progress:
            from ignite.handlers import ProgressBar

            ProgressBar(persist=False).attach(trainer, output_transform=lambda o: {"loss_g": o["loss_g"]})
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
    if validation is None:  # ranks other than 0: rank 0 tests, writes and logs, then shares its numbers
        return _from_rank0(ctx, None)
    return _from_rank0(ctx, _finish(config, ctx, trainer, validation, tracker, start_epoch, test_records))


def _finish(
    config: SynthesisConfig,
    ctx: DistContext,
    trainer: Engine,
    validation: _Validation,
    tracker: RunTracker,
    start_epoch: int,
    test_records: list[dict],
) -> dict[str, float]:
    """Rank 0 after training: test the best generator, write ``metrics.json``, log the run's end."""
    out_dir, device, best = Path(config.out_dir), ctx.device, validation.best
    generator = validation.generator
    if trainer.state.epoch == start_epoch and (out_dir / "metrics.json").is_file():
        # nothing left to train (the checkpoint holds every epoch): the numbers are the last run's
        stored = json.loads((out_dir / "metrics.json").read_text())
        tracker.finish()
        return {k: math.nan if v is None else float(v) for k, v in stored.items()}
    result: dict[str, float] = {k: float(v) for k, v in trainer.state.metrics.items()}
    if ctx.distributed:
        result["world_size"] = float(ctx.world_size)
    result.update(
        {
            "best_score": float(best.state.best_metric),
            "best_epoch": float(best.state.best_metric_epoch),
            "start_epoch": float(start_epoch),
            "epochs_completed": float(trainer.state.epoch),
        }
    )
    best_path = out_dir / BEST_CHECKPOINT
    if test_records and best_path.is_file():
        generator.load_state_dict(torch.load(best_path, map_location=device, weights_only=True)["generator"])
        test_metrics, _ = validation.evaluate(_loader(config, test_records, training=False), device, "test_")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry of ``torchrun ... -m pipelines.synthesis_training CONFIG_JSON``: train with ``distributed=True``.

    Args:
        argv: ``[config_json]`` (default: ``sys.argv[1:]``); the JSON holds :class:`SynthesisConfig`
            fields (e.g. a run's ``config.json``; relative paths are taken relative to its folder).

    Returns:
        0 on success, 2 for a bad argument.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: torchrun [...] -m pipelines.synthesis_training CONFIG_JSON", file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object of SynthesisConfig fields")
        config = SynthesisConfig.from_json({**data, "distributed": True}, base=path.parent)
    except (OSError, ValueError) as err:
        print(f"pipelines.synthesis_training: error: {path}: {err}", file=sys.stderr)
        return 2
    train_synthesis(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
