"""Throughput of the encoder unit types (``shuffle`` vs ``dense``) and layouts in GlassBoxNet, per size preset.

For each thread count, size preset, unit type and layout (:data:`LAYOUTS`) this prints the
parameters and MACs per image and the images/s of one training step's forward + backward
(fastest of ``--iters`` steps, variants timed in alternation; batch 32, 1×64×64,
reconstruction + KL + CE loss), for the whole model and for the encoder alone. The default
unit of :class:`networks.glassbox.GlassBoxNet` is the one with the best images/s at
(near-)equal parameters. Speed alone does not choose the layout: every preset keeps the
``full`` layout because the faster ones (no full-resolution convolution after the stem) can
learn the small, faint lesions later or not at all (this bench does not train to accuracy);
they stay available (``GlassBoxNet(stem_stride=2, subpixel_output=True)``) for data whose
findings are larger than a few pixels.

Run: ``.venv/bin/python bench/bench_units.py`` (keep the other cores idle: the figures are
wall-clock times); ``--sizes tiny --threads 1`` for a quick look.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from networks.glassbox import GlassBoxNet  # noqa: E402
from networks.losses import kl_per_dim, masked_cross_entropy  # noqa: E402
from networks.shuffle_units import UNIT_TYPES  # noqa: E402
from networks.summary import count_macs, count_parameters  # noqa: E402


def _steps(model: GlassBoxNet, batch: int, img: int) -> dict[str, Callable[[], None]]:
    """One training step of the whole model and one of the encoder alone (forward + backward)."""
    x = torch.rand(batch, 1, img, img)
    labels = torch.randint(0, 2, (batch,))

    def full_step() -> None:
        model.zero_grad(set_to_none=True)
        out = model(x)
        loss = (out["recon"] - x).pow(2).flatten(1).sum(1).mean()
        loss = loss + kl_per_dim(out["mu"], out["logvar"]).sum() + masked_cross_entropy(out["logits"], labels)
        loss.backward()

    def encoder_step() -> None:
        model.zero_grad(set_to_none=True)
        model.encoder(x).square().mean().backward()

    return {"img_s": full_step, "enc_img_s": encoder_step}


LAYOUTS = {"full": (1, False), "subpixel": (1, True), "strided": (2, True)}
"""Where the convolutions run: ``full`` — a full-resolution stem and decoder output stage;
``subpixel`` — a sub-pixel decoder output (``GlassBoxNet(subpixel_output=True)``), so the
decoder runs no convolution at full resolution; ``strided`` — that and a stride-2 stem
(``stem_stride=2``), so nothing but the stem's conv reads full-resolution tensors."""


def bench_size(
    size: str, units: list[str], batch: int, iters: int, img: int, layouts: tuple[str, ...] = ("full",)
) -> dict[str, dict[str, float]]:
    """Measure every unit type × layout at one size preset; params, MACs and images/s per ``unit/layout``.

    The variants' steps are timed in alternation and the fastest of ``iters`` steps is kept: the
    machine is shared, and alternation plus best-of expose every variant to the same interference.
    """
    results: dict[str, dict[str, float]] = {}
    steps: dict[str, dict[str, Callable[[], None]]] = {}
    for unit, layout in [(u, lay) for lay in layouts for u in units]:
        stem_stride, subpixel = LAYOUTS[layout]
        torch.manual_seed(0)
        model = GlassBoxNet(
            spatial_dims=2,
            img_size=(img, img),
            size=size,
            unit=unit,
            stem_stride=stem_stride,
            subpixel_output=subpixel,
        ).train()
        unit = f"{unit}/{layout}"
        macs, per_module = count_macs(model, (1, 1, img, img))
        results[unit] = {
            "params": count_parameters(model)[0],
            "enc_params": count_parameters(model.encoder)[0],
            "macs": macs,
            "enc_macs": per_module.get("encoder", 0),
            "img_s": 0.0,
            "enc_img_s": 0.0,
        }
        steps[unit] = _steps(model, batch, img)
        for step in steps[unit].values():
            step()  # warm-up (allocations, oneDNN kernel selection)
    for _ in range(iters):
        for variant, variant_steps in steps.items():
            for key, step in variant_steps.items():
                start = time.perf_counter()
                step()
                results[variant][key] = max(results[variant][key], batch / (time.perf_counter() - start))
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small", "base"])
    parser.add_argument("--units", nargs="+", default=list(UNIT_TYPES), choices=UNIT_TYPES)
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--img", type=int, default=64)
    args = parser.parse_args(argv)

    print(f"torch {torch.__version__}, batch {args.batch}, {args.img}x{args.img}, forward+backward")
    header = (
        f"{'thr':>3} {'size':<6}{'unit/layout':<16}{'params':>10}{'enc params':>11}{'MMACs':>8}{'enc MMACs':>10}"
        f"{'img/s':>8}{'enc img/s':>10}"
    )
    print(header)
    print("-" * len(header))
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size in args.sizes:
            for unit, r in bench_size(
                size, args.units, args.batch, args.iters, args.img, tuple(args.layouts)
            ).items():
                print(
                    f"{threads:>3} {size:<6}{unit:<16}{r['params']:>10,}{r['enc_params']:>11,}"
                    f"{r['macs'] / 1e6:>8.1f}{r['enc_macs'] / 1e6:>10.1f}{r['img_s']:>8.1f}{r['enc_img_s']:>10.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
