"""Read studies from a PACS over DICOMweb: QIDO-RS search, WADO-RS retrieve into local files.

A thin layer over dicomweb-client that adds what an ingest needs and the client leaves out:
credentials from the environment (never from the command line, never logged), a URL check
that refuses credentials written into it, fast failure when the server is down (the client
retries a refused connection with long exponential waits by default), and errors that say in one line
which URL failed and why, without echoing a secret. Instances are written one file each,
``<study>/<series>/<sop>.dcm``, in the transfer syntax the server stored them in
(``transfer-syntax=*``), so that the folder reader decodes exactly what a folder ingest
of the original files decodes.

Environment:
    MEDGLASS_DICOMWEB_USER, MEDGLASS_DICOMWEB_PASSWORD: HTTP basic authentication.
    MEDGLASS_DICOMWEB_TOKEN: a bearer token instead (``Authorization: Bearer ...``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

__all__ = [
    "PASSWORD_ENV",
    "TOKEN_ENV",
    "USER_ENV",
    "DicomwebError",
    "RemoteStudy",
    "check_dicomweb_url",
    "dicomweb_session",
    "find_studies",
    "is_dicomweb_url",
    "open_dicomweb",
    "retrieve_study_files",
]

USER_ENV = "MEDGLASS_DICOMWEB_USER"
PASSWORD_ENV = "MEDGLASS_DICOMWEB_PASSWORD"
TOKEN_ENV = "MEDGLASS_DICOMWEB_TOKEN"

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_STUDY_UID, _N_INSTANCES = "0020000D", "00201208"  # StudyInstanceUID, NumberOfStudyRelatedInstances
_UIDS_PER_QUERY = 20  # requested studies per QIDO-RS request (keeps the URL short)
# media type for WADO-RS: whatever transfer syntax the server holds (no transcoding)
_AS_STORED = (("application/dicom", "*"),)


class DicomwebError(ConnectionError):
    """A DICOMweb request that failed: the server's URL, what was asked and why.

    Args:
        message: one line; never holds a credential.
        status: the HTTP status code, when the server answered.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RemoteStudy:
    """One study on the server, as QIDO-RS lists it.

    Attributes:
        uid: Study Instance UID.
        n_instances: NumberOfStudyRelatedInstances (``None`` when the server does not say).
    """

    uid: str
    n_instances: int | None = None


def is_dicomweb_url(text: str) -> bool:
    """True when ``text`` is meant as a DICOMweb URL (it starts with ``http://`` or ``https://``).

    Example:
        >>> is_dicomweb_url("http://pacs:8042/dicom-web"), is_dicomweb_url("scans/")
        (True, False)
    """
    return str(text).lower().startswith(("http://", "https://"))


