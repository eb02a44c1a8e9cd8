"""``medglass label-server``: the MONAI Label command line it builds and its argument checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.label_server_cli import APP_DIR, label_server_command, label_server_env, label_server_python


def test_command_serves_the_app_offline_on_loopback(tmp_path: Path) -> None:
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    command = label_server_command(bundles=bundles, studies=tmp_path, port=8123, python="/ml/bin/python")
    assert command[:4] == ["/ml/bin/python", "-m", "monailabel.main", "start_server"]
    pairs = dict(zip(command[4::2], command[5::2], strict=False))
    assert pairs["--app"] == str(APP_DIR) and pairs["--studies"] == str(tmp_path.resolve())
    assert pairs["--host"] == "127.0.0.1" and pairs["--port"] == "8123"
    assert ["--conf", "zoo_source", "ngc"] == command[
        command.index("zoo_source") - 1 : command.index("zoo_source") + 2
    ]
    assert command[-3:] == ["--conf", "bundles", str(bundles.resolve())]
    web = label_server_command(dicomweb="http://127.0.0.1:8042/dicom-web/", python="p")
    assert web[web.index("--studies") + 1] == "http://127.0.0.1:8042/dicom-web"
    assert "bundles" not in web  # the app's default: the repository's bundles


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give exactly one of studies"),
        ({"studies": ".", "dicomweb": "http://x"}, "give exactly one of studies"),
        ({"studies": "/no/such/folder"}, r"studies /no/such/folder: not a folder"),
        ({"dicomweb": "ftp://pacs"}, "dicomweb must be an http"),
        ({"studies": ".", "bundles": "/no/bundles"}, r"bundles /no/bundles: not a folder"),
        ({"studies": ".", "port": 0}, r"port must be an int in \[1, 65535\]"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        label_server_command(python="p", **kwargs)


def test_missing_environment_names_the_make_target(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="make monailabel-venv"):
        label_server_python(tmp_path / "no-venv")


def test_environment_keeps_credentials_out_of_the_command_and_reads_dicom_as_dicom() -> None:
    env = label_server_env({"PYTHONPATH": "/x", "MONAI_LABEL_DICOMWEB_PASSWORD": "secret"})
    assert (
        env["PYTHONPATH"].split(":")[1] == "/x"
        and Path(env["PYTHONPATH"].split(":")[0]) == APP_DIR.parents[1]
    )
    assert env["MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI"] == "false"
    assert env["MONAI_LABEL_DICOMWEB_PASSWORD"] == "secret"
    assert "secret" not in " ".join(label_server_command(dicomweb="http://pacs/dicom-web", python="p"))
    assert (
        label_server_env({"MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI": "true"})[
            "MONAI_LABEL_DICOMWEB_CONVERT_TO_NIFTI"
        ]
        == "true"
    )


def test_cli_reports_errors_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["label-server", "--studies", str(tmp_path / "missing"), "--dry-run"]) == 2
    assert "medglass label-server: error: studies" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: one of --studies / --dicomweb is required
        main(["label-server"])
