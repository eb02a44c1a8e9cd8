"""Disentanglement of the latent space against the phantom's known factors: plain VAE vs capacity-annealed β-VAE.

Pretrains ``GlassBoxNet`` (self-supervised, all images, same data/epochs/seed) once per KL
setting, then scores the test split's latent means against ``factors.csv`` with MIG, SAP and
DCI (:mod:`evaluation.disentanglement`) and counts active units (KL > 0.01 nats).

Settings compared (``--settings beta:c_max``): ``1:0`` — the plain VAE (β = 1, no capacity), the
bundles' default — and ``4:10`` — a β-VAE whose KL capacity is annealed from 0 to 10 nats over
the run (Burgess et al. 2018: ``loss = recon + β |KL - C(t)|``).

Run: ``.venv/bin/python bench/bench_disentanglement.py --datalist runs/bench_training/cohort/datalist.json``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from evaluation.disentanglement import disentanglement_scores  # noqa: E402
from evaluation.generative_factors import factor_table  # noqa: E402
from evaluation.latent_traversal import kl_per_dimension  # noqa: E402
from phantoms import PhantomConfig, generate_cohort  # noqa: E402
from pipelines.datalists import load_datalist  # noqa: E402
from pipelines.latent_codes import encode_datalist  # noqa: E402
from pipelines.trained_model import load_trained_model  # noqa: E402
from pipelines.training import train  # noqa: E402
from pipelines.training_config import TrainConfig  # noqa: E402

HEADLINE = ("mig", "sap", "dci_disentanglement", "dci_completeness", "dci_informativeness")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datalist", default=None, help="brain2d cohort (default: generate 2,000/250/500 at 64×64)"
    )
    parser.add_argument("--settings", nargs="+", default=["1:0", "4:10"], help="beta:c_max pairs")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench_disentanglement")
    args = parser.parse_args()
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    datalist = Path(args.datalist) if args.datalist else None
    if datalist is None:
        datalist = work / "cohort" / "datalist.json"
        if not datalist.is_file():
            generate_cohort(
                PhantomConfig(
                    kind="brain2d",
                    n=2750,
                    seed=args.seed,
                    size=64,
                    split_fractions=(2000 / 2750, 250 / 2750, 500 / 2750),
                ),
                datalist.parent,
                progress=False,
            )
    n_train = len(load_datalist(datalist, "training"))
    steps = args.epochs * math.ceil(n_train / args.batch_size)
    rows = []
    for setting in args.settings:
        beta, c_max = (float(v) for v in setting.split(":"))
        out = work / f"beta{beta:g}_c{c_max:g}"
        metrics = train(
            TrainConfig(
                datalist=datalist,
                out_dir=out,
                mode="pretrain",
                epochs=args.epochs,
                batch_size=args.batch_size,
                seed=args.seed,
                beta=beta,
                c_max=c_max,
                c_steps=steps,
                erase_prob=0.0,
                tracking_uri=f"sqlite:///{work / 'mlruns.db'}",
                experiment="bench_disentanglement",
            )
        )
        trained = load_trained_model(out)
        codes = encode_datalist(trained, datalist, "test", progress=False)
        factors, names, continuous = factor_table(datalist.parent / "factors.csv", codes.ids)
        scores = disentanglement_scores(codes.mu, factors, names, continuous)
        kl = kl_per_dimension(torch.from_numpy(codes.mu), torch.from_numpy(codes.logvar))
        row = {
            "setting": f"beta={beta:g}, C_max={c_max:g}",
            "active_units": int((kl > 0.01).sum()),
            "kl_total": float(kl.sum()),
            "test_recon_mse": metrics.get("test_recon_mse", float("nan")),
            **{k: scores[k] for k in HEADLINE},
            "factors": names,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{n_train} training images, {args.epochs} epochs, seed {args.seed}; scored on the test split")
    header = f"{'setting':22s} {'active':>6s} {'KL':>6s} {'MSE':>7s} " + " ".join(
        f"{k:>19s}" for k in HEADLINE
    )
    print(header)
    for r in rows:
        print(
            f"{r['setting']:22s} {r['active_units']:6d} {r['kl_total']:6.1f} {r['test_recon_mse']:7.4f} "
            + " ".join(f"{r[k]:19.3f}" for k in HEADLINE)
        )


if __name__ == "__main__":
    main()
