"""Latency and peak memory of one-image ``medglass explain`` on a trained run, cold and cached.

Times :func:`pipelines.explain.explain_image` in this process (after the imports of torch and
MONAI) twice: the first call computes the latent scale of the
run's training images and caches it in the run folder, the second reuses it. Also prints the
import time and the process's peak resident memory.

Run: ``.venv/bin/python bench/bench_explain.py --model runs/demo/classify --image
runs/demo/cohort/images/p00006.png``
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a training run folder")
    parser.add_argument("--image", required=True, help="an image file the model accepts")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    import torch

    from pipelines.explain import LATENT_SCALE_FILE, explain_image

    imports = time.perf_counter() - start
    torch.set_num_threads(args.threads)
    cache = Path(args.model) / LATENT_SCALE_FILE
    if cache.is_file():
        cache.unlink()  # the first call is the cold one
    times = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as out:
            begin = time.perf_counter()
            explain_image(args.model, args.image, out, track=False, progress=False)
            times.append(time.perf_counter() - begin)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"imports {imports:.2f} s; explain_image cold {times[0]:.2f} s, cached {times[1]:.2f} s "
        f"({times[0] / times[1]:.2f}x); peak RSS {peak_mib:.0f} MiB; {args.threads} threads"
    )


if __name__ == "__main__":
    main()
