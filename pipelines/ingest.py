"""Folder ingestion: walk a folder of medical images and write a MONAI datalist.

Every file under SRC ends up either in ``OUT/datalist.json`` (alone, as part of a DICOM
series, or as the images of a MedMNIST archive) or in ``OUT/rejects.csv`` with the
reason. SRC is only read. Attributes come from a whitelist of DICOM tags
(:mod:`transforms.dicom_attributes`); no names, IDs or dates are written.
:func:`ingest_files` is the reading step alone, for files from elsewhere (a DICOMweb
ingest, :mod:`pipelines.dicomweb_ingest`, retrieves into a folder and reads through it).
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sized
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from evaluation.html_report import write_text_atomic
from transforms.dicom_attributes import dicom_attributes
from transforms.dicom_reader import read_dicom_file
from transforms.dicom_series import series_sort_key
from transforms.image_loading import (
    DICOM_SUFFIXES,
    NIFTI_SUFFIXES,
    PIL_SUFFIXES,
    check_image_size,
    file_suffix,
    has_dicom_magic,
    load_image,
)
from transforms.keys import Keys
from transforms.medmnist_npz import MEDMNIST_SPLITS, medmnist_reference, read_medmnist_npz
from transforms.read_errors import ImageReadError

__all__ = ["IngestResult", "ingest_files", "ingest_folder", "read_label_table", "write_ingest_outputs"]

SALT_ENV = "MEDGLASS_SITE_SALT"


@dataclass
class IngestResult:
    """What an ingestion produced.

    Attributes:
        records: datalist records (``image``, ``id``, ``attributes``, ``label`` when known).
        rejects: ``(path, reason)`` per unusable file.
        n_files: files seen under SRC.
        seconds: wall time.
        notes: warnings for the user (e.g. a random salt was used).
    """

    records: list[dict] = field(default_factory=list)
    rejects: list[tuple[str, str]] = field(default_factory=list)
    n_files: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class _DicomEntry:
    path: str
    attributes: dict
    patient: str
    series_key: tuple
    position: float | None
    frames: int
    shape: list[int]


def _looks_dicom(path: str) -> bool:
    suffix = file_suffix(path)
    return suffix in DICOM_SUFFIXES or suffix == "" or has_dicom_magic(path)


def read_label_table(path: str | PathLike) -> tuple[str, dict[str, str]]:
    """Read a labels CSV with a ``label`` column and a ``file`` or ``patient`` column.

    Args:
        path: the CSV file.

    Returns:
        ``(join_on, {key: label})`` where ``join_on`` is ``"file"`` or ``"patient"``.

    Raises:
        ValueError: missing file or columns, or an empty table.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"labels CSV {p}: no such file")
    with open(p, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    join_on = next((c for c in ("file", "path", "patient", "patient_id") if c in columns), None)
    if "label" not in columns or join_on is None:
        raise ValueError(
            f"labels CSV {p}: needs a 'label' column and a 'file' or 'patient' column, found {columns}"
        )
    table = {row[join_on]: row["label"] for row in rows if row.get(join_on)}
    if not table:
        raise ValueError(f"labels CSV {p}: no rows with a {join_on} and a label")
    return ("file" if join_on in ("file", "path") else "patient"), table


def _parse_label(value: str) -> int | float | str:
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() else number


def _dicom_entry(path: str, salt: str) -> _DicomEntry:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # header oddities are not reasons to reject a file
        return _read_dicom_entry(path, salt)


def _read_dicom_entry(path: str, salt: str) -> _DicomEntry:
    image = read_dicom_file(path)
    ds = image.dataset
    frames = image.pixels.shape[0]
    iop = ds.get("ImageOrientationPatient")
    iop_key = (
        tuple(np.round(np.asarray([float(v) for v in iop]), 3)) if iop is not None and len(iop) == 6 else ()
    )
    series_key = (str(ds.get("SeriesInstanceUID", "")), image.pixels.shape[1:], iop_key)
    spatial = list(image.pixels.shape[2:0:-1]) + ([frames] if frames > 1 else [])
    channels = image.pixels.shape[3] if image.pixels.ndim == 4 else 1
    return _DicomEntry(
        path=path,
        attributes=dicom_attributes(ds, salt),
        patient=str(ds.get("PatientID", "")),
        series_key=series_key,
        position=series_sort_key(ds),
        frames=frames,
        shape=[channels, *spatial],
    )


def _group_series(entries: list[_DicomEntry]) -> list[list[_DicomEntry]]:
    """Group single-frame slices of one series with distinct positions; others stay alone."""
    groups: dict[tuple, list[_DicomEntry]] = defaultdict(list)
    singles: list[list[_DicomEntry]] = []
    for entry in entries:
        if entry.frames == 1 and entry.series_key[0] and entry.position is not None:
            groups[entry.series_key].append(entry)
        else:
            singles.append([entry])
    for members in groups.values():
        positions = np.round([m.position for m in members], 4)
        if len(members) > 1 and len(set(positions.tolist())) == len(members):
            singles.append(sorted(members, key=lambda m: m.position))
        else:  # duplicates (e.g. one image stored in several transfer syntaxes): keep each file
            singles.extend([m] for m in members)
    return sorted(singles, key=lambda g: g[0].path)


def ingest_folder(
    src: str | PathLike,
    out: str | PathLike,
    labels_csv: str | PathLike | None = None,
    salt: str | None = None,
    progress: bool = True,
) -> IngestResult:
    """Ingest every file under ``src`` into ``out/datalist.json`` and ``out/rejects.csv``.

    Args:
        src: the folder to read (never modified).
        out: output folder (created; must not lie inside ``src``).
        labels_csv: optional CSV joining labels by ``file`` (path relative to ``src`` or
            file name) or ``patient`` (PatientID, used for the join only).
        salt: secret for site pseudonyms; default ``$MEDGLASS_SITE_SALT`` or a random one.
        progress: show a progress bar.

    Returns:
        An :class:`IngestResult`.

    Raises:
        ValueError: ``src`` is not a folder, ``out`` lies inside it, or a bad labels CSV.
    """
    started = time.perf_counter()
    src_path, out_path = Path(src).resolve(), Path(out).resolve()
    if not src_path.is_dir():
        raise ValueError(f"SRC {src}: not a folder")
    if out_path == src_path or src_path in out_path.parents:
        raise ValueError(
            f"--out {out} lies inside SRC {src}; choose a folder outside it (SRC is never modified)"
        )
    result = IngestResult()
    files: list[str] = []
    for root, dirs, names in os.walk(src_path):
        dirs.sort()
        if not names and not dirs:
            result.rejects.append((root, "folder holds no files"))
        files.extend(os.path.join(root, n) for n in sorted(names))
    ingest_files(files, src_path, labels_csv=labels_csv, salt=salt, progress=progress, result=result)
    result.seconds = time.perf_counter() - started
    write_ingest_outputs(result, out_path, f"medglass ingest of {src_path}")
    return result


def ingest_files(
    files: Iterable[str],
    root: str | PathLike,
    labels_csv: str | PathLike | None = None,
    salt: str | None = None,
    progress: bool = True,
    result: IngestResult | None = None,
    total: int | None = None,
) -> IngestResult:
    """Read files into datalist records and reject rows, as a folder ingest does; writes nothing.

    Args:
        files: the files to read; an iterator is read as it yields (files may still be arriving).
        root: the folder a labels CSV's ``file`` column is relative to.
        labels_csv: optional CSV (see :func:`ingest_folder`).
        salt: secret for site pseudonyms; default ``$MEDGLASS_SITE_SALT`` or a random one.
        progress: show a progress bar.
        result: a result to add to (its rejects and notes are kept); default a new one.
        total: files expected, for the progress bar (default ``len(files)`` when it has one).

    Returns:
        ``result`` with ``records``, ``rejects`` and ``n_files`` (plus the files read) filled in;
        ``seconds`` is left to the caller.

    Raises:
        ValueError: a bad labels CSV.
    """
    root_path = Path(root)
    join_on, label_table = read_label_table(labels_csv) if labels_csv else (None, {})
    result = result if result is not None else IngestResult()
    salt = salt or os.environ.get(SALT_ENV)
    if not salt:
        salt = secrets.token_hex(16)
        result.notes.append(f"no --salt or ${SALT_ENV}: site pseudonyms are consistent within this run only")
    total = len(files) if total is None and isinstance(files, Sized) else total

    dicom_entries: list[_DicomEntry] = []
    other_records: list[dict] = []
    for path in tqdm(files, desc="ingest", unit="file", total=total, disable=not progress):
        result.n_files += 1
        try:
            if os.path.islink(path) and not os.path.exists(path):
                raise ImageReadError(path, "broken symbolic link")
            suffix = file_suffix(path)
            if suffix == ".npz":
                other_records.extend(_npz_records(path))
            elif suffix in NIFTI_SUFFIXES or suffix in PIL_SUFFIXES:
                image = load_image(path)  # refuses an image too small to be one
                other_records.append({Keys.IMAGE: path, "shape": list(image.shape), Keys.ATTRIBUTES: {}})
            elif _looks_dicom(path):
                entry = _dicom_entry(path, salt)
                check_image_size(path, entry.shape[1:])  # as load_image does
                dicom_entries.append(entry)
            else:
                raise ImageReadError(path, f"not an image (unsupported file type '{suffix}')")
        except ImageReadError as err:
            result.rejects.append((path, err.reason))
        except Exception as err:  # never stop on one bad file
            result.rejects.append(
                (path, f"unexpected error ({type(err).__name__}: {' '.join(str(err).split())[:160]})")
            )

    for group in _group_series(dicom_entries):
        image = group[0].path if len(group) == 1 else [m.path for m in group]
        shape = list(group[0].shape) + ([len(group)] if len(group) > 1 else [])
        record = {Keys.IMAGE: image, "shape": shape, Keys.ATTRIBUTES: group[0].attributes}
        record["_patient"] = group[0].patient  # for the label join only; never written
        other_records.append(record)

    for index, record in enumerate(sorted(other_records, key=lambda r: str(r[Keys.IMAGE]))):
        patient = record.pop("_patient", "")
        record = {Keys.ID: f"img{index:05d}", **record}
        if label_table and Keys.LABEL not in record:
            label = _join_label(record, join_on, label_table, root_path, patient)
            if label is not None:
                record[Keys.LABEL] = _parse_label(label)
        result.records.append(record)
    return result


def _join_label(record: dict, join_on: str | None, table: dict, src: Path, patient: str) -> str | None:
    if join_on == "patient":
        return table.get(patient) if patient else None
    image = record[Keys.IMAGE]
    paths = image if isinstance(image, list) else [str(image).split("#")[0]]
    candidates = set()
    for p in paths:
        rel = os.path.relpath(p, src)
        candidates.update({rel, Path(p).name, rel.replace(os.sep, "/")})
    if isinstance(image, list):
        folder = os.path.relpath(Path(paths[0]).parent, src)
        candidates.update({folder, folder.replace(os.sep, "/"), Path(paths[0]).parent.name})
    return next((table[c] for c in sorted(candidates) if c in table), None)


def _npz_records(path: str) -> list[dict]:
    records = []
    for split, (images, labels) in read_medmnist_npz(path).items():
        for index in range(len(images)):
            record: dict = {
                Keys.IMAGE: medmnist_reference(path, split, index),
                "split": MEDMNIST_SPLITS[split],
                Keys.ATTRIBUTES: {},
            }
            if labels is not None:
                value = np.asarray(labels[index]).ravel()
                record[Keys.LABEL] = int(value[0]) if value.size == 1 else value.astype(int).tolist()
            records.append(record)
    return records


def write_ingest_outputs(result: IngestResult, out: str | PathLike, description: str) -> None:
    """Write ``datalist.json``, ``rejects.csv`` and ``ingest_summary.json`` into ``out``, each atomically.

    Args:
        result: what was read (its records lose their ``split`` key to the datalist sections).
        out: the output folder (created).
        description: the datalist's ``description`` (says where the images came from).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections: dict[str, list[dict]] = defaultdict(list)
    for record in result.records:
        split = record.pop("split", "training")
        sections[split].append(record)
    datalist = {
        "description": description,
        "training": sections.pop("training", []),
        **sections,
    }
    # each file written whole or not at all (temporary file, then rename)
    write_text_atomic(out / "datalist.json", json.dumps(datalist, indent=1))
    rejects = io.StringIO(newline="")
    writer = csv.writer(rejects)
    writer.writerow(["path", "reason"])
    writer.writerows(result.rejects)
    write_text_atomic(out / "rejects.csv", rejects.getvalue())
    summary = {
        "files": result.n_files,
        "records": len(result.records),
        "rejected": len(result.rejects),
        "seconds": round(result.seconds, 3),
        "files_per_second": round(result.n_files / result.seconds, 2) if result.seconds else None,
        "notes": result.notes,
    }
    write_text_atomic(out / "ingest_summary.json", json.dumps(summary, indent=1))
