"""``medglass refine-decoder``: sharpen a trained glass-box decoder against a PatchGAN critic (VAE-GAN).

:func:`refine_decoder` fine-tunes the **decoder only** of a ``classify``/``pretrain`` run on MONAI's
``AdversarialTrainer`` (an Ignite engine): each iteration decodes the batch's posterior means and
decoded draws from the run's aggregate-posterior prior (:mod:`networks.decoder_refinement`), updates
the decoder with ``recon_weight × reconstruction + feature_weight × encoder-feature matching +
adversarial_weight × adversarial`` and then MONAI's ``PatchDiscriminator`` with
``PatchAdversarialLoss`` (least squares; :mod:`networks.patch_critic`, shared with the contrast
synthesis). Which images the critic sees as synthetic: both reconstructions (paired with their real
image, so the reconstruction term anchors each code to its image) and aggregate-prior draws
(``prior_share`` of them: ``medglass generate`` samples there by default, and a decoder sharpened on
reconstructions alone leaves those draws as they were). N(0, I) draws are not used: the spatial
core's posterior sits far from N(0, I), and they decode to no image (:mod:`pipelines.generation`).

Encoder, attention, latent layers and classifier head are frozen (no gradient, eval mode
throughout), so latent codes and predictions of real images cannot change; the run measures it on
the test split anyway: the classifier's AUC and the largest change of any latent mean before and
after (``latent_drift_max``, 0.0 expected), and the number of frozen tensors that differ from the
original run bit for bit (``frozen_tensors_changed``, 0 expected).

Everything else attaches to the engine: per-epoch loss averages (Ignite ``Average``), epoch seeding
(:mod:`pipelines.epoch_seeding`), and after each epoch a validation FID (decoded prior draws against
the run's validation images, features of its own encoder, printed beside the real-vs-real floor),
a sample grid (``grids/epoch_NNN.png``: validation images, their reconstructions, prior draws),
``best.pt`` by the lowest validation FID, ``last.pt`` (atomic; resumed with MONAI's
``CheckpointLoader``) and MLflow (:class:`pipelines.mlflow_tracking.RunTracker`: losses and FID per
epoch, the grids, the refined model).

The refined folder is a run folder like the original: ``config.json`` holds the original's
training settings (so ``medglass generate``/``evaluate-generation``/``explain`` load it as they load
the original), ``best.pt``/``last.pt`` the whole network under ``"model"``, ``refinement.json`` the
refinement's settings and the original's checkpoint and SHA-256.

Example:
    >>> from pipelines.decoder_refinement_config import RefineConfig
    >>> metrics = refine_decoder(RefineConfig(model="runs/demo/classify", out_dir="runs/demo/refined",
    ...                                       epochs=5))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from ignite.metrics import Average
from monai.data import CacheDataset, DataLoader
from monai.engines import AdversarialTrainer
from monai.handlers import CheckpointLoader
from monai.metrics import compute_roc_auc
from monai.networks.utils import eval_mode
from monai.utils import AdversarialIterationEvents, AdversarialKeys, convert_to_tensor, set_determinism

from evaluation.generation_metrics import fid, fid_floor
from evaluation.html_report import write_text_atomic
from networks.decoder_refinement import (
    FrozenEncoderDecoder,
    RefinementReconstructionLoss,
    freeze_all_but_decoder,
)
from networks.patch_critic import adversarial_loss, build_patch_critic, critic_loss, generator_loss
from pipelines.checkpointing import BestScore, checkpoint_keys, save_last_checkpoint
from pipelines.datalists import UNLABELLED, load_datalist
from pipelines.decoder_refinement_config import REFINE_SETTINGS_FILE, RefineConfig
from pipelines.engine_steps import TARGET_KEY
from pipelines.epoch_seeding import attach_epoch_seeding
from pipelines.generation import LatentPrior, fit_latent_prior, sample_latents
from pipelines.generation_report import encoder_features
from pipelines.latent_codes import load_model_input
from pipelines.mlflow_tracking import RunTracker
from pipelines.ood_reference import file_sha256
from pipelines.trained_model import TrainedModel, load_trained_model
from pipelines.training import build_transforms
from pipelines.training_config import resolve_tracking_uri
from transforms.keys import Keys

__all__ = ["refine_decoder", "EngineProgress", "LAST_CHECKPOINT", "BEST_CHECKPOINT", "LOSS_NAMES"]

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
LOSS_NAMES = ("loss_recon", "loss_feature", "loss_adv", "loss_d")
"""Per-epoch averages: reconstruction, feature matching, the decoder's (unweighted) adversarial loss, the critic's."""
_GRID_COLUMNS = 8


class EngineProgress:
    """A trainer's progress (epoch, iteration, lengths) as a checkpointable object, without its user keys.

    MONAI's ``AdversarialTrainer`` adds its networks and optimisers to the engine's ``state_dict``
    (Ignite's ``state_dict_user_keys``); saved as they are, ``last.pt`` would hold pickled modules
    that ``torch.load(weights_only=True)`` refuses. Here they are saved separately and the engine
    keeps its own objects when the progress is loaded.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def state_dict(self) -> dict[str, Any]:
        """Ignite's state dict less the user keys."""
        user = set(self.engine.state_dict_user_keys)
        return {k: v for k, v in self.engine.state_dict().items() if k not in user}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the progress; the user keys keep the engine's current objects."""
        user = {k: getattr(self.engine.state, k) for k in self.engine.state_dict_user_keys}
        self.engine.load_state_dict({**state, **user})


class _GeneratorLoss:
    """``adversarial_weight × generator_loss(logits)``, keeping the unweighted value of the last call."""

    def __init__(self, weight: float) -> None:
        self.weight = float(weight)
        self.loss = adversarial_loss()
        self.last = 0.0

    def __call__(self, fake_logits: torch.Tensor) -> torch.Tensor:
        value = generator_loss(self.loss, fake_logits)
        self.last = float(value.detach())
        return self.weight * value


def _check_model(trained: TrainedModel) -> None:
    net = trained.network
    if not callable(getattr(net, "decode", None)) or not isinstance(
        getattr(net, "decoder", None), torch.nn.Module
    ):
        raise ValueError(
            f"model {trained.source}: {type(net).__name__} has no decoder to refine; refine-decoder needs a glass-box "
            "autoencoder run (medglass classify or pretrain)"
        )


def _check_out_dir(config: RefineConfig, trained: TrainedModel, sha: str | None) -> None:
    """Refuse an out_dir that is the original run, or that holds another run's files (a refinement of the same model resumes)."""
    out = Path(config.out_dir)
    if trained.checkpoint is not None and out.resolve() == Path(trained.checkpoint).parent.resolve():
        raise ValueError(
            f"out_dir {out}: is the original run's folder; the refined run needs a folder of its own"
        )
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"out_dir {out}: exists and is not a folder")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    settings = out / REFINE_SETTINGS_FILE
    try:
        stored = json.loads(settings.read_text()).get("source", {}) if settings.is_file() else None
    except (OSError, ValueError, AttributeError):
        stored = None
    if stored is None:
        raise ValueError(
            f"out_dir {out}: already holds files of another run ({', '.join(entries[:5])}) and no {REFINE_SETTINGS_FILE}; "
            "refine-decoder writes into an empty folder or resumes its own"
        )
    if stored.get("sha256") != sha or (sha is None and stored.get("model") != trained.source):
        raise ValueError(
            f"out_dir {out}: holds the refinement of another model ({stored.get('model')}, sha256 "
            f"{str(stored.get('sha256'))[:12]}…); refine {trained.source} into another folder"
        )


