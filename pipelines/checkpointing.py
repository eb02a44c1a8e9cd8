"""Checkpoints of a training run: ``last.pt`` written atomically, and the best score kept across resumes.

``last.pt`` holds ``{key: state_dict}`` (MONAI's ``CheckpointLoader`` layout) for the model,
optimizer, trainer and a :class:`BestScore` — the evaluator's best key metric and its epoch
plus the best-model saver's tracking list — so that a resumed run replaces ``best.pt`` only by
a better validation score.

Example:
    >>> import torch
    >>> from pathlib import Path
    >>> save_last_checkpoint(None, {"model": torch.nn.Linear(2, 2)}, Path("last.pt"))  # doctest: +SKIP
    >>> checkpoint_keys("last.pt")  # doctest: +SKIP
    {'model'}
"""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path
from typing import Any

import torch

__all__ = ["BestScore", "save_last_checkpoint", "checkpoint_keys"]


class BestScore:
    """The best validation score of a run as a checkpointable object (``state_dict``/``load_state_dict``).

    Args:
        evaluator: the validation ``SupervisedEvaluator`` (its ``state.best_metric`` and
            ``state.best_metric_epoch`` are saved and restored).
        saver: MONAI ``CheckpointSaver`` writing ``best.pt`` from the evaluator's key metric, or
            ``None`` where no best model is written (ranks other than 0).
    """

    def __init__(self, evaluator: Any, saver: Any = None) -> None:
        self.evaluator = evaluator
        self.saver = saver

    def state_dict(self) -> dict[str, Any]:
        """``best_metric``, ``best_metric_epoch`` and ``saved`` (the saver's ``(priority, file name)`` list)."""
        saved: list[list[Any]] = []
        checkpoint = getattr(self.saver, "_key_metric_checkpoint", None)
        if checkpoint is not None:
            saved = [[float(priority), str(name)] for priority, name in checkpoint.state_dict()["_saved"]]
        return {
            "best_metric": float(self.evaluator.state.best_metric),
            "best_metric_epoch": int(self.evaluator.state.best_metric_epoch),
            "saved": saved,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Args:
            state: the saved dict.

        Raises:
            ValueError: a key is missing.
        """
        missing = {"best_metric", "best_metric_epoch", "saved"} - set(state)
        if missing:
            raise ValueError(f"best-score state lacks {sorted(missing)}")
        self.evaluator.state.best_metric = float(state["best_metric"])
        self.evaluator.state.best_metric_epoch = int(state["best_metric_epoch"])
        if self.saver is not None and state["saved"]:
            self.saver.load_state_dict({"_saved": [(float(p), str(f)) for p, f in state["saved"]]})


def save_last_checkpoint(engine: Any, save_dict: dict[str, Any], path: Path) -> None:
    """Write ``last.pt`` after every epoch, atomically (temporary file, then rename).

    Hand-written rather than MONAI's ``CheckpointSaver(save_interval=1)`` because resume
    and bundle configs need one fixed file name (MONAI's interval checkpoints embed the
    epoch in theirs), and because a kill during the write must never leave a truncated
    ``last.pt``: the previous epoch's file stays until the new one is complete. The file
    holds ``{key: state_dict}``, the layout MONAI's ``CheckpointLoader`` reads.

    Args:
        engine: the trainer (unused; Ignite passes it).
        save_dict: name → object with ``state_dict()``.
        path: the checkpoint file.
    """
    tmp = path.with_name(path.name + ".tmp")
    torch.save({key: obj.state_dict() for key, obj in save_dict.items()}, tmp)
    os.replace(tmp, path)


def checkpoint_keys(path: str | PathLike) -> set[str]:
    """The top-level keys of a ``{key: state_dict}`` checkpoint (memory-mapped, tensors not read).

    Args:
        path: checkpoint file.

    Returns:
        The keys (e.g. ``{"model", "optimizer", "trainer", "best"}``).

    Raises:
        ValueError: the file is not a readable checkpoint dict.
    """
    try:
        checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise ValueError(f"checkpoint {path}: not a readable PyTorch checkpoint ({err})") from err
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"checkpoint {path}: expected a dict of state dicts, got {type(checkpoint).__name__}"
        )
    return set(checkpoint)
