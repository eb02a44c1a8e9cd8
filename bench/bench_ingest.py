"""Ingestion throughput (files/s) over the DICOM folders pydicom and pydicom-data ship.

Baseline, side by side: a bare loop of ``pydicom.dcmread(f).pixel_array`` over the same
files (no validation, no series grouping, no fallback decoder, no attributes); the ratio
says what medglass's checks cost. Not a test: it prints figures.

Run: ``.venv/bin/python bench/bench_ingest.py``
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pipelines.ingest import ingest_folder  # noqa: E402
from transforms.dicom_reader import quiet_native_output  # noqa: E402

logging.getLogger("pydicom").setLevel(logging.ERROR)


def _folders() -> dict[str, Path]:
    import data_store

    return {
        "pydicom test_files": Path(pydicom.__file__).parent / "data" / "test_files",
        "pydicom-data": Path(data_store.__file__).parent / "data",
    }


def _baseline(folder: Path) -> tuple[int, float]:
    files = [Path(r) / n for r, _, names in os.walk(folder) for n in names]
    start = time.perf_counter()
    with warnings.catch_warnings(), quiet_native_output():
        warnings.simplefilter("ignore")
        for f in files:
            try:
                _ = pydicom.dcmread(f).pixel_array
            except Exception:
                pass
    return len(files), time.perf_counter() - start


def main() -> None:
    print(
        f"{'folder':22s} {'files':>6s} {'medglass files/s':>17s} {'bare pydicom files/s':>21s} {'ratio':>6s} {'listed':>7s} {'rejected':>9s}"
    )
    for name, folder in _folders().items():
        with tempfile.TemporaryDirectory() as out:
            result = ingest_folder(folder, out, salt="bench", progress=False)
        n, base_s = _baseline(folder)
        ours = result.n_files / result.seconds
        base = n / base_s
        print(
            f"{name:22s} {n:6d} {ours:17.1f} {base:21.1f} {ours / base:6.2f} {len(result.records):7d} {len(result.rejects):9d}"
        )


if __name__ == "__main__":
    main()