def _images(trained: TrainedModel, records: list[dict]) -> torch.Tensor:
    """Model inputs ``(N, 1, *spatial)`` of records, as the classifier sees them (unreadable ones named in the error).

    Not clamped: the dataset-level intensity range lets bright voxels exceed 1, and the classifier
    was trained on them so; the quality metrics clamp to [0, 1] as ``evaluate-generation`` does.
    """
    return torch.cat(
        [
            load_model_input(r[Keys.IMAGE], trained.spatial_size, intensity_range=trained.intensity_range)[0]
            for r in records
        ]
    )


def _decode(trained: TrainedModel, latents: torch.Tensor) -> torch.Tensor:
    net = trained.network
    with torch.no_grad(), eval_mode(net):
        return torch.cat(
            [
                net.decode(latents[i : i + 64].to(trained.device)).clamp(0.0, 1.0).cpu()
                for i in range(0, len(latents), 64)
            ]
        )


def _reconstruct(trained: TrainedModel, images: torch.Tensor) -> torch.Tensor:
    net = trained.network
    with torch.no_grad(), eval_mode(net):
        latents = torch.cat(
            [
                net.encode(images[i : i + 64].to(trained.device))["latent"].cpu()
                for i in range(0, len(images), 64)
            ]
        )
    return _decode(trained, latents)


