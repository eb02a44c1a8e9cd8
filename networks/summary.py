"""Parameter counts, MACs and latency of a model, as a dict and a printable table.

MACs come from PyTorch's own :class:`torch.utils.flop_counter.FlopCounterMode`,
which counts the FLOPs of matrix multiplications and convolutions (grouped and
depthwise convs included) and counts one multiply-accumulate as 2 FLOPs; we
report ``MACs = FLOPs / 2``. Norms, activations, pooling, interpolation and
element-wise ops are not counted (they are a few percent of the total and
memory-bound). Written here because no maintained library in the stack prints
params + MACs + latency for MONAI networks in 2D and 3D.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_parameters", "count_macs", "model_summary", "format_summary"]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """Total and trainable parameter counts.

    Args:
        model: any module.

    Returns:
        ``(total, trainable)``.

    Example:
        >>> count_parameters(nn.Linear(3, 2))
        (8, 8)
    """
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def _check_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if len(shape) < 2 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"input_shape must be positive ints (batch, channel, *spatial), got {input_shape!r}")
    return shape


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, dict[str, int]]:
    """Multiply-accumulates of one forward pass in eval mode, in total and per direct child module.

    Args:
        model: module taking one tensor.
        input_shape: full input shape including batch, e.g. ``(1, 1, 64, 64)``.

    Returns:
        ``(total_macs, {child_name: macs})``; MACs = FLOPs / 2 as counted by ``FlopCounterMode``.

    Raises:
        ValueError: if ``input_shape`` is not a shape of positive ints.

    Example:
        >>> count_macs(nn.Conv2d(1, 4, 3, padding=1, bias=False), (1, 1, 8, 8))[0]
        2304
    """
    shape = _check_shape(input_shape)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False, depth=2)
        with torch.no_grad(), counter:
            model(torch.zeros(shape, device=device))
    finally:
        model.train(was_training)
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    children: dict[str, int] = {}
    for name, _ in model.named_children():
        key = f"{root}.{name}"
        if key in per_module:
            children[name] = int(sum(per_module[key].values())) // 2
    return int(counter.get_total_flops()) // 2, children


def model_summary(model: nn.Module, input_shape: Sequence[int], latency_runs: int = 0) -> dict[str, Any]:
    """Params, MACs and (optionally) latency of a model for one input shape.

    Args:
        model: module taking one tensor.
        input_shape: full input shape including batch, e.g. ``(1, 1, 64, 64)``.
        latency_runs: if > 0, time this many eval-mode forward passes (after one warm-up)
            and report the median in milliseconds.

    Returns:
        Dict with ``params_total``, ``params_trainable``, ``macs`` (= FLOPs / 2),
        ``macs_per_module`` (per direct child), ``input_shape`` and, if timed,
        ``latency_ms``; :func:`format_summary` turns it into a table.

    Raises:
        ValueError: if ``input_shape`` is not a shape of positive ints or ``latency_runs`` < 0.

    Example:
        >>> s = model_summary(nn.Linear(3, 2), (1, 3))
        >>> s["params_total"], s["macs"]
        (8, 6)
    """
    if latency_runs < 0:
        raise ValueError(f"latency_runs must be >= 0, got {latency_runs}")
    shape = _check_shape(input_shape)
    total, trainable = count_parameters(model)
    macs, per_module = count_macs(model, shape)
    summary: dict[str, Any] = {
        "input_shape": shape,
        "params_total": total,
        "params_trainable": trainable,
        "macs": macs,
        "macs_per_module": per_module,
        "params_per_module": {name: count_parameters(child)[0] for name, child in model.named_children()},
    }
    if latency_runs:
        summary["latency_ms"] = _latency_ms(model, shape, latency_runs)
    return summary


def _latency_ms(model: nn.Module, shape: tuple[int, ...], runs: int) -> float:
    param = next(model.parameters(), None)
    x = torch.zeros(shape, device=param.device if param is not None else torch.device("cpu"))
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            model(x)
            for _ in range(runs):
                start = time.perf_counter()
                model(x)
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        model.train(was_training)
    return sorted(times)[len(times) // 2]


def format_summary(summary: dict[str, Any]) -> str:
    """Render :func:`model_summary`'s dict as a plain-text table.

    Args:
        summary: the dict returned by :func:`model_summary`.

    Returns:
        A multi-line table: one row per direct child module, then the totals.

    Example:
        >>> print(format_summary(model_summary(nn.Sequential(nn.Linear(3, 2)), (1, 3))).splitlines()[0])
        module                 params        MACs
    """
    lines = [f"{'module':<16}{'params':>13}{'MACs':>12}"]
    for name, params in summary["params_per_module"].items():
        lines.append(f"{name:<16}{params:>13,}{summary['macs_per_module'].get(name, 0):>12,}")
    lines.append("-" * 41)
    lines.append(f"{'total':<16}{summary['params_total']:>13,}{summary['macs']:>12,}")
    lines.append(
        f"trainable params: {summary['params_trainable']:,}   input: {tuple(summary['input_shape'])}"
    )
    if "latency_ms" in summary:
        lines.append(f"latency (median, eval): {summary['latency_ms']:.2f} ms")
    return "\n".join(lines)
