"""A real PACS for the tests: Orthanc with its DICOMweb plugin, started on loopback.

The Debian packages ``orthanc`` and ``orthanc-dicomweb`` provide the server (``make test``
installs them when missing). :class:`OrthancServer` writes a private configuration into a
work folder (storage there, free loopback ports chosen at run time, authentication on,
remote access off), starts ``Orthanc`` and waits until ``/system`` answers. Files are
loaded by STOW-RS through dicomweb-client, the same client ``medglass ingest URL`` uses.

Orthanc 1.10 has no option to bind its sockets to one address; ``RemoteAccessAllowed:
false`` makes its HTTP server refuse every client but loopback, and the DICOM (DIMSE)
listener refuses every command (no modalities known, every ``DicomAlwaysAllow*`` off).

Example::

    with OrthancServer(tmp_path / "pacs") as pacs:
        study_uids = pacs.store([Path("CT_small.dcm")])  # STOW-RS
        pacs.client().search_for_studies()  # an authenticated dicomweb-client (QIDO-RS, WADO-RS)
        requests.get(f"{pacs.url}/system", auth=pacs.auth)  # Orthanc's own REST API
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from types import TracebackType

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

__all__ = ["DICOMWEB_PLUGIN", "OrthancServer", "TestStudies", "orthanc_available", "write_test_studies"]

# where the Debian package orthanc-dicomweb installs the plugin (`dpkg -L orthanc-dicomweb`)
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


def orthanc_available() -> bool:
    """True when the ``Orthanc`` executable and the DICOMweb plugin are installed."""
    return shutil.which("Orthanc") is not None and DICOMWEB_PLUGIN.is_file()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OrthancServer:
    """Orthanc with DICOMweb on 127.0.0.1, as a context manager.

    Args:
        workdir: folder for the configuration, the storage and ``orthanc.log`` (created).
        user: the one registered HTTP user.
        password: its password (default: random for each server).

    Attributes:
        url: ``http://127.0.0.1:PORT`` (Orthanc's REST API), set once started.
        dicomweb_url: ``URL/dicom-web`` (QIDO-RS, WADO-RS, STOW-RS).
        auth: ``(user, password)`` for HTTP basic authentication.
        http_port, dicom_port: the ports chosen at start.
        log_path: Orthanc's log file.

    Raises:
        RuntimeError: (on start) Orthanc is not installed, exits, or does not answer
            within ``START_TIMEOUT_S``; the message holds the tail of its log.
    """

    def __init__(self, workdir: str | PathLike, user: str = "medglass", password: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.auth = (user, password or secrets.token_urlsafe(16))
        self.http_port = 0
        self.dicom_port = 0
        self.log_path = self.workdir / "orthanc.log"
        self._process: subprocess.Popen | None = None
        self._log_handle = None

    @property
    def url(self) -> str:
        """Base URL of the REST API (``http://127.0.0.1:PORT``)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """Root of the DICOMweb services (``URL/dicom-web``)."""
        return f"{self.url}/dicom-web"

    def client(self) -> DICOMwebClient:
        """A dicomweb-client for this server, authenticated, ignoring proxy variables."""
        session = requests.Session()
        session.auth = self.auth
        session.trust_env = False  # loopback: never through a proxy from the environment
        return DICOMwebClient(self.dicomweb_url, session=session)

    def _config(self) -> dict:
        storage = self.workdir / "storage"
        return {
            "Name": "medglass-test",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.auth[0]: self.auth[1]},
            "DicomServerEnabled": True,
            "DicomPort": self.dicom_port,
            "DicomAet": "MEDGLASSTEST",
            "DicomModalities": {},
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "OrthancPeers": {},
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 8,
            "StableAge": 1,
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "EnableWado": False,
                "Host": f"127.0.0.1:{self.http_port}",
                "Ssl": False,
            },
        }

    def start(self) -> OrthancServer:
        """Write the configuration, start Orthanc and wait until ``/system`` answers.

        Returns:
            self.

        Raises:
            RuntimeError: see the class.
        """
        if not orthanc_available():
            raise RuntimeError(
                f"Orthanc is not installed (need the executable 'Orthanc' and {DICOMWEB_PLUGIN}): "
                "run `make orthanc` or `apt-get install orthanc orthanc-dicomweb`"
            )
        if self._process is not None:
            raise RuntimeError(f"Orthanc in {self.workdir} is already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(3):  # a chosen port may be taken by someone else before Orthanc binds it
            self.http_port, self.dicom_port = _free_port(), _free_port()
            config = self.workdir / "orthanc.json"
            config.write_text(json.dumps(self._config(), indent=1))
            self._log_handle = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
            self._process = subprocess.Popen(
                ["Orthanc", str(config)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=self._log_handle,
                stderr=subprocess.STDOUT,
            )
            last_error = self._wait_until_ready()
            if not last_error:
                return self
            self.stop()
        raise RuntimeError(f"Orthanc did not start in {self.workdir}: {last_error}\n{self.log_tail()}")

    def _wait_until_ready(self) -> str:
        """Poll ``/system`` until it answers; return '' or why it did not."""
        deadline = time.monotonic() + START_TIMEOUT_S
        session = requests.Session()
        session.trust_env = False
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                return f"Orthanc exited with code {code}"
            try:
                response = session.get(f"{self.url}/system", auth=self.auth, timeout=2)
                if response.status_code == 200:
                    return ""
            except requests.RequestException:
                pass
            time.sleep(0.1)
        return f"no answer from {self.url}/system within {START_TIMEOUT_S:.0f} s"

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of Orthanc's log (for error messages)."""
        if not self.log_path.is_file():
            return "(no Orthanc log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "Orthanc log (last lines):\n" + "\n".join(text[-lines:])

    def store(self, paths: Iterable[str | PathLike]) -> list[str]:
        """Upload DICOM files by STOW-RS.

        Args:
            paths: DICOM files (read with pydicom, sent as they are).

        Returns:
            The Study Instance UIDs of the uploaded files, unique, in first-seen order.

        Raises:
            RuntimeError: the server refused an instance (its SOP Instance UID and reason).
        """
        datasets = [pydicom.dcmread(p) for p in paths]
        if not datasets:
            return []
        reply = self.client().store_instances(datasets)
        failed = list(getattr(reply, "FailedSOPSequence", []))
        if failed:
            reasons = [
                f"{item.get('ReferencedSOPInstanceUID', '?')}: {item.get('FailureReason', '?')}"
                for item in failed
            ]
            raise RuntimeError(f"Orthanc refused {len(failed)} instance(s): {reasons}")
        return list(dict.fromkeys(str(ds.StudyInstanceUID) for ds in datasets))

    def stop(self) -> None:
        """Terminate Orthanc (kill after ``STOP_TIMEOUT_S``) and wait for it; safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@dataclass
class TestStudies:
    """The files the ``orthanc`` fixture uploads, as copies on disk (for folder ingests).

    Attributes:
        folder: holds ``real/`` (pydicom and pydicom-data CT and MR files, one 5-slice CT
            series among them), ``phantom/`` (brain2d phantoms written as DICOM) and ``sr/``
            (a Basic Text SR, no pixel data).
        files: ``{"real" | "phantom" | "sr": [files]}``.
        studies: ``{"real" | "phantom" | "sr": [Study Instance UIDs]}``, unique, in file order.
    """

    __test__ = False  # not a pytest test class despite its name

    folder: Path
    files: dict[str, list[Path]] = field(default_factory=dict)
    studies: dict[str, list[str]] = field(default_factory=dict)

    @property
    def all_files(self) -> list[Path]:
        """Every file, group after group."""
        return [f for group in self.files.values() for f in group]


def write_test_studies(folder: str | PathLike, n_phantoms: int = 4) -> TestStudies:
    """Copy the real test DICOMs and write a phantom cohort as DICOM into ``folder``.

    Args:
        folder: destination (created).
        n_phantoms: brain2d phantoms (32×32, one file each).

    Returns:
        A :class:`TestStudies`.
    """
    import data_store

    from phantoms import PhantomConfig, generate_cohort

    root = Path(folder)
    test_files = Path(pydicom.__file__).parent / "data" / "test_files"
    sources = {
        "real": [
            test_files / "CT_small.dcm",
            test_files / "MR_small.dcm",
            *sorted((test_files / "dicomdirtests" / "98892001" / "CT5N").iterdir()),
            Path(data_store.__file__).parent / "data" / "emri_small.dcm",  # MR, 10 frames
        ],
        "sr": [test_files / "test-SR.dcm"],
    }
    result = TestStudies(folder=root)
    for group, paths in sources.items():
        (root / group).mkdir(parents=True, exist_ok=True)
        copies = []
        for path in paths:
            name = f"{path.parent.name}_{path.name}" if path.parent.name == "CT5N" else path.name
            copies.append(Path(shutil.copy(path, root / group / name)))
        result.files[group] = copies
    cohort = root / "phantom_cohort"
    generate_cohort(
        PhantomConfig(kind="brain2d", n=n_phantoms, seed=5, size=32, image_format="dicom"),
        cohort,
        progress=False,
    )
    (root / "phantom").mkdir(exist_ok=True)
    result.files["phantom"] = [
        Path(shutil.copy(f, root / "phantom")) for f in sorted((cohort / "images").glob("*.dcm"))
    ]
    shutil.rmtree(cohort)
    result.files = {g: result.files[g] for g in ("real", "phantom", "sr")}
    for group, paths in result.files.items():
        uids = [str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID) for f in paths]
        result.studies[group] = list(dict.fromkeys(uids))
    return result