def _save_grid(rows: list[torch.Tensor], path: Path, title: str) -> Path:
    """Rows of images ``(k, 1, *spatial)`` (middle slice for 3D) as one PNG, via MONAI's ``matshow3d``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from monai.visualize import matshow3d

    frames = []
    for row in rows:
        images = row[:_GRID_COLUMNS, 0]
        images = images[..., images.shape[-1] // 2] if images.dim() == 4 else images
        frames.append(images.transpose(-1, -2))  # (x, y) arrays shown with y down
        if len(images) < _GRID_COLUMNS:
            frames.append(torch.full((_GRID_COLUMNS - len(images), *images.shape[1:]), float("nan")))
    fig, _ = matshow3d(
        torch.cat(frames).numpy(),
        figsize=(1.4 * _GRID_COLUMNS, 1.5 * len(rows) + 0.4),
        title=title,
        frames_per_row=_GRID_COLUMNS,
        vmin=0.0,
        vmax=1.0,
        cmap="gray",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
    return path


class _Validation:
    """After every epoch: validation FID of prior draws, the sample grid, ``best.pt`` (lowest FID), MLflow."""

    def __init__(
        self,
        trained: TrainedModel,
        prior: LatentPrior,
        val_images: torch.Tensor,
        config: RefineConfig,
        tracker: RunTracker,
        best: SimpleNamespace,
    ) -> None:
        self.trained = trained
        self.val_images = val_images
        self.real_features = encoder_features(trained, val_images)  # the encoder is frozen: computed once
        self.floor = fid_floor(self.real_features, seed=config.seed)
        self.latents = sample_latents(prior, config.val_samples, seed=config.seed)
        self.config = config
        self.tracker = tracker
        self.best = best
        self.out_dir = Path(config.out_dir)

    def fid(self) -> tuple[float, torch.Tensor]:
        """``(FID of the decoded prior draws against the validation images, the draws)``."""
        fakes = _decode(self.trained, self.latents)
        return fid(self.real_features, encoder_features(self.trained, fakes)), fakes

    def grid(self, epoch: int, fakes: torch.Tensor, value: float) -> Path:
        real = self.val_images[:_GRID_COLUMNS]
        rows = [
            real,
            _reconstruct(self.trained, real),
            fakes[:_GRID_COLUMNS],
            fakes[_GRID_COLUMNS : 2 * _GRID_COLUMNS],
        ]
        title = f"epoch {epoch}: validation images, reconstructions, prior draws (val FID {value:.3g}, floor {self.floor:.3g})"
        return _save_grid(rows, self.out_dir / "grids" / f"epoch_{epoch:03d}.png", title)

    def __call__(self, engine: Any) -> None:
        epoch = engine.state.epoch
        value, fakes = self.fid()
        engine.state.metrics.update({"val_fid": value, "val_fid_floor": self.floor})
        if math.isfinite(value) and -value > self.best.state.best_metric:
            self.best.state.best_metric = -value
            self.best.state.best_metric_epoch = epoch
            save_last_checkpoint(engine, {"model": self.trained.network}, self.out_dir / BEST_CHECKPOINT)
        self.tracker.log_metrics(
            {k: float(v) for k, v in engine.state.metrics.items() if math.isfinite(float(v))}, step=epoch
        )
        self.tracker.log_artifact(self.grid(epoch, fakes, value))
        print(
            f"refine epoch {epoch}/{engine.state.max_epochs}: "
            + ", ".join(f"{k} {float(v):.4g}" for k, v in engine.state.metrics.items()),
            file=sys.stderr,
        )


def _codes(network: torch.nn.Module, images: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """Head vector ``mu``, whole latent mean and logits of images (eval mode)."""
    parts: dict[str, list[torch.Tensor]] = {"mu": [], "latent": [], "logits": []}
    with torch.no_grad(), eval_mode(network):
        for i in range(0, len(images), 64):
            x = images[i : i + 64].to(device)
            enc = network.encode(x)
            parts["mu"].append(enc["mu"].cpu())
            parts["latent"].append(enc["latent"].cpu())
            parts["logits"].append(network.classify(enc["mu"]).cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


def _auc(logits: torch.Tensor, labels: np.ndarray) -> float:
    known = labels != UNLABELLED
    if known.sum() < 2 or len(set(labels[known].tolist())) < 2:
        return math.nan
    probs = torch.softmax(logits[torch.from_numpy(known)], dim=1)
    onehot = torch.nn.functional.one_hot(torch.from_numpy(labels[known]).long(), probs.shape[1]).float()
    return (
        float(compute_roc_auc(probs, onehot, average="macro"))
        if probs.shape[1] > 2
        else float(compute_roc_auc(probs[:, 1], onehot[:, 1]))
    )


def frozen_changes(original: torch.nn.Module, refined: torch.nn.Module) -> dict[str, int]:
    """How many state-dict tensors differ bit for bit between two networks, outside and inside ``decoder.``.

    Example:
        >>> a = torch.nn.Sequential(torch.nn.Linear(2, 2)); b = copy.deepcopy(a)
        >>> frozen_changes(a, b)
        {'frozen_tensors_changed': 0, 'decoder_tensors_changed': 0}
    """
    before, after = original.state_dict(), refined.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    decoder = [k for k in changed if k.startswith("decoder.")]
    return {"frozen_tensors_changed": len(changed) - len(decoder), "decoder_tensors_changed": len(decoder)}


def _verification(
    original: torch.nn.Module, trained: TrainedModel, records: list[dict], section: str
) -> dict[str, float]:
    """Classifier AUC before/after and the largest latent drift on a split of real images."""
    images = _images(trained, records)
    labels = np.asarray([int(r.get(Keys.LABEL, UNLABELLED)) for r in records])
    before = _codes(original, images, trained.device)
    after = _codes(trained.network, images, trained.device)
    result = {
        f"{section}_auc_before": _auc(before["logits"], labels),
        f"{section}_auc_after": _auc(after["logits"], labels),
        "latent_drift_max": float((after["latent"] - before["latent"]).abs().max()),
        "mu_drift_max": float((after["mu"] - before["mu"]).abs().max()),
        "logit_drift_max": float((after["logits"] - before["logits"]).abs().max()),
    }
    result.update(frozen_changes(original, trained.network))
    return result


def _prepare_batch(
    batch: Mapping[str, Any], device: torch.device, non_blocking: bool = False, **kwargs: Any
) -> tuple:
    """``(image, target)`` as plain tensors (MONAI metadata dropped: the networks need none)."""
    image = (
        convert_to_tensor(batch[Keys.IMAGE], track_meta=False).to(device, non_blocking=non_blocking).float()
    )
    target = (
        convert_to_tensor(batch[TARGET_KEY], track_meta=False).to(device, non_blocking=non_blocking).float()
    )
    return image, target


def _device(config: RefineConfig) -> torch.device:
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(config.device)


def refine_decoder(config: RefineConfig) -> dict[str, float]:
    """Refine the decoder of ``config.model`` into ``config.out_dir``; resume from its ``last.pt`` when present.

    Args:
        config: the refinement's settings.

    Returns:
        Final numbers (also in ``metrics.json``): the last epoch's loss averages (``loss_recon``,
        ``loss_feature``, ``loss_adv``, ``loss_d``), ``val_fid`` and ``val_fid_floor``,
        ``val_fid_before`` (the original decoder), ``best_val_fid`` and ``best_epoch`` (of
        ``best.pt``), ``start_epoch``, ``epochs_completed``, and on the test split (else validation)
        ``<split>_auc_before``/``_after``, ``latent_drift_max``, ``mu_drift_max``,
        ``logit_drift_max``, ``frozen_tensors_changed`` (0 by construction) and
        ``decoder_tensors_changed``. A run whose ``last.pt`` holds every epoch trains nothing and
        returns the stored ``metrics.json``.

    Raises:
        ValueError: an unusable model (named; one without a decoder is refused), an ``out_dir``
            that is the original run's folder or holds another run's files, or an unusable
            training datalist.
    """
    set_determinism(seed=config.seed)
    device = _device(config)
    trained = load_trained_model(config.model, device=device)
    _check_model(trained)
    sha = file_sha256(Path(trained.checkpoint)) if trained.checkpoint is not None else None
    _check_out_dir(config, trained, sha)
    out_dir = Path(config.out_dir)
    net = trained.network
    original = copy.deepcopy(net).eval()
    for p in original.parameters():
        p.requires_grad_(False)
    prior = fit_latent_prior(trained, n_components=config.n_components)
    train_records = load_datalist(trained.config.datalist, "training")[: config.max_images]
    val_records = load_datalist(trained.config.datalist, "validation")
    test_records = load_datalist(trained.config.datalist, "test", required=False)
    verify_section = "test" if test_records else "validation"

    out_dir.mkdir(parents=True, exist_ok=True)
    tracking_uri = config.tracking_uri if config.tracking_uri is not None else trained.config.tracking_uri
    experiment = config.experiment or trained.config.experiment
    run_config = dataclasses.replace(
        trained.config, out_dir=out_dir, tracking_uri=tracking_uri, experiment=experiment
    )
    write_text_atomic(
        out_dir / "config.json", json.dumps(run_config.to_json(relative_to=out_dir), indent=1, default=str)
    )
    provenance = {
        "settings": config.to_json(),
        "source": {
            "model": trained.source,
            "checkpoint": None if trained.checkpoint is None else str(Path(trained.checkpoint).resolve()),
            "sha256": sha,
            "run_id": trained.run_id,
        },
        "trained": "decoder only (encoder, attention, latent layers and head frozen)",
        "critic_sees": f"reconstructions of the batch and aggregate-prior draws ({config.prior_share:.0%} of the synthetic images)",
    }
    write_text_atomic(out_dir / REFINE_SETTINGS_FILE, json.dumps(provenance, indent=1))
    tracker = RunTracker(
        resolve_tracking_uri(tracking_uri), experiment, out_dir, config.run_name or f"refine-{out_dir.name}"
    )
    tracker.start(
        {**config.to_params(), "source_model": trained.source, "source_run_id": str(trained.run_id)}
    )

    transform_config = dataclasses.replace(trained.config, flip_prob=config.flip_prob, erase_prob=0.0)
    dataset = CacheDataset(
        [{Keys.IMAGE: r[Keys.IMAGE]} for r in train_records],
        transform=build_transforms(transform_config, training=True),
        progress=config.progress,
    )
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=0)

    trainable = freeze_all_but_decoder(net)

    def draw(n: int) -> torch.Tensor:  # seeded through NumPy's global state, which epoch seeding resets
        return sample_latents(prior, n, seed=int(np.random.randint(0, 2**31 - 1)))

    generator = FrozenEncoderDecoder(net, sampler=draw, prior_share=config.prior_share)
    critic = build_patch_critic(
        len(trained.spatial_size),
        in_channels=1,
        channels=config.disc_channels,
        num_layers_d=config.disc_layers,
    ).to(device)
    opt_g = torch.optim.Adam(trainable, lr=config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=(0.5, 0.999))
    recon_loss = RefinementReconstructionLoss(net, config.recon_weight, config.feature_weight)
    g_loss = _GeneratorLoss(config.adversarial_weight)
    d_adversarial = adversarial_loss()
    trainer = AdversarialTrainer(
        device=device,
        max_epochs=config.epochs,
        train_data_loader=loader,
        g_network=generator,
        g_optimizer=opt_g,
        g_loss_function=g_loss,
        recon_loss_function=recon_loss,
        d_network=critic,
        d_optimizer=opt_d,
        d_loss_function=lambda real, fake: critic_loss(d_adversarial, real, fake),
        prepare_batch=_prepare_batch,
        decollate=False,
    )

    @trainer.on(AdversarialIterationEvents.GENERATOR_LOSS_COMPLETED)
    def _keep_terms(engine: Any) -> None:
        engine.state.output.update(
            {
                "loss_recon": recon_loss.terms["recon"],
                "loss_feature": recon_loss.terms["feature"],
                "loss_adv": g_loss.last,
            }
        )

    outputs = {"loss_recon": "loss_recon", "loss_feature": "loss_feature", "loss_adv": "loss_adv"}
    outputs["loss_d"] = AdversarialKeys.DISCRIMINATOR_LOSS
    for name, key in outputs.items():
        Average(output_transform=lambda out, key=key: float(out[key]), device="cpu").attach(trainer, name)
    attach_epoch_seeding(trainer, loader, config.seed)

    val_images = _images(trained, val_records).clamp(0.0, 1.0)  # as evaluate-generation compares them
    best = SimpleNamespace(state=SimpleNamespace(best_metric=-math.inf, best_metric_epoch=-1))
    validation = _Validation(trained, prior, val_images, config, tracker, best)
    val_fid_before, _ = validation.fid()  # the original decoder (the weights are loaded at STARTED)
    save_dict: dict[str, Any] = {
        "model": net,
        "critic": critic,
        "opt_g": opt_g,
        "opt_d": opt_d,
        "trainer": EngineProgress(trainer),
        "best": BestScore(best),
    }
    last = out_dir / LAST_CHECKPOINT
    start_epoch = 0
    if last.is_file():
        keys = checkpoint_keys(last)
        CheckpointLoader(
            load_path=str(last),
            load_dict={k: v for k, v in save_dict.items() if k in keys},
            map_location=device,
        ).attach(trainer)

        @trainer.on(Events.STARTED)
        def _announce_resume(engine: Any) -> None:
            nonlocal start_epoch
            start_epoch = engine.state.epoch
            print(f"resuming {last} at epoch {engine.state.epoch + 1}/{config.epochs}", file=sys.stderr)

    trainer.add_event_handler(Events.EPOCH_COMPLETED, validation)
    if config.progress:
        from ignite.handlers import ProgressBar

        ProgressBar(persist=False).attach(
            trainer, output_transform=lambda o: {"recon": float(o["loss_recon"])}
        )
    # registered last: an epoch counts as done only after validation and logging finished
    trainer.add_event_handler(Events.EPOCH_COMPLETED, save_last_checkpoint, save_dict, last)
    try:
        trainer.run()
    except BaseException:
        tracker.finish(status="FAILED")
        raise
    metrics_path = out_dir / "metrics.json"
    if trainer.state.epoch == start_epoch and metrics_path.is_file():
        stored = json.loads(metrics_path.read_text())
        tracker.finish()
        return {k: math.nan if v is None else float(v) for k, v in stored.items()}

    result: dict[str, float] = {k: float(v) for k, v in trainer.state.metrics.items()}
    result.update(
        {
            "val_fid_before": float(val_fid_before),
            "best_val_fid": float(-best.state.best_metric),
            "best_epoch": float(best.state.best_metric_epoch),
            "start_epoch": float(start_epoch),
            "epochs_completed": float(trainer.state.epoch),
            "train_images": float(len(train_records)),
        }
    )
    best_path = out_dir / BEST_CHECKPOINT
    if best_path.is_file():
        net.load_state_dict(torch.load(best_path, map_location=device, weights_only=True)["model"])
    result.update(_verification(original, trained, test_records or val_records, verify_section))
    write_text_atomic(
        metrics_path,
        json.dumps({k: (v if math.isfinite(v) else None) for k, v in sorted(result.items())}, indent=1),
    )
    per_epoch = set(trainer.state.metrics)  # already logged each epoch
    tracker.log_metrics(
        {k: v for k, v in result.items() if k not in per_epoch and math.isfinite(v)}, step=trainer.state.epoch
    )
    for name in ("config.json", REFINE_SETTINGS_FILE, "metrics.json"):
        tracker.log_artifact(out_dir / name)
    tracker.log_model(copy.deepcopy(net).cpu().eval())
    tracker.finish()
    return result
