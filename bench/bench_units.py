"""Throughput of the encoder unit types (``shuffle`` vs ``dense``) and layouts in GlassBoxNet, per size preset.

For each thread count, size preset, unit type and layout (:data:`LAYOUTS`) this prints the parameters and
MACs per image (whole model and encoder alone) and the images/s of one training
step's forward + backward (fastest of ``--iters`` steps, unit types timed in
alternation) (batch 32, 1×64×64, reconstruction + KL + CE loss),
for the whole model and for the encoder alone. The default unit of
:class:`networks.glassbox.GlassBoxNet` is the one with the best images/s at
(near-)equal parameters; accuracy is compared later by the training bench.

Run: ``.venv/bin/python bench/bench_units.py`` (about 2 minutes on 2 CPU cores);
``--sizes tiny --threads 1`` for a quick look.

Figures on the project's 2-core CPU VM (torch 2.13 CPU, shared with other jobs,
so the 2-thread rows are noisy; img/s = whole model, enc = encoder alone)::

    thr size  unit        params enc params   MMACs enc MMACs   img/s enc img/s
      1 tiny  shuffle    180,516     31,872    28.5       7.7   116.9     206.3
      1 tiny  dense      182,270     33,626    26.5       5.6   140.4     291.5
      1 small shuffle    523,988    135,120   112.8      30.7    51.1      91.8
      1 small dense      536,890    148,022   104.5      22.4    64.4     137.4
      1 base  shuffle  2,860,804    941,504   960.0     181.3    10.8      28.6
      1 base  dense    2,907,740    988,440   928.2     149.5    13.2      41.0
      2 small shuffle    523,988    135,120   112.8      30.7   102.6     171.9
      2 small dense      536,890    148,022   104.5      22.4   118.7     239.9
      2 base  shuffle  2,860,804    941,504   960.0     181.3    18.4      49.2
      2 base  dense    2,907,740    988,440   928.2     149.5    23.0      79.7

With 1-5 % more weights and 7-27 % fewer MACs, the dense unit's encoder trains
1.4-1.6x more images/s and the whole model 1.15-1.25x (the decoder's dense
full-resolution convs dominate the whole model's cost); so ``unit="dense"`` is
the default. (2-thread tiny rows were swamped by other jobs in that run.)

Layouts (``--units dense``, every layout timed in alternation, cores otherwise idle,
2026-12-01; the earlier ``dense`` rows above are the ``full`` layout)::

    thr size  unit/layout         params enc params   MMACs enc MMACs   img/s enc img/s
      1 tiny  dense/full         186,398     33,626    26.5       5.6    71.6     174.2
      1 tiny  dense/subpixel     184,497     33,626    17.1       5.6   118.4     173.0
      1 tiny  dense/strided      184,497     33,626    16.6       5.2   133.4     229.3
      1 small dense/full         545,114    148,022   104.6      22.4    35.5      81.6
      1 small dense/subpixel     536,701    148,022    66.8      22.4    59.3      92.7
      1 small dense/strided      536,701    148,022    66.1      21.8    59.6     105.3
      1 base  dense/full       2,924,156    988,440   928.2     149.5     5.8      21.8
      1 base  dense/subpixel   2,851,903    988,440   626.2     149.5     9.2      20.9
      1 base  dense/strided    2,851,903    988,440   625.4     148.6     9.9      23.2
      2 tiny  dense/full         186,398     33,626    26.5       5.6   135.2     272.0
      2 tiny  dense/subpixel     184,497     33,626    17.1       5.6   186.4     267.5
      2 tiny  dense/strided      184,497     33,626    16.6       5.2   230.0     346.9
      2 small dense/full         545,114    148,022   104.6      22.4    62.9     124.8
      2 small dense/subpixel     536,701    148,022    66.8      22.4    82.6     135.8
      2 small dense/strided      536,701    148,022    66.1      21.8    92.3     150.8
      2 base  dense/full       2,924,156    988,440   928.2     149.5     9.7      35.6
      2 base  dense/subpixel   2,851,903    988,440   626.2     149.5    16.8      35.2
      2 base  dense/strided    2,851,903    988,440   625.4     148.6    17.3      40.2

The sub-pixel decoder output makes ``tiny`` train 1.65x (1 thread) / 1.38x (2 threads)
more images/s, with the strided stem as well 1.86x / 1.70x. Accuracy decides the default,
and it went the other way: ``bench/bench_training.py`` cohort, ``tiny``, 8 epochs, training
seeds 0 / 1 / 2 (with ``pooled_logits``): ``full`` test AUC 0.881 / 0.846 / 0.901,
``subpixel`` 0.792 / 0.840 / 0.888, ``strided`` 0.481 / 0.889 / 0.840 (seed 0 never left
chance). Three seeds cannot separate small differences, but a faster layout that learns
the small, faint lesions later (``subpixel`` seed 0) or not at all (``strided`` seed 0) is
no gain, so every preset keeps the ``full`` layout; the others stay available (``GlassBoxNet(stem_stride=2, subpixel_output=True)``) for data
whose findings are larger than a few pixels.
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
