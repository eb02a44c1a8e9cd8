"""Tests for pipelines/engine_steps.py."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from monai.data import MetaTensor, list_data_collate

from networks import GlassBoxLoss, GlassBoxNet
from pipelines.engine_steps import TARGET_KEY, GlassBoxEvalStep, GlassBoxTrainStep


class _Recorder(GlassBoxNet):
    """GlassBoxNet that remembers the type of every input it was given."""

    seen: list[type]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen.append(type(x))
        return super().forward(x)


def _batch() -> dict:
    items = [
        {
            "image": MetaTensor(torch.rand(1, 16, 16), meta={"filename_or_obj": f"img{i}.nii.gz"}),
            TARGET_KEY: MetaTensor(torch.rand(1, 16, 16)),
            "label": i % 2,
        }
        for i in range(4)
    ]
    batch = list_data_collate(items)
    assert isinstance(batch["image"], MetaTensor)  # what MONAI's loaders deliver
    return batch


def test_steps_feed_the_network_plain_tensors_and_train():
    torch.manual_seed(0)
    net = _Recorder(img_size=(16, 16), latent_dim=4)
    net.seen = []
    engine = SimpleNamespace(
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        state=SimpleNamespace(iteration=1, device=torch.device("cpu")),
    )
    batch = _batch()
    before = net.head.weight.detach().clone()
    out = GlassBoxTrainStep(GlassBoxLoss(beta=0.0))(engine, batch)
    assert not torch.equal(before, net.head.weight)  # the optimiser stepped
    assert out["label"].tolist() == [0, 1, 0, 1]
    assert type(out["loss"]) is torch.Tensor and torch.isfinite(out["loss"])
    evaluated = GlassBoxEvalStep(GlassBoxLoss(beta=0.0))(engine, batch)
    assert evaluated["pred"].shape == (4, 2)
    assert net.seen == [torch.Tensor, torch.Tensor]
