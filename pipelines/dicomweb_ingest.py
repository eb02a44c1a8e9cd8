"""DICOMweb ingestion: pull studies from a PACS into the same datalist a folder ingest writes.

``medglass ingest http://host/dicom-web [--study UID ...] --out OUT`` lists the series
(QIDO-RS), retrieves every instance (WADO-RS) into ``OUT/dicom/<study>/<series>/<sop>.dcm``
and reads those files through :func:`pipelines.ingest.ingest_files`, the reader of a
folder ingest: same records, series grouping, attributes whitelist (no names, IDs or dates),
site pseudonyms and reject reasons. The datalist's images are the retrieved files.

Reject rows name the server's resource (``URL/studies/<uid>/series/<uid>/instances/<uid>``)
rather than the local copy, which is removed: a non-image object (e.g. a structured report)
is rejected with the reader's reason, a requested study the server does not hold with
``study not found``. A server that cannot be reached or refuses the credentials stops the
ingest with one line naming the URL (:class:`~transforms.dicomweb_source.DicomwebError`).
Credentials come from the environment only (:mod:`transforms.dicomweb_source`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from os import PathLike
from pathlib import Path

from pipelines.ingest import IngestResult, ingest_files, write_ingest_outputs
from transforms.dicomweb_source import (
    DicomwebError,
    RemoteStudy,
    check_dicomweb_url,
    find_studies,
    open_dicomweb,
    retrieve_study_files,
)

__all__ = ["IMAGES_FOLDER", "ingest_dicomweb"]

IMAGES_FOLDER = "dicom"
"""Subfolder of OUT that holds the retrieved instances."""


def ingest_dicomweb(
    url: str,
    out: str | PathLike,
    studies: Sequence[str] | None = None,
    labels_csv: str | PathLike | None = None,
    salt: str | None = None,
    progress: bool = True,
    environ: Mapping[str, str] | None = None,
    workers: int = 4,
) -> IngestResult:
    """Ingest studies from a DICOMweb server into ``out/datalist.json`` and ``out/rejects.csv``.

    Studies are retrieved by ``workers`` threads (one WADO-RS request per study) while the
    main thread reads the files already written, so the server's work and the decoding
    overlap.

    Args:
        url: the DICOMweb root, e.g. ``http://pacs:8042/dicom-web`` (no credentials in it).
        out: output folder (created); the instances go to ``out/dicom/``.
        studies: Study Instance UIDs to ingest (default: every study on the server).
        labels_csv: optional CSV joining labels by ``patient`` (PatientID) or ``file``
            (``<study>/<series>/<sop>.dcm`` under ``out/dicom``, or ``<sop>.dcm``).
        salt: secret for site pseudonyms; default ``$MEDGLASS_SITE_SALT`` or a random one.
        progress: show a progress bar.
        environ: where credentials are read (default ``os.environ``; see
            :mod:`transforms.dicomweb_source`).
        workers: concurrent retrievals (at least 1).

    Returns:
        An :class:`~pipelines.ingest.IngestResult`; ``n_files`` counts the instances
        retrieved, ``seconds`` includes the retrieval; rejects are sorted.

    Raises:
        ValueError: a bad URL, study UID, labels CSV, set of credentials or ``workers``.
        DicomwebError: the server cannot be reached or refuses a request.

    Example:
        >>> ingest_dicomweb("ftp://pacs/dicom-web", "out")
        Traceback (most recent call last):
        ...
        ValueError: DICOMweb URL must be http(s)://host[:port]/path, got 'ftp://pacs/dicom-web'
    """
    started = time.perf_counter()
    root = check_dicomweb_url(url)
    if int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers!r}")
    out_path = Path(out).resolve()
    if out_path.exists() and not out_path.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    found, missing = find_studies(open_dicomweb(root, environ), list(studies) if studies else None)
    result = IngestResult()
    references: dict[str, str] = {}  # local file -> the server's resource, for reject rows
    total = sum(s.n_instances or 0 for s in found) if all(s.n_instances for s in found) else None
    images = out_path / IMAGES_FOLDER
    arriving = _retrieved_files(root, environ, found, images, int(workers), references, missing)
    with contextlib.closing(arriving):  # stops the workers if reading fails
        ingest_files(arriving, images, labels_csv, salt, progress, result=result, total=total)
    for index, (path, reason) in enumerate(result.rejects):
        if path in references:
            result.rejects[index] = (f"{root}/{references[path]}", reason)
            os.remove(path)  # the datalist does not reference it; the server still holds it
    result.rejects.extend((f"{root}/studies/{uid}", "study not found on the server") for uid in missing)
    result.rejects.sort()
    result.seconds = time.perf_counter() - started
    write_ingest_outputs(result, out_path, f"medglass ingest of {root}")
    return result


def _retrieved_files(
    root: str,
    environ: Mapping[str, str] | None,
    studies: list[RemoteStudy],
    images: Path,
    workers: int,
    references: dict[str, str],
    missing: list[str],
) -> Iterator[str]:
    """Yield each retrieved file as soon as a worker has written it.

    Fills ``references`` (file -> server resource) and adds to ``missing`` the studies that
    vanished between search and retrieval (HTTP 404). A worker's error is raised here, and
    closing the generator stops the workers after their current instance.
    """
    arrived: queue.Queue = queue.Queue()  # unbounded: holds paths only, workers never block
    stop = threading.Event()
    local = threading.local()
    finished = object()

    def retrieve(study: RemoteStudy) -> None:
        try:
            if stop.is_set():
                return
            if not hasattr(local, "client"):  # one session per thread (requests sessions are not shared)
                local.client = open_dicomweb(root, environ)
            for path, reference in retrieve_study_files(local.client, study.uid, images):
                arrived.put(("file", str(path), reference))
                if stop.is_set():
                    return
        except DicomwebError as err:
            arrived.put(("missing", study.uid, "") if err.status == 404 else err)
        except Exception as err:  # reported to the reading thread, which raises it
            arrived.put(err)
        finally:
            arrived.put(finished)

    pool = ThreadPoolExecutor(max_workers=min(workers, max(1, len(studies))), thread_name_prefix="dicomweb")
    try:
        for study in studies:
            pool.submit(retrieve, study)
        pending = len(studies)
        while pending:
            item = arrived.get()
            if item is finished:
                pending -= 1
            elif isinstance(item, BaseException):
                raise item
            elif item[0] == "missing":
                missing.append(item[1])
            else:
                references[item[1]] = item[2]
                yield item[1]
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
