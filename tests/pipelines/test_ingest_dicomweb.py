"""``medglass ingest URL`` against a real PACS: Orthanc with DICOMweb on loopback (tests/orthanc_server.py).

The ``orthanc`` fixture holds real CT/MR files (pydicom, pydicom-data; one 5-slice CT series),
brain2d phantoms written as DICOM and a structured report; ``orthanc_studies`` holds copies of
the same files, so a folder ingest of them is the reference a DICOMweb ingest must equal.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests

from pipelines.cli import main
from pipelines.dicomweb_ingest import IMAGES_FOLDER, ingest_dicomweb
from pipelines.ingest import ingest_folder
from tests.orthanc_server import OrthancServer, TestStudies
from transforms.dicomweb_source import PASSWORD_ENV, TOKEN_ENV, USER_ENV, DicomwebError
from transforms.image_loading import load_image

pytestmark = pytest.mark.integration


def _credentials(server: OrthancServer, password: str | None = None) -> dict[str, str]:
    return {USER_ENV: server.auth[0], PASSWORD_ENV: server.auth[1] if password is None else password}


def _sop_uids(image: str | list[str]) -> tuple[str, ...]:
    paths = image if isinstance(image, list) else [image]
    return tuple(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths)


def _by_instances(records: list[dict]) -> dict[tuple[str, ...], dict]:
    return {_sop_uids(r["image"]): r for r in records}


def _output_text(out: Path) -> str:
    return "".join(
        (out / name).read_text() for name in ("datalist.json", "rejects.csv", "ingest_summary.json")
    )


def test_test_pacs_holds_the_fixture_studies_and_refuses_anonymous_requests(orthanc, orthanc_studies):
    listed = {row["0020000D"]["Value"][0] for row in orthanc.client().search_for_studies()}
    expected = {uid for group in orthanc_studies.studies.values() for uid in group}
    assert listed == expected
    assert len(orthanc_studies.studies["phantom"]) == len(orthanc_studies.files["phantom"]) == 4
    assert requests.get(f"{orthanc.url}/system", timeout=5).status_code == 401
    assert orthanc.dicomweb_url == f"{orthanc.url}/dicom-web" and orthanc.url.startswith("http://127.0.0.1:")


def test_dicomweb_ingest_equals_folder_ingest(orthanc, orthanc_studies: TestStudies, tmp_path):
    labels = tmp_path / "labels.csv"  # joined by PatientID: the phantoms get labels 0, 1, 2, 3
    patients = [str(pydicom.dcmread(f).PatientID) for f in orthanc_studies.files["phantom"]]
    labels.write_text("patient,label\n" + "".join(f"{p},{i}\n" for i, p in enumerate(patients)))
    remote = ingest_dicomweb(
        orthanc.dicomweb_url,
        tmp_path / "web",
        None,
        labels,
        salt="s",
        progress=False,
        environ=_credentials(orthanc),
    )
    local = ingest_folder(orthanc_studies.folder, tmp_path / "folder", labels, salt="s", progress=False)

    assert remote.n_files == local.n_files == len(orthanc_studies.all_files) == 13
    remote_records, local_records = _by_instances(remote.records), _by_instances(local.records)
    assert remote_records.keys() == local_records.keys()
    assert len(remote_records) == 8  # CT, MR, the 5-slice CT series as one, 10-frame MR, 4 phantoms
    for key, expected in local_records.items():
        got = remote_records[key]
        assert got["shape"] == expected["shape"] and got["attributes"] == expected["attributes"]
        assert got.get("label") == expected.get("label")
        assert isinstance(got["image"], list) == isinstance(expected["image"], list)
        np.testing.assert_array_equal(load_image(got["image"]).numpy(), load_image(expected["image"]).numpy())
    assert any(isinstance(r["image"], list) and r["shape"] == [1, 16, 16, 5] for r in remote.records)
    assert sorted(r["label"] for r in remote.records if "label" in r) == [0, 1, 2, 3]
    images = [
        p for r in remote.records for p in (r["image"] if isinstance(r["image"], list) else [r["image"]])
    ]
    assert all(Path(p).is_relative_to(tmp_path / "web" / IMAGES_FOLDER) for p in images)

    # the SR: rejected by both with the reader's reason; the DICOMweb row names the server's resource
    sr = pydicom.dcmread(orthanc_studies.files["sr"][0], stop_before_pixels=True)
    (local_reject,) = local.rejects
    (remote_reject,) = remote.rejects
    assert local_reject == (str(orthanc_studies.files["sr"][0]), remote_reject[1])
    assert "no pixel data" in remote_reject[1]
    assert remote_reject[0] == (
        f"{orthanc.dicomweb_url}/studies/{sr.StudyInstanceUID}/series/{sr.SeriesInstanceUID}"
        f"/instances/{sr.SOPInstanceUID}"
    )
    retrieved = {p.name for p in (tmp_path / "web" / IMAGES_FOLDER).rglob("*") if p.is_file()}
    assert f"{sr.SOPInstanceUID}.dcm" not in retrieved and len(retrieved) == 12  # no SR, no partial file

    text = _output_text(tmp_path / "web")
    assert orthanc.auth[1] not in text  # the password is never written
    ct = pydicom.dcmread(orthanc_studies.files["real"][0], stop_before_pixels=True)
    assert str(ct.PatientName) not in text and str(ct.PatientID) not in text
    assert json.loads((tmp_path / "web" / "datalist.json").read_text())["description"].endswith(
        orthanc.dicomweb_url
    )


def test_cli_ingests_chosen_studies_and_rejects_a_missing_one(
    orthanc, orthanc_studies, tmp_path, monkeypatch
):
    for name, value in _credentials(orthanc).items():
        monkeypatch.setenv(name, value)
    chosen = orthanc_studies.studies["real"][2]  # the 5-slice CT series
    missing = "1.2.826.0.1.3680043.9.9999.1"
    out = tmp_path / "out"
    code = main(
        [
            "ingest",
            orthanc.dicomweb_url,
            "--study",
            chosen,
            "--study",
            missing,
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    (record,) = json.loads((out / "datalist.json").read_text())["training"]
    assert record["shape"] == [1, 16, 16, 5] and len(record["image"]) == 5
    with open(out / "rejects.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [
        {"path": f"{orthanc.dicomweb_url}/studies/{missing}", "reason": "study not found on the server"}
    ]


def test_cli_sr_study_alone_gives_a_reject_row_and_status_1(
    orthanc, orthanc_studies, tmp_path, monkeypatch, capsys
):
    for name, value in _credentials(orthanc).items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    code = main(
        [
            "ingest",
            orthanc.dicomweb_url,
            "--study",
            orthanc_studies.studies["sr"][0],
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 1
    assert "no readable images found" in capsys.readouterr().err
    with open(out / "rejects.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert "/instances/" in row["path"] and row["reason"].startswith("no pixel data")


def test_wrong_or_missing_credentials_fail_clearly_without_printing_the_password(
    orthanc, tmp_path, monkeypatch, capsys
):
    secret = "wrong-Pa55word-never-shown"
    with pytest.raises(DicomwebError, match=r"refused access \(HTTP 401\)") as caught:
        ingest_dicomweb(
            orthanc.dicomweb_url, tmp_path / "a", progress=False, environ=_credentials(orthanc, secret)
        )
    assert secret not in str(caught.value) and caught.value.status == 401
    assert orthanc.dicomweb_url in str(caught.value) and USER_ENV in str(caught.value)
    with pytest.raises(DicomwebError, match="with no credentials"):
        ingest_dicomweb(orthanc.dicomweb_url, tmp_path / "b", progress=False, environ={})

    monkeypatch.setenv(USER_ENV, orthanc.auth[0])
    monkeypatch.setenv(PASSWORD_ENV, secret)
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert main(["ingest", orthanc.dicomweb_url, "--out", str(tmp_path / "c"), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err
    assert captured.err.startswith("medglass ingest: error: ") and "HTTP 401" in captured.err
    assert not (tmp_path / "c" / "datalist.json").exists()


def test_server_down_is_one_clear_error_naming_the_url(tmp_path, capsys):
    with OrthancServer(tmp_path / "pacs") as server:
        url, env = server.dicomweb_url, _credentials(server)
    with pytest.raises(DicomwebError, match=r"cannot connect \(Connection refused\)") as caught:
        ingest_dicomweb(url, tmp_path / "out", progress=False, environ=env)
    assert str(caught.value).startswith(f"{url}: ")
    assert main(["ingest", url, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and url in err[0] and "cannot connect" in err[0]
    assert not (tmp_path / "out" / "datalist.json").exists()


def test_study_option_needs_a_url_and_a_valid_uid(orthanc, tmp_path, capsys):
    assert main(["ingest", str(tmp_path), "--study", "1.2.3", "--out", str(tmp_path / "o")]) == 2
    assert "--study selects studies on a DICOMweb server" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"--study '1\.2\.x' is not a DICOM UID"):
        ingest_dicomweb(
            orthanc.dicomweb_url, tmp_path / "o", ["1.2.x"], progress=False, environ=_credentials(orthanc)
        )