def check_dicomweb_url(url: str) -> str:
    """Check a DICOMweb root URL; return it without a trailing slash.

    Args:
        url: ``http(s)://host[:port]/path`` of the DICOMweb root (e.g. Orthanc's ``/dicom-web``).

    Returns:
        The URL without a trailing ``/``.

    Raises:
        ValueError: not http(s), no host, a query or fragment, or credentials written into
            it (the message then shows the URL without them).

    Example:
        >>> check_dicomweb_url("http://127.0.0.1:8042/dicom-web/")
        'http://127.0.0.1:8042/dicom-web'
    """
    parts = urlsplit(str(url))
    if parts.username is not None or parts.password is not None:
        shown = parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()
        raise ValueError(
            f"DICOMweb URL {shown}: holds credentials (user:password@); remove them and set "
            f"${USER_ENV} and ${PASSWORD_ENV} (or ${TOKEN_ENV}) instead"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"DICOMweb URL must be http(s)://host[:port]/path, got {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"DICOMweb URL must be the service root without ?query or #fragment, got {url!r}")
    return str(url).rstrip("/")


def dicomweb_session(environ: Mapping[str, str]) -> requests.Session:
    """An HTTP session carrying the credentials the environment gives.

    Args:
        environ: read for ``MEDGLASS_DICOMWEB_USER`` and ``MEDGLASS_DICOMWEB_PASSWORD`` (basic
            authentication) or ``MEDGLASS_DICOMWEB_TOKEN`` (bearer token); none: anonymous.

    Returns:
        The session.

    Raises:
        ValueError: a token together with a user or password, or a user without a
            password (or the reverse); the message names the variables, never their values.

    Example:
        >>> dicomweb_session({"MEDGLASS_DICOMWEB_TOKEN": "t0k"}).headers["Authorization"]
        'Bearer t0k'
    """
    user, password, token = (environ.get(k) or None for k in (USER_ENV, PASSWORD_ENV, TOKEN_ENV))
    if token and (user or password):
        raise ValueError(f"set either ${TOKEN_ENV} or ${USER_ENV} and ${PASSWORD_ENV}, not both")
    if (user is None) != (password is None):
        missing = PASSWORD_ENV if password is None else USER_ENV
        raise ValueError(f"${USER_ENV} and ${PASSWORD_ENV} go together: ${missing} is not set")
    session = requests.Session()
    # DICOM carries its own compression (the transfer syntax); gzip on top costs both ends CPU
    # (half of a loopback retrieval's time) for little gain on a hospital network
    session.headers["Accept-Encoding"] = "identity"
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif user is not None:
        session.auth = (user, password or "")
    return session


def open_dicomweb(
    url: str, environ: Mapping[str, str] | None = None, timeout: float = 30.0
) -> DICOMwebClient:
    """A dicomweb-client for ``url`` with credentials from the environment.

    Args:
        url: the DICOMweb root (checked by :func:`check_dicomweb_url`).
        environ: where to read ``MEDGLASS_DICOMWEB_*`` (default ``os.environ``).
        timeout: seconds to wait for each answer.

    Returns:
        The client; a refused connection fails after 3 attempts with short waits
        (``wait_exponential_multiplier=100`` ms), not the library's default 5 with long waits.

    Raises:
        ValueError: a bad URL or an incomplete set of credentials.
    """
    root = check_dicomweb_url(url)
    client = DICOMwebClient(
        root, session=dicomweb_session(os.environ if environ is None else environ), timeout=timeout
    )
    client.set_http_retry_params(retry=True, max_attempts=3, wait_exponential_multiplier=100)
    return client


def _connection_reason(err: requests.RequestException) -> str:
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(err))
    return found.group(1).strip() if found else type(err).__name__


@contextlib.contextmanager
def _errors(client: DICOMwebClient, doing: str) -> Iterator[None]:
    """Turn the client's exceptions into a one-line :class:`DicomwebError` that names the URL."""
    url = client.base_url
    try:
        yield
    except requests.HTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            has = "credentials from the environment" if _has_credentials(client) else "no credentials"
            raise DicomwebError(
                f"{url}: the server refused access (HTTP {status}) while {doing}, with {has}; set "
                f"${USER_ENV} and ${PASSWORD_ENV}, or ${TOKEN_ENV}",
                status,
            ) from None
        reason = err.response.reason if err.response is not None else ""
        raise DicomwebError(f"{url}: HTTP {status} {reason} while {doing}", status) from None
    except requests.Timeout:
        raise DicomwebError(f"{url}: no answer in time while {doing}") from None
    except requests.ConnectionError as err:
        raise DicomwebError(
            f"{url}: cannot connect ({_connection_reason(err)}) while {doing}; is the DICOMweb server "
            "running and the URL right?"
        ) from None
    except requests.RequestException as err:
        raise DicomwebError(f"{url}: request failed ({type(err).__name__}) while {doing}") from None


def _has_credentials(client: DICOMwebClient) -> bool:
    session = client._session  # the session this module built (dicomweb-client has no accessor)
    return session.auth is not None or "Authorization" in session.headers


def _value(row: Mapping, tag: str) -> str | int | None:
    values = row.get(tag, {}).get("Value") or [None]
    return values[0]


