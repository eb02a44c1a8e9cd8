"""flat_numbers keeps every scalar an engine reports, whatever its numeric type."""

from __future__ import annotations

import numpy as np
import torch

from pipelines.training_metrics import flat_numbers


def test_flat_numbers_accepts_numpy_and_torch_scalars():
    metrics = {
        "auc32": np.float32(0.45),  # MONAI's ROCAUC can return float32: not a float subclass
        "auc64": np.float64(0.5),
        "tensor": torch.tensor(2.0),
        "one_item": [torch.tensor([3.0])],
        "int": 4,
        "vector": torch.tensor([1.0, 2.0]),
        "flag": True,
        "text": "x",
    }
    out = flat_numbers(metrics)
    assert out == {"auc32": float(np.float32(0.45)), "auc64": 0.5, "tensor": 2.0, "one_item": 3.0, "int": 4.0}
    assert all(type(v) is float for v in out.values())
