"""Tests of pipelines/datalists.py: path resolution, validation, label masking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.datalists import check_labels, load_datalist, mask_labels


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture()
def datalist(tmp_path: Path) -> Path:
    root = tmp_path / "cohort"
    _touch(root / "images" / "a.png")
    _touch(root / "images" / "b.png")
    _touch(root / "masks" / "a.png")
    _touch(root / "arrays.npz")
    absolute = _touch(tmp_path / "elsewhere" / "c.png")
    data = {
        "training": [
            {"id": "a", "image": "images/a.png", "mask": "masks/a.png", "label": 0},
            {"id": "b", "image": ["images/a.png", "images/b.png"], "label": 1},
            {"id": "c", "image": str(absolute), "label": -1},
            {"id": "d", "image": "arrays.npz#train/3", "label": 1},
        ],
        "validation": [],
    }
    path = root / "datalist.json"
    path.write_text(json.dumps(data))
    return path


def test_load_datalist_resolves_relative_paths(datalist: Path) -> None:
    root = datalist.parent
    records = load_datalist(datalist, "training")
    assert records[0]["image"] == str(root / "images" / "a.png")
    assert records[0]["mask"] == str(root / "masks" / "a.png")
    assert records[1]["image"] == [str(root / "images" / "a.png"), str(root / "images" / "b.png")]
    assert records[2]["image"] == str(datalist.parent.parent / "elsewhere" / "c.png")
    assert records[3]["image"] == str(root / "arrays.npz") + "#train/3"
    assert [r["label"] for r in records] == [0, 1, -1, 1]
    # the file on disk keeps its relative paths
    assert json.loads(datalist.read_text())["training"][0]["image"] == "images/a.png"


def test_load_datalist_missing_file_names_datalist_and_section(datalist: Path) -> None:
    (datalist.parent / "images" / "b.png").unlink()
    with pytest.raises(
        ValueError, match=r"datalist .*datalist\.json: section 'training': record 'b'.*b\.png"
    ):
        load_datalist(datalist, "training")


def test_load_datalist_empty_and_missing_sections(datalist: Path) -> None:
    with pytest.raises(ValueError, match=r"datalist .*datalist\.json: section 'validation' is empty"):
        load_datalist(datalist, "validation")
    with pytest.raises(ValueError, match=r"no section 'test' \(sections: training, validation\)"):
        load_datalist(datalist, "test")
    assert load_datalist(datalist, "test", required=False) == []
    with pytest.raises(ValueError, match=r"datalist .*nope\.json: file not found"):
        load_datalist(datalist.parent / "nope.json", "training")


def test_load_datalist_rejects_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json: not a readable JSON file"):
        load_datalist(path, "training")


def test_check_labels() -> None:
    records = [{"id": "p1", "label": 0}, {"id": "p2", "label": 1}, {"id": "p3", "label": -1}]
    check_labels(records, num_classes=2)
    with pytest.raises(ValueError, match=r"record 'p3': a label is required, got -1"):
        check_labels(records, num_classes=2, allow_unlabelled=False)
    with pytest.raises(ValueError, match=r"record 'p9': label must be an int in \[0, 2\), got 2"):
        check_labels([*records, {"id": "p9", "label": 2}], num_classes=2)
    with pytest.raises(ValueError, match=r"record 'q': label must be an int in \[0, 3\), got -2"):
        check_labels([{"id": "q", "label": -2}], num_classes=3)
    with pytest.raises(ValueError, match=r"record 'r': .* got True"):
        check_labels([{"id": "r", "label": True}], num_classes=2)
    with pytest.raises(ValueError, match=r"num_classes must be an int >= 1, got 0"):
        check_labels(records, num_classes=0)


def test_mask_labels_is_stratified_and_deterministic() -> None:
    # 24 of class 0, 16 of class 1; fraction 0.25 keeps 6 and 4 (hand-computed), masks 30 of 40.
    records = [{"id": i, "label": 0 if i < 24 else 1} for i in range(40)]
    masked = mask_labels(records, label_fraction=0.25, seed=3)
    labels = [r["label"] for r in masked]
    assert labels.count(-1) == 30
    assert labels.count(0) == 6 and labels.count(1) == 4
    assert all(r["label"] in (-1, 0) for r in masked[:24]) and all(r["label"] in (-1, 1) for r in masked[24:])
    assert [r["id"] for r in masked] == list(range(40))
    assert [r["label"] for r in records] == [0] * 24 + [1] * 16  # input unchanged
    assert mask_labels(records, 0.25, seed=3) == masked
    assert mask_labels(records, 0.25, seed=4) != masked
    assert [r["label"] for r in mask_labels(records, 1.0)] == [r["label"] for r in records]
    assert all(r["label"] == -1 for r in mask_labels(records, 0.0))


def test_mask_labels_keeps_unlabelled_and_validates() -> None:
    records = [{"id": 0, "label": -1}, {"id": 1, "label": 1}, {"id": 2}]
    assert [r["label"] for r in mask_labels(records, 1.0)] == [-1, 1, -1]
    with pytest.raises(ValueError, match=r"label_fraction must be in \[0, 1\], got 1.5"):
        mask_labels(records, 1.5)
