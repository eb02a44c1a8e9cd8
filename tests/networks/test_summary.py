"""Tests for networks/summary.py: MACs against hand counts, params, table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from networks import GlassBoxNet
from networks.summary import count_macs, format_summary, model_summary


def test_conv2d_macs_by_hand():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
    # every output voxel: 3 in-channels x 3 x 3 multiply-adds; 8 x 16 x 16 outputs
    assert count_macs(conv, (1, 3, 16, 16))[0] == 8 * 16 * 16 * 3 * 3 * 3
    # batch scales linearly
    assert count_macs(conv, (2, 3, 16, 16))[0] == 2 * 8 * 16 * 16 * 27


def test_depthwise_and_3d_conv_macs_by_hand():
    dw = nn.Conv2d(4, 4, kernel_size=3, padding=1, groups=4, bias=False)
    assert count_macs(dw, (1, 4, 8, 8))[0] == 4 * 8 * 8 * 9
    conv3d = nn.Conv3d(2, 5, kernel_size=3, stride=2, padding=1, bias=False)
    assert count_macs(conv3d, (1, 2, 8, 8, 8))[0] == 5 * 4 * 4 * 4 * 2 * 27


def test_model_summary_of_glassbox():
    net = GlassBoxNet(img_size=(32, 32))
    for p in net.head.parameters():
        p.requires_grad_(False)
    s = model_summary(net, (1, 1, 32, 32), latency_runs=2)
    assert s["params_total"] == sum(p.numel() for p in net.parameters())
    assert s["params_trainable"] == s["params_total"] - (16 * 2 + 2)
    assert s["macs_per_module"]["head"] == 16 * 2
    assert s["macs"] == sum(s["macs_per_module"].values())
    assert s["latency_ms"] > 0
    table = format_summary(s)
    assert "encoder" in table and "total" in table and "latency" in table
    assert net.training  # mode restored


def test_model_summary_validation():
    with pytest.raises(ValueError, match=r"input_shape must be positive ints"):
        model_summary(nn.Linear(2, 2), (0, 2))
    with pytest.raises(ValueError, match=r"latency_runs must be >= 0, got -1"):
        model_summary(nn.Linear(2, 2), (1, 2), latency_runs=-1)


def test_linear_macs():
    assert count_macs(nn.Linear(10, 3), (4, 10))[0] == 4 * 10 * 3
    assert torch.is_grad_enabled()
