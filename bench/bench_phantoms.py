"""Phantom generation throughput: brain2d 64x64 PNG and brain3d 64^3 NIfTI, files included.

Run: ``python bench/bench_phantoms.py [--n2d 2000] [--n3d 20]``. Prints the PhantomConfig defaults
used, the one-off template cost (load + resample, paid once per process and size), and images/s
of ``generate_cohort`` writing into a temporary folder, against the target of 2,000 brain2d
images in under 60 s (33.3 images/s).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from phantoms import PhantomConfig, generate_cohort, subject_grid  # noqa: E402
from phantoms.anatomy import load_mni_template  # noqa: E402

TARGET_2D = 2000 / 60.0  # images/s


def _run(cfg: PhantomConfig) -> tuple[float, float]:
    """Seconds to generate ``cfg`` (warm template), and images/s."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_cohort(cfg, Path(tmp), progress=False)
        seconds = time.perf_counter() - start
    return seconds, cfg.n / seconds


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a small table.

    Args:
        argv: command-line arguments (``--n2d``, ``--n3d``).

    Returns:
        0 when brain2d meets the target, 1 otherwise.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n2d", type=int, default=2000, help="brain2d images (default 2000)")
    parser.add_argument("--n3d", type=int, default=20, help="brain3d volumes (default 20)")
    args = parser.parse_args(argv)

    cfg2d = PhantomConfig(kind="brain2d", n=args.n2d, size=64, image_format="png")
    cfg3d = PhantomConfig(kind="brain3d", n=args.n3d, size=64, image_format="nifti")
    print("PhantomConfig defaults used (brain2d run; brain3d differs only in kind, n, image_format):")
    for key, value in dataclasses.asdict(cfg2d).items():
        print(f"  {key} = {value!r}")

    start = time.perf_counter()
    load_mni_template()
    t_load = time.perf_counter() - start
    start = time.perf_counter()
    subject_grid(cfg2d)
    t_grid2d = time.perf_counter() - start
    start = time.perf_counter()
    subject_grid(cfg3d)
    t_grid3d = time.perf_counter() - start
    print(
        f"\none-off: template load {t_load:.2f} s, resample brain2d {t_grid2d:.2f} s, brain3d {t_grid3d:.2f} s"
    )

    s2d, ips2d = _run(cfg2d)
    s3d, ips3d = _run(cfg3d)
    cold2d = args.n2d / (s2d + t_load + t_grid2d)
    print(f"\n{'case':<28}{'images':>8}{'seconds':>10}{'images/s':>11}{'vs target':>11}")
    print(
        f"{'brain2d 64x64 png (warm)':<28}{args.n2d:>8}{s2d:>10.2f}{ips2d:>11.1f}{ips2d / TARGET_2D:>10.1f}x"
    )
    cold_s = s2d + t_load + t_grid2d
    print(
        f"{'brain2d 64x64 png (cold)':<28}{args.n2d:>8}{cold_s:>10.2f}{cold2d:>11.1f}{cold2d / TARGET_2D:>10.1f}x"
    )
    print(f"{'brain3d 64^3 nifti (warm)':<28}{args.n3d:>8}{s3d:>10.2f}{ips3d:>11.2f}{'':>11}")
    print(f"\ntarget: 2000 brain2d images in < 60 s = {TARGET_2D:.1f} images/s (cold includes template load)")
    return 0 if cold2d >= TARGET_2D else 1


if __name__ == "__main__":
    raise SystemExit(main())
