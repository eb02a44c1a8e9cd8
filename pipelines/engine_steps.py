"""Iteration functions for MONAI's ``SupervisedTrainer``/``SupervisedEvaluator`` with ``GlassBoxNet``.

The default MONAI iteration computes ``loss(network(image), label)``; the glass-box loss needs
the network's whole output dict, the *unerased* target image (``target``, copied before patch
erasing) and labels in which ``-1`` marks an unlabelled image. These callables are passed as
``iteration_update``; everything else (metrics, logging, checkpoints) attaches as handlers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.utils import convert_to_tensor

from transforms.keys import Keys

__all__ = ["TARGET_KEY", "KL_PER_DIM_KEY", "GlassBoxTrainStep", "GlassBoxEvalStep", "LOSS_TERMS", "unwrap"]

TARGET_KEY = "target"
"""Batch key of the unerased image the reconstruction is compared with."""

LOSS_TERMS = ("loss", "recon", "kl", "ce", "kl_grid")
"""Scalar loss terms put in every step's output (for epoch averages; ``kl_grid`` is 0 for the vector core)."""

KL_PER_DIM_KEY = "kl_per_dim"
"""Step-output key of the batch's KL divergence per latent dimension (a ``(latent_dim,)`` vector)."""


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel``/``DataParallel`` wrapper (else ``network``)."""
    if isinstance(network, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
        return network.module
    return network


def _plain(data: Any) -> torch.Tensor:
    """``data`` as a plain ``torch.Tensor``: a MONAI ``MetaTensor`` batch loses its metadata here.

    The network needs none of it, and every op on a ``MetaTensor`` goes through its
    ``__torch_function__`` (copying metadata onto each result, in the backward pass too),
    which makes a training step slower than the same step on plain tensors
    (``bench/bench_loader.py`` measures metadata tracking on and off).
    """
    return convert_to_tensor(data, track_meta=False)


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class _Step:
    """Shared batch handling of the train and eval steps.

    Args:
        loss_fn: a :class:`~networks.losses.GlassBoxLoss` (its ``iteration`` drives the capacity).
        use_labels: pass labels to the loss (``classify`` mode); ``False`` for ``pretrain``.
        amp: bfloat16 autocast for the forward pass.
    """

    def __init__(self, loss_fn: Any, use_labels: bool = True, amp: bool = False) -> None:
        self.loss_fn = loss_fn
        self.use_labels = use_labels
        self.amp = amp

    def _inputs(
        self, engine: Any, batch: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        device = engine.state.device
        image = _plain(batch[Keys.IMAGE]).to(device).float()
        target = _plain(batch.get(TARGET_KEY, batch[Keys.IMAGE])).to(device).float()
        labels = None
        if Keys.LABEL in batch:
            labels = _plain(batch[Keys.LABEL]).to(device).long().reshape(-1)
        return image, target, labels

    def _forward(
        self, engine: Any, image: torch.Tensor, target: torch.Tensor, labels: torch.Tensor | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        with _autocast(image.device, self.amp):
            outputs = engine.network(image)
        outputs = {k: v.float() for k, v in outputs.items()}
        terms = self.loss_fn(outputs, target, labels if self.use_labels else None)
        return outputs, terms


class GlassBoxTrainStep(_Step):
    """One optimisation step: forward, glass-box loss, backward, optimizer step.

    Args:
        loss_fn: see :class:`_Step`.
        use_labels: see :class:`_Step`.
        amp: see :class:`_Step`.
        frozen_modules: names of frozen sub-modules of the network, kept in eval mode while
            training (so their batch-norm statistics stay those of the pretrained model).

    Returns (from ``__call__``) a dict with the scalar loss terms (detached), the KL per latent
    dimension (:data:`KL_PER_DIM_KEY`) and ``label``.
    """

    def __init__(
        self, loss_fn: Any, use_labels: bool = True, amp: bool = False, frozen_modules: Sequence[str] = ()
    ) -> None:
        super().__init__(loss_fn, use_labels, amp)
        self.frozen_modules = tuple(frozen_modules)

    def __call__(self, engine: Any, batch: Mapping[str, Any]) -> dict[str, Any]:
        image, target, labels = self._inputs(engine, batch)
        engine.network.train()
        for name in self.frozen_modules:
            getattr(unwrap(engine.network), name).eval()
        self.loss_fn.iteration = max(engine.state.iteration - 1, 0)
        engine.optimizer.zero_grad(set_to_none=True)
        _, terms = self._forward(engine, image, target, labels)
        terms[Keys.LOSS].backward()
        engine.optimizer.step()
        out = {name: terms[name].detach() for name in LOSS_TERMS}
        out[KL_PER_DIM_KEY] = terms[KL_PER_DIM_KEY].detach()
        out[Keys.LABEL] = labels
        return out


class GlassBoxEvalStep(_Step):
    """One evaluation step (eval mode, no gradients).

    Returns (from ``__call__``) a dict with the loss terms, ``recon`` image (under ``pred_recon``),
    ``target``, class probabilities ``pred`` and one-hot ``label_onehot`` and hard one-hot
    ``pred_onehot`` (for the labelled samples only; empty when none is labelled), and ``label``.
    """

    def __call__(self, engine: Any, batch: Mapping[str, Any]) -> dict[str, Any]:
        image, target, labels = self._inputs(engine, batch)
        engine.network.eval()
        with torch.no_grad():
            outputs, terms = self._forward(engine, image, target, labels)
        logits = outputs[Keys.LOGITS]
        num_classes = logits.shape[1]
        if labels is None:
            labels = torch.full((image.shape[0],), -1, dtype=torch.long, device=image.device)
        known = labels >= 0
        probs = torch.softmax(logits[known], dim=1)
        onehot = torch.nn.functional.one_hot(labels[known], num_classes).float()
        hard = torch.nn.functional.one_hot(probs.argmax(1), num_classes).float()
        out: dict[str, Any] = {name: terms[name].detach() for name in LOSS_TERMS}
        out.update(
            {
                "pred_recon": outputs[Keys.RECON],
                TARGET_KEY: target,
                Keys.PRED: probs,
                "pred_onehot": hard,
                "label_onehot": onehot,
                Keys.LABEL: labels,
            }
        )
        return out
