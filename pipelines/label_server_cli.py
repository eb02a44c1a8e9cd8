"""``medglass label-server``: the project's bundles served by MONAI Label, for 3D Slicer and OHIF.

MONAI Label 0.8.5 needs numpy < 2 and pydicom < 3, so it runs from its own virtual environment,
``.venv-monailabel`` (``make monailabel-venv`` builds it). This command builds the
``monailabel start_server`` command line of the app in ``apps/monailabel`` and runs it there:

- ``--bundles DIR``: the folder of bundle folders to serve (default: the repository's ``bundles/``);
- ``--studies DIR`` (a local datastore: a folder of NIfTI/PNG/JPEG/NRRD images) or
  ``--dicomweb URL`` (a PACS's DICOMweb root). DICOMweb credentials come from MONAI Label's own
  settings in the environment, ``MONAI_LABEL_DICOMWEB_USERNAME`` and
  ``MONAI_LABEL_DICOMWEB_PASSWORD``, never from the command line. Series are handed to the
  bundle as the DICOM files the PACS sent (``MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI`` false), so
  they are read exactly as ``medglass run`` reads a DICOM file;
- the server listens on 127.0.0.1 unless ``--host`` says otherwise, and queries no model zoo
  (``--conf zoo_source ngc``).

Example:
    >>> label_server_command(studies=".", port=8000, python="/venv/bin/python")[:4]
    ['/venv/bin/python', '-m', 'monailabel.main', 'start_server']
"""

from __future__ import annotations

import argparse
import os
import subprocess
from os import PathLike
from pathlib import Path

__all__ = [
    "APP_DIR",
    "LABEL_VENV",
    "add_label_server_commands",
    "label_server_command",
    "label_server_env",
    "label_server_python",
]

REPOSITORY = Path(__file__).resolve().parents[1]
APP_DIR = REPOSITORY / "apps" / "monailabel"
"""The MONAI Label app of the project."""

LABEL_VENV = REPOSITORY / ".venv-monailabel"
"""MONAI Label's virtual environment (``make monailabel-venv``)."""


def label_server_python(venv: str | PathLike = LABEL_VENV) -> Path:
    """The Python of MONAI Label's virtual environment.

    Args:
        venv: the environment's folder.

    Returns:
        ``<venv>/bin/python``.

    Raises:
        ValueError: the environment is missing or has no MONAI Label; the message names the
            make target that builds it.
    """
    python = Path(venv) / "bin" / "python"
    if not python.is_file() or not any((Path(venv) / "lib").glob("python3*/site-packages/monailabel")):
        raise ValueError(
            f"MONAI Label environment {venv}: not built (MONAI Label needs numpy < 2 and pydicom < 3, so it "
            "has its own virtual environment); build it with: make monailabel-venv"
        )
    return python


def label_server_command(
    bundles: str | PathLike | None = None,
    studies: str | PathLike | None = None,
    dicomweb: str | None = None,
    port: int = 8000,
    host: str = "127.0.0.1",
    python: str | PathLike | None = None,
) -> list[str]:
    """The ``monailabel start_server`` command line of the project's app.

    Args:
        bundles: folder of bundle folders (default: the repository's ``bundles/``).
        studies: a local datastore folder.
        dicomweb: a DICOMweb root URL (``http://host:port/dicom-web``), instead of ``studies``.
        port: the server's port.
        host: the address it listens on.
        python: MONAI Label's Python (default: :func:`label_server_python`).

    Returns:
        The argument list.

    Raises:
        ValueError: not exactly one of ``studies`` and ``dicomweb``; a ``studies`` or ``bundles``
            that is not a folder; a ``dicomweb`` that is not an http(s) URL; a port outside 1-65535.
    """
    if (studies is None) == (dicomweb is None):
        raise ValueError(
            f"give exactly one of studies (a folder) or dicomweb (a URL), got {studies!r} and {dicomweb!r}"
        )
    if studies is not None and not Path(studies).expanduser().is_dir():
        raise ValueError(f"studies {studies}: not a folder")
    if dicomweb is not None and not str(dicomweb).startswith(("http://", "https://")):
        raise ValueError(f"dicomweb must be an http:// or https:// URL, got {dicomweb!r}")
    if bundles is not None and not Path(bundles).expanduser().is_dir():
        raise ValueError(f"bundles {bundles}: not a folder")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an int in [1, 65535], got {port!r}")
    source = str(Path(studies).expanduser().resolve()) if studies is not None else str(dicomweb).rstrip("/")
    command = [
        str(python if python is not None else label_server_python()),
        "-m",
        "monailabel.main",
        "start_server",
        "--app",
        str(APP_DIR),
        "--studies",
        source,
        "--host",
        host,
        "--port",
        str(port),
        "--conf",
        "zoo_source",
        "ngc",
    ]
    if bundles is not None:
        command += ["--conf", "bundles", str(Path(bundles).expanduser().resolve())]
    return command


def label_server_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the server: ``base`` (default ``os.environ``) plus what the app needs.

    ``PYTHONPATH`` holds the repository (MONAI Label's training subprocess reads it), DICOMweb
    series reach the bundles as DICOM files (no NIfTI conversion), and MONAI Label's DICOMweb
    listing shows every modality (its default lists CT only), unless ``base`` sets them already.

    Args:
        base: the environment to start from.

    Returns:
        A new dict.
    """
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPOSITORY), env.get("PYTHONPATH", "")) if p)
    env.setdefault("MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI", "false")
    env.setdefault("MONAI_LABEL_DICOMWEB_SEARCH_FILTER", "{}")
    return env


def _cmd_label_server(args: argparse.Namespace) -> int:
    command = label_server_command(
        bundles=args.bundles, studies=args.studies, dicomweb=args.dicomweb, port=args.port, host=args.host
    )
    if args.dry_run:
        print(" ".join(command))
        return 0
    print(f"MONAI Label on http://{args.host}:{args.port} (app {APP_DIR}); Ctrl+C stops it", flush=True)
    return subprocess.call(command, env=label_server_env(), cwd=str(REPOSITORY))


def add_label_server_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``medglass label-server`` on the main parser's subcommands.

    Args:
        sub: the subparsers of :func:`pipelines.cli.build_parser`.
    """
    server = sub.add_parser(
        "label-server",
        help="serve the bundles in MONAI Label (3D Slicer, OHIF) over a local folder or a DICOMweb PACS",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    server.add_argument(
        "--bundles", help="folder of bundle folders to serve (default: the repository's bundles/)"
    )
    source = server.add_mutually_exclusive_group(required=True)
    source.add_argument("--studies", help="local datastore: a folder of NIfTI/PNG/JPEG/NRRD images")
    source.add_argument(
        "--dicomweb",
        metavar="URL",
        help="DICOMweb root of a PACS (credentials: $MONAI_LABEL_DICOMWEB_USERNAME / $MONAI_LABEL_DICOMWEB_PASSWORD)",
    )
    server.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    server.add_argument("--dry-run", action="store_true", help="print the server's command line and exit")
    server.set_defaults(func=_cmd_label_server)
