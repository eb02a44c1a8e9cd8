"""Infill counterfactual on a 3D volume: windows built a batch at a time vs all masks at once.

The search (``evaluation.infill_counterfactuals``) ranks every window by its own effect. The
baseline materialises one image-sized mask per window and infills them all before the forward
passes; the current code keeps the windows as corners and builds each forward pass's masks on
the fly. Each variant runs in its own process on the
same known-answer volume (a bright spot that a max-detector reads, a flat "reconstruction"), so
peak RSS is that variant's alone. Prints seconds, peak RSS and the ratios to the baseline.

Run: ``.venv/bin/python bench/bench_infill.py --size 64`` (the baseline's memory grows with the
number of windows times the volume size, so check the free memory first; the default ``--size
48`` needs less).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from evaluation import infill_counterfactuals as ic  # noqa: E402


class _SpotDetector(nn.Module):
    """Class 1 when the brightest voxel exceeds 0.5; the reconstruction is flat (no spot)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logit = 20.0 * (torch.flatten(x, 1).amax(dim=1) - 0.5)
        return {"recon": torch.full_like(x, 0.1), "logits": torch.stack([-logit, logit], dim=1)}


def _volume(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    image = torch.full((1, 1, size, size, size), 0.1) + 0.05 * torch.rand(1, 1, size, size, size)
    spot = torch.zeros(size, size, size, dtype=torch.bool)
    c = size // 2
    spot[c : c + 3, c - 10 : c - 7, c + 5 : c + 8] = True
    image[0, 0][spot] = 0.9
    return image, spot


def _all_masks_at_once(model, image, recon, windows, target_class):
    """The former first pass: every window's mask and infilled image held at once."""
    corners, edges = windows
    masks = ic.masks_of(corners, edges, image.shape[2:])
    return ic._probs(model, ic._infill(image, recon, masks), target_class, ic._BATCH)


def _run_variant(variant: str, size: int, window: int, stride: int) -> dict:
    torch.set_num_threads(1)
    image, spot = _volume(size)
    model = _SpotDetector()
    start = time.perf_counter()
    original = ic._single_effects
    if variant == "baseline":
        ic._single_effects = _all_masks_at_once
    try:
        result = ic.infill_counterfactual(model, image, window=window, stride=stride, fine_window=None)
    finally:
        ic._single_effects = original
    seconds = time.perf_counter() - start
    return {
        "variant": variant,
        "seconds": seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "flipped": result.flipped,
        "spot_covered": bool(result.region[spot].all()),
        "region_fraction": result.region_fraction,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=48, help="edge of the cubic volume")
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--variant", choices=["baseline", "batched"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(_run_variant(args.variant, args.size, args.window, args.stride)))
        return
    corners, _ = ic.window_corners([args.size] * 3, args.window, args.stride)
    print(
        f"{args.size}³ volume, {len(corners)} windows of {args.window} voxels at stride {args.stride}, one thread"
    )
    rows = {}
    for variant in ("baseline", "batched"):
        cmd = [sys.executable, __file__, "--variant", variant, "--size", str(args.size)]
        cmd += ["--window", str(args.window), "--stride", str(args.stride)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows[variant] = json.loads(out.strip().splitlines()[-1])
    base = rows["baseline"]
    print(
        f"{'variant':10s} {'seconds':>8s} {'peak RSS MiB':>13s} {'× time':>7s} {'× RSS':>6s}  flipped  spot in region"
    )
    for variant, row in rows.items():
        print(
            f"{variant:10s} {row['seconds']:8.1f} {row['peak_rss_mib']:13.0f} "
            f"{row['seconds'] / base['seconds']:7.2f} {row['peak_rss_mib'] / base['peak_rss_mib']:6.2f}  "
            f"{row['flipped']!s:7s}  {row['spot_covered']}"
        )


if __name__ == "__main__":
    main()
