"""Ingestion over DICOMweb vs from a folder (files/s), on loopback against a real Orthanc.

Baseline, side by side: a folder ingest of the very files the server holds. The DICOMweb
ingest searches (QIDO-RS), retrieves every instance (WADO-RS, one request per study) and
reads the retrieved files with the folder ingest's reader, so the ratio says what the
network path costs. Two cohorts: brain3d phantoms as DICOM series (many instances per
study) and brain2d phantoms as single files (one instance per study: one request per file,
the worst case). Best of ``--repeats`` runs each. Needs the Debian packages ``orthanc`` and
``orthanc-dicomweb`` (``make orthanc``). Not a test: it prints figures and writes them to
``bench/out/ingest_dicomweb.json``.

Run: ``.venv/bin/python bench/bench_ingest_dicomweb.py``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from phantoms import PhantomConfig, generate_cohort  # noqa: E402
from pipelines.dicomweb_ingest import ingest_dicomweb  # noqa: E402
from pipelines.ingest import ingest_folder  # noqa: E402
from tests.orthanc_server import OrthancServer  # noqa: E402
from transforms.dicomweb_source import PASSWORD_ENV, USER_ENV  # noqa: E402

logging.getLogger("pydicom").setLevel(logging.ERROR)


def _best_rate(run, repeats: int) -> tuple[float, int]:
    """Best files/s over ``repeats`` runs of ``run() -> IngestResult`` (and the file count)."""
    best, files = 0.0, 0
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = max(best, result.n_files / (time.perf_counter() - started))
        files = result.n_files
    return best, files


def _measure(name: str, config: PhantomConfig, repeats: int) -> dict:
    """Write ``config``'s cohort, load it into a fresh Orthanc, time both ingests."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate_cohort(config, work / "cohort", progress=False)
        src = work / "cohort" / "images"
        files = sorted(src.rglob("*.dcm"))
        with OrthancServer(work / "pacs") as pacs:
            pacs.store(files)
            env = {USER_ENV: pacs.auth[0], PASSWORD_ENV: pacs.auth[1]}
            folder, n = _best_rate(
                lambda: ingest_folder(src, work / "folder", salt="b", progress=False), repeats
            )
            web, n_web = _best_rate(
                lambda: ingest_dicomweb(
                    pacs.dicomweb_url, work / "web", salt="b", progress=False, environ=env
                ),
                repeats,
            )
    if not n == n_web == len(files):
        raise RuntimeError(f"{name}: {len(files)} files, folder ingest read {n}, DICOMweb ingest {n_web}")
    return {
        "cohort": name,
        "files": n,
        "studies": config.n,
        "folder_files_per_s": round(folder, 1),
        "dicomweb_files_per_s": round(web, 1),
        "ratio": round(web / folder, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n3d", type=int, default=12, help="brain3d subjects (32 slices each)")
    parser.add_argument("--n2d", type=int, default=150, help="brain2d subjects (one file each)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cohorts = {
        "brain3d series (32 px)": PhantomConfig(
            kind="brain3d", n=args.n3d, seed=1, size=32, image_format="dicom"
        ),
        "brain2d files (64 px)": PhantomConfig(
            kind="brain2d", n=args.n2d, seed=2, size=64, image_format="dicom"
        ),
    }
    print(
        f"{'cohort':24s} {'files':>6s} {'studies':>8s} {'folder files/s':>15s} {'DICOMweb files/s':>17s} {'ratio':>6s}"
    )
    rows = []
    for name, config in cohorts.items():
        row = _measure(name, config, args.repeats)
        rows.append(row)
        print(
            f"{name:24s} {row['files']:6d} {row['studies']:8d} {row['folder_files_per_s']:15.1f} "
            f"{row['dicomweb_files_per_s']:17.1f} {row['ratio']:6.2f}"
        )
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest_dicomweb.json").write_text(json.dumps({"goal_ratio": 0.5, "rows": rows}, indent=1))
    print(f"goal: DICOMweb >= 0.5 x folder files/s; written {out / 'ingest_dicomweb.json'}")


if __name__ == "__main__":
    main()
