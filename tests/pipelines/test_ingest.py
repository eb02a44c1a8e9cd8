"""Folder ingestion over the real DICOM folders pydicom and pydicom-data ship, and bad folders."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from pipelines.ingest import ingest_folder, read_label_table
from tests.conftest import all_files, pydicom_data_dir, pydicom_test_dir


def _tree_digest(root: Path) -> dict[str, tuple[str, int]]:
    out = {}
    for path in all_files(root):
        st = path.stat()
        out[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns)
    return out


def _accounted(result) -> set[str]:
    used = set()
    for record in result.records:
        image = record["image"]
        for item in image if isinstance(image, list) else [image]:
            used.add(str(item).split("#")[0])
    return used


@pytest.mark.parametrize("src_dir", [pydicom_test_dir, pydicom_data_dir], ids=["pydicom", "pydicom-data"])
def test_every_shipped_file_is_listed_or_rejected_and_src_untouched(tmp_path, src_dir):
    src = tmp_path / "src"
    shutil.copytree(src_dir(), src)  # a private copy: the installed package stays out of reach
    before = _tree_digest(src)
    result = ingest_folder(src, tmp_path / "out", salt="test", progress=False)
    assert _tree_digest(src) == before  # byte-identical, not even touched

    files = {str(p) for p in all_files(src)}
    used, rejected = _accounted(result), {p for p, _ in result.rejects}
    assert files == used | rejected
    assert not used & rejected
    assert all(reason.strip() for _, reason in result.rejects)
    assert len(result.records) >= 20

    datalist = json.loads((tmp_path / "out" / "datalist.json").read_text())
    assert len(datalist["training"]) == len(result.records)
    with open(tmp_path / "out" / "rejects.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["path"] for r in rows} == rejected and all(r["reason"] for r in rows)


def test_pydicom_folder_groups_series_and_keeps_no_identifiers(tmp_path):
    src = pydicom_test_dir()
    result = ingest_folder(src, tmp_path / "out", salt="test", progress=False)
    series = [r for r in result.records if isinstance(r["image"], list)]
    assert any(Path(r["image"][0]).parent.name == "CT5N" and len(r["image"]) == 5 for r in series)
    text = (tmp_path / "out" / "datalist.json").read_text()
    ct = pydicom.dcmread(src / "CT_small.dcm")
    for identifier in (str(ct.PatientName), str(ct.PatientID), str(ct.StudyDate)):
        assert identifier and identifier not in text
    reasons = dict(result.rejects)
    assert "truncated pixel data" in reasons[str(src / "MR_truncated.dcm")]
    assert "no pixel data" in reasons[str(src / "rtplan.dcm")]
    assert "not an image" in reasons[str(src / "README.txt")]


def test_bad_files_do_not_stop_ingestion(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(pydicom_test_dir() / "CT_small.dcm", src / "good.dcm")
    (src / "zero.dcm").write_bytes(b"")
    (src / "text.dcm").write_text("not dicom " * 50)
    data = (pydicom_test_dir() / "CT_small.dcm").read_bytes()
    (src / "cut.dcm").write_bytes(data[:-5000])
    (src / "broken.nii").write_bytes(b"\x00" * 400)
    (src / "empty_dir").mkdir()
    Image.fromarray(np.zeros((6, 6), dtype=np.uint8)).save(src / "ok.png")
    result = ingest_folder(src, tmp_path / "out", salt="s", progress=False)
    reasons = {Path(p).name: r for p, r in result.rejects}
    assert reasons["zero.dcm"].startswith("empty file")
    assert reasons["text.dcm"].startswith("not a DICOM file")
    assert reasons["cut.dcm"].startswith("truncated pixel data")
    assert reasons["broken.nii"].startswith("unreadable NIfTI file")
    assert reasons["empty_dir"] == "folder holds no files"
    assert sorted(Path(r["image"]).name for r in result.records) == ["good.dcm", "ok.png"]


def test_labels_joined_by_file_and_by_patient(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(pydicom_test_dir() / "CT_small.dcm", src / "a.dcm")
    shutil.copy(pydicom_test_dir() / "MR_small.dcm", src / "b.dcm")
    (tmp_path / "by_file.csv").write_text("file,label\na.dcm,1\nb.dcm,0\n")
    result = ingest_folder(
        src, tmp_path / "o1", labels_csv=tmp_path / "by_file.csv", salt="s", progress=False
    )
    assert {Path(r["image"]).name: r["label"] for r in result.records} == {"a.dcm": 1, "b.dcm": 0}

    patient = str(pydicom.dcmread(src / "a.dcm").PatientID)
    (tmp_path / "by_patient.csv").write_text(f"patient,label\n{patient},2\n")
    result = ingest_folder(
        src, tmp_path / "o2", labels_csv=tmp_path / "by_patient.csv", salt="s", progress=False
    )
    labels = {Path(r["image"]).name: r.get("label") for r in result.records}
    assert labels["a.dcm"] == 2
    assert patient not in (tmp_path / "o2" / "datalist.json").read_text()


def test_medmnist_archive_expands_to_records(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    np.savez(
        src / "toy.npz",
        train_images=np.zeros((4, 28, 28), np.uint8),
        train_labels=np.array([[0], [1], [1], [0]]),
        test_images=np.zeros((2, 28, 28), np.uint8),
        test_labels=np.array([[1], [0]]),
    )
    ingest_folder(src, tmp_path / "out", salt="s", progress=False)
    datalist = json.loads((tmp_path / "out" / "datalist.json").read_text())
    assert [r["label"] for r in datalist["training"]] == [0, 1, 1, 0]
    assert [r["label"] for r in datalist["test"]] == [1, 0]
    assert datalist["test"][0]["image"].endswith("toy.npz#test/0")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        ingest_folder(tmp_path / "missing", tmp_path / "out", progress=False)
    (tmp_path / "src").mkdir()
    with pytest.raises(ValueError, match="lies inside SRC"):
        ingest_folder(tmp_path / "src", tmp_path / "src" / "out", progress=False)
    (tmp_path / "bad.csv").write_text("name,value\na,1\n")
    with pytest.raises(ValueError, match="needs a 'label' column"):
        read_label_table(tmp_path / "bad.csv")


def test_random_salt_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDGLASS_SITE_SALT", raising=False)
    (tmp_path / "src").mkdir()
    shutil.copy(pydicom_test_dir() / "CT_small.dcm", tmp_path / "src" / "a.dcm")
    result = ingest_folder(tmp_path / "src", tmp_path / "out", progress=False)
    assert any("salt" in note for note in result.notes)
    assert os.path.exists(tmp_path / "out" / "ingest_summary.json")
