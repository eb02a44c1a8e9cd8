"""A real MONAI Label server of the project's app for the tests, started from ``.venv-monailabel``.

:class:`LabelServer` runs ``medglass label-server``'s command line
(:func:`pipelines.label_server_cli.label_server_command`) on 127.0.0.1 with a free port, waits
(bounded) until ``GET /info/`` answers, and stops the server (its whole process group: MONAI
Label starts uvicorn and training subprocesses) on exit.
"""

from __future__ import annotations

import email.parser
import json
import os
import signal
import socket
import subprocess
import time
from os import PathLike
from pathlib import Path
from types import TracebackType

import requests

from pipelines.label_server_cli import label_server_command, label_server_env, label_server_python

__all__ = ["LabelServer", "free_port", "multipart_result"]

START_TIMEOUT_S = 240.0
"""Bound on the wait for ``/info/`` (a goal of 30 s is measured by bench/bench_label_server.py)."""
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabelServer:
    """``monailabel start_server`` of ``apps/monailabel`` as a context manager.

    Args:
        workdir: folder of the server's log (created).
        bundles: the bundle folder served.
        studies: a local datastore folder, or
        dicomweb: a DICOMweb root URL.
        env: extra environment variables (DICOMweb credentials, tracking).

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        start_seconds: how long ``/info/`` took to answer.
    """

    def __init__(
        self,
        workdir: str | PathLike,
        bundles: str | PathLike,
        studies: str | PathLike | None = None,
        dicomweb: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = label_server_command(
            bundles=bundles, studies=studies, dicomweb=dicomweb, port=self.port, python=label_server_python()
        )
        self.env = {**label_server_env(), **(env or {})}
        self.log_path = self.workdir / "monailabel.log"
        self.start_seconds = float("nan")
        self._process: subprocess.Popen | None = None

    def start(self) -> LabelServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        begin = time.perf_counter()
        self._process = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        deadline = begin + START_TIMEOUT_S
        while time.perf_counter() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"MONAI Label exited ({self._process.returncode}):\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/info/", timeout=5).status_code == 200:
                    self.start_seconds = time.perf_counter() - begin
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"MONAI Label did not answer within {START_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)

    def __enter__(self) -> LabelServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def multipart_result(response: requests.Response) -> tuple[dict, bytes | None]:
    """The ``params`` JSON and the label file (part ``image``) of MONAI Label's multipart infer answer."""
    raw = f"Content-Type: {response.headers['content-type']}\r\n\r\n".encode() + response.content
    message = email.parser.BytesParser().parsebytes(raw)
    params, label = {}, None
    for part in message.get_payload():
        name = part.get_param("name", header="content-disposition")
        if name == "params":
            params = json.loads(part.get_payload(decode=True))
        elif name == "image":
            label = part.get_payload(decode=True)
    return params, label
