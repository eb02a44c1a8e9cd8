"""Model cost side by side: GlassBoxNet tiny/small/base/tiny_fine vs MONAI DenseNet121 and resnet18.

Prints params, MACs, training and inference images/s at 64×64 (batch 32) with 1 and 2
torch threads, fp32 and bf16 autocast, and peak resident memory; ratios are to
DenseNet121. Every (model, threads, precision) cell runs in a fresh subprocess so its
peak memory (``ru_maxrss``) and thread setting are its own. Accuracy (test AUC on the
same data and epochs) is ``bench/bench_training.py``'s.

Run: ``.venv/bin/python bench/bench_models.py [--steps 5] [--threads 1 2] [--precisions fp32 bf16]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GLASSBOX = ("tiny", "small", "base", "tiny_fine")
MODELS = (*GLASSBOX, "densenet121", "resnet18")


def _build(name: str):

    if name in GLASSBOX:
        from networks import GlassBoxNet

        return GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(64, 64), size=name)
    from monai.networks.nets import DenseNet121, resnet18

    if name == "densenet121":
        return DenseNet121(spatial_dims=2, in_channels=1, out_channels=2)
    return resnet18(spatial_dims=2, n_input_channels=1, num_classes=2)


def _measure(name: str, threads: int, precision: str, steps: int) -> dict:
    """Runs inside the subprocess: time training and inference steps of one model."""
    import resource
    import time

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    from networks import model_summary

    model = _build(name)
    summary = model_summary(model, (1, 1, 64, 64))
    glassbox = name in GLASSBOX
    if glassbox:
        from networks import GlassBoxLoss

        loss_fn = GlassBoxLoss()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(32, 1, 64, 64)
    y = torch.randint(0, 2, (32,))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def train_step() -> None:
        optimiser.zero_grad()
        with autocast:
            out = model(x)
            loss = loss_fn(out, x, y)["loss"] if glassbox else F.cross_entropy(out, y)
        loss.float().backward()
        optimiser.step()

    def infer_step() -> None:
        with torch.no_grad(), autocast:
            model(x)

    def rate(step, n) -> float:
        step()  # warm-up
        best = float("inf")
        for _ in range(n):
            start = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - start)
        return 32 / best

    model.train()
    train = rate(train_step, steps)
    model.eval()
    infer = rate(infer_step, steps)
    return {
        "params": summary["params_total"],
        "macs": summary.get("macs"),
        "train_img_s": train,
        "infer_img_s": infer,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _cell(name: str, threads: int, precision: str, steps: int) -> dict:
    code = (
        f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'bench')!r});"
        f"import bench_models as b; print(json.dumps(b._measure({name!r}, {threads}, {precision!r}, {steps})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per cell (best is kept)")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2], help="torch thread counts")
    parser.add_argument(
        "--precisions",
        nargs="*",
        default=["fp32", "bf16"],
        choices=("fp32", "bf16"),
        help="bf16 autocast cells take minutes each on CPUs without native bf16",
    )
    args = parser.parse_args()

    rows = []
    for threads in args.threads:
        for precision in args.precisions:
            for name in args.models:
                result = _cell(name, threads, precision, args.steps)
                rows.append({"model": name, "threads": threads, "precision": precision, **result})
                # each cell's figures as soon as it is measured: a stopped run keeps them
                figures = (
                    f"train {result['train_img_s']:.1f} img/s, infer {result['infer_img_s']:.1f} img/s"
                    if "error" not in result
                    else f"error: {result['error']}"
                )
                print(f"  measured {name} threads={threads} {precision}: {figures}", file=sys.stderr)

    ref = {
        (r["threads"], r["precision"]): r for r in rows if r["model"] == "densenet121" and "error" not in r
    }
    header = (
        f"{'model':12s} {'thr':>3s} {'prec':>5s} {'params':>10s} {'MMACs':>9s} {'train img/s':>12s} "
        f"{'x DN121':>8s} {'infer img/s':>12s} {'x DN121':>8s} {'peak MiB':>9s}"
    )
    print(header)
    for r in rows:
        if "error" in r:
            print(f"{r['model']:12s} {r['threads']:3d} {r['precision']:>5s} error: {r['error']}")
            continue
        base = ref.get((r["threads"], r["precision"]))
        tr = r["train_img_s"] / base["train_img_s"] if base else float("nan")
        inf = r["infer_img_s"] / base["infer_img_s"] if base else float("nan")
        macs = (r["macs"] or 0) / 1e6
        print(
            f"{r['model']:12s} {r['threads']:3d} {r['precision']:>5s} {r['params']:10,d} {macs:9.1f} "
            f"{r['train_img_s']:12.1f} {tr:8.2f} {r['infer_img_s']:12.1f} {inf:8.2f} {r['peak_rss_mib']:9.0f}"
        )
    print(
        "batch 32, 64x64, best of --steps timed steps after one warm-up; ratios to DenseNet121 at the same threads/precision"
    )


if __name__ == "__main__":
    main()