def find_studies(
    client: DICOMwebClient, studies: Sequence[str] | None = None
) -> tuple[list[RemoteStudy], list[str]]:
    """Look studies up (QIDO-RS): the requested ones, or every study the server lists.

    Requested UIDs are matched in groups (QIDO-RS UID list matching, ``uid1,uid2,...``), so
    a long list costs a few requests, not one each.

    Args:
        client: from :func:`open_dicomweb`.
        studies: Study Instance UIDs (default: every study on the server).

    Returns:
        ``(found, missing)``: the studies found (in the requested order when requested), and
        the requested UIDs the server does not hold.

    Raises:
        ValueError: a requested UID is not a DICOM UID.
        DicomwebError: the server cannot be reached or refuses the request.
    """
    fields = ["StudyInstanceUID", "NumberOfStudyRelatedInstances"]
    if studies is None:
        with _errors(client, "searching for studies"):
            rows = client.search_for_studies(fields=fields, get_remaining=True)
        return [_study(r) for r in rows if _value(r, _STUDY_UID)], []
    wanted = list(dict.fromkeys(str(uid) for uid in studies))
    for uid in wanted:
        if not _UID.match(uid) or len(uid) > 64:
            raise ValueError(f"--study {uid!r} is not a DICOM UID (digits and dots, at most 64 characters)")
    found: dict[str, RemoteStudy] = {}
    for start in range(0, len(wanted), _UIDS_PER_QUERY):
        group = wanted[start : start + _UIDS_PER_QUERY]
        with _errors(client, f"searching for {len(group)} requested studies"):
            rows = client.search_for_studies(
                fields=fields, search_filters={"StudyInstanceUID": ",".join(group)}, get_remaining=True
            )
        found.update((study.uid, study) for study in map(_study, rows))
    return [found[uid] for uid in wanted if uid in found], [uid for uid in wanted if uid not in found]


def _study(row: Mapping) -> RemoteStudy:
    count = _value(row, _N_INSTANCES)
    return RemoteStudy(
        uid=str(_value(row, _STUDY_UID)), n_instances=int(count) if count is not None else None
    )


def _file_name(uid: str) -> str:
    """A UID as a file name; anything else the server sends becomes a digest (no path tricks)."""
    return uid if _UID.match(uid) and len(uid) <= 64 else hashlib.sha256(uid.encode()).hexdigest()[:32]


def retrieve_study_files(
    client: DICOMwebClient, study: str, folder: str | os.PathLike
) -> Iterator[tuple[Path, str]]:
    """Retrieve a study (WADO-RS) into ``folder/<study>/<series>/<sop>.dcm``, one file per instance.

    One request per study; instances are streamed and written as they arrive, in the
    transfer syntax the server stored them in. The bytes written are the part the server
    sent: dicomweb-client parses each part from a buffer that pydicom keeps
    (``FileDataset.buffer``), so no re-encoding happens (``pydicom.dcmwrite`` is the fallback
    when no buffer is kept; it also costs about as much as reading the file again). Each file
    is written under a temporary name and renamed, so a file that exists is complete.

    Args:
        client: from :func:`open_dicomweb`.
        study: Study Instance UID.
        folder: the destination root.

    Yields:
        ``(file, reference)`` per instance as it is written; ``reference`` is
        ``studies/<uid>/series/<uid>/instances/<uid>`` (relative to the DICOMweb root).

    Raises:
        DicomwebError: the server cannot be reached or refuses the request (``status`` 404
            when it does not hold the study).
    """
    made: set[Path] = set()
    with _errors(client, f"retrieving study {study}"):
        instances = client.iter_study(study, media_types=_AS_STORED)
        for index, dataset in enumerate(instances):
            series = str(dataset.get("SeriesInstanceUID", "")) or "series"
            sop = str(dataset.get("SOPInstanceUID", "")) or f"instance{index:05d}"
            target = Path(folder) / _file_name(study) / _file_name(series)
            if target not in made:
                target.mkdir(parents=True, exist_ok=True)
                made.add(target)
            path = target / f"{_file_name(sop)}.dcm"
            partial = path.with_name(f".{path.name}.part")
            received = getattr(getattr(dataset, "buffer", None), "getvalue", None)
            if received is not None:
                partial.write_bytes(received())  # the server's bytes, unchanged
            else:
                pydicom.dcmwrite(partial, dataset, enforce_file_format=False)
            os.replace(partial, path)
            yield path, f"studies/{study}/series/{series}/instances/{sop}"
