"""Tests for cohorts with several lesions per positive image (``PhantomConfig.lesions_per_image``).

Instance masks, per-lesion boxes and box labels in the datalist, ``lesions.csv``, determinism, the
default staying a single-lesion cohort, MONAI's detection transforms reading a record, and the
``medglass phantom --lesions-per-image`` flag.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import warnings
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from phantoms import PhantomConfig, generate_cohort

COHORTS = {
    "2d-png": PhantomConfig(
        kind="brain2d",
        n=8,
        seed=4,
        lesions_per_image=(1, 4),
        lesion_radius_range=(1.0, 10.0),  # a few pixels to large, at size 64
        lesion_prevalence=0.75,
        image_format="png",
    ),
    "2d-nifti": PhantomConfig(
        kind="brain2d", n=6, seed=2, size=48, lesions_per_image=(2, 5), image_format="nifti"
    ),
    "3d-nifti": PhantomConfig(
        kind="brain3d",
        n=4,
        seed=1,
        size=32,
        lesions_per_image=(2, 3),
        lesion_prevalence=0.75,
        image_format="nifti",
    ),
    "3d-dicom": PhantomConfig(
        kind="brain3d",
        n=3,
        seed=6,
        size=32,
        lesions_per_image=(1, 3),
        lesion_prevalence=1.0,
        image_format="dicom",
    ),
}
SPLIT_NAMES = ("training", "validation", "test")


def _load(path: Path) -> np.ndarray:
    from monai.transforms import LoadImage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(LoadImage(image_only=True)(str(path)))


def _records(out: Path) -> list[dict]:
    datalist = json.loads((out / "datalist.json").read_text())
    return [r for split in SPLIT_NAMES for r in datalist[split]]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _hand_box(instance: np.ndarray) -> list[int]:
    idx = np.argwhere(instance)
    return [int(v) for v in idx.min(0)] + [int(v) + 1 for v in idx.max(0)]


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    made = {}
    for name, cfg in COHORTS.items():
        out = tmp_path_factory.mktemp(name)
        made[name] = (out, generate_cohort(cfg, out, progress=False))
    return made


@pytest.mark.parametrize("name", list(COHORTS))
def test_instance_masks_boxes_and_box_labels(cohorts: dict, name: str) -> None:
    out, summary = cohorts[name]
    cfg = COHORTS[name]
    lo, hi = cfg.lesions_per_image
    assert summary["lesions_not_placed"] == 0, "the fixture configs leave room for every drawn lesion"
    counts = []
    for r in _records(out):
        mask = _load(out / r["mask"])
        k = len(r["boxes"])
        assert mask.shape == (cfg.size,) * cfg.spatial_dims
        assert set(np.unique(mask).astype(int)) == set(range(k + 1))
        assert r["box_labels"] == [0] * k
        assert r["label"] == int(k >= 1)
        if r["label"]:
            assert lo <= k <= hi
            counts.append(k)
        for instance, box in enumerate(r["boxes"], start=1):
            assert box == _hand_box(mask == instance)
    assert len(set(counts)) >= 2 or lo == hi, "the fixture configs draw more than one count"
    assert sum(summary["lesion_count_histogram"].values()) == cfg.n
    assert summary["lesion_count_histogram"].get("0", 0) == cfg.n - len(counts)


@pytest.mark.parametrize("name", list(COHORTS))
def test_lesions_csv_agrees_with_masks_and_factors(cohorts: dict, name: str) -> None:
    out, _ = cohorts[name]
    cfg = COHORTS[name]
    nd = cfg.spatial_dims
    axes = "xyz"[:nd]
    size_key = "area_px" if nd == 2 else "volume_vox"
    rows = _csv_rows(out / "lesions.csv")
    factors = {row["id"]: row for row in _csv_rows(out / "factors.csv")}
    by_id: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_id.setdefault(row["id"], []).append(row)
    softness = cfg.lesion_edge_softness * cfg.scale
    r_lo, r_hi = (max(1.0, v * cfg.scale) for v in cfg.lesion_radius_range)
    for r in _records(out):
        mask = _load(out / r["mask"])
        lesions = by_id.get(r["id"], [])
        assert [int(row["instance"]) for row in lesions] == list(range(1, len(r["boxes"]) + 1))
        assert int(factors[r["id"]]["lesion_count"]) == len(lesions)
        for row, box in zip(lesions, r["boxes"], strict=True):
            instance = mask == int(row["instance"])
            assert int(row[size_key]) == int(instance.sum())
            assert [int(row[f"box_{a}0"]) for a in axes] + [int(row[f"box_{a}1"]) for a in axes] == box
            centre = np.array([float(row[a]) for a in axes])
            assert np.all(centre >= np.array(box[:nd]) - 0.5) and np.all(centre <= np.array(box[nd:]) - 0.5)
            assert r_lo - 1e-4 <= float(row["radius"]) <= r_hi + 1e-4
            assert (
                cfg.lesion_contrast_range[0] - 1e-6
                <= float(row["contrast"])
                <= cfg.lesion_contrast_range[1] + 1e-6
            )
        for a, b in combinations(lesions, 2):  # no overlap: centres further apart than r1 + r2 + softness + 1
            distance = math.dist([float(a[x]) for x in axes], [float(b[x]) for x in axes])
            assert distance > float(a["radius"]) + float(b["radius"]) + softness + 1.0 - 1e-3
        if lesions:  # the single-lesion columns of factors.csv describe instance 1
            first, row = lesions[0], factors[r["id"]]
            assert [row[f"lesion_{a}"] for a in axes] == [first[a] for a in axes]
            assert row["lesion_radius"] == first["radius"] and row["lesion_contrast"] == first["contrast"]
            assert row[f"lesion_{size_key}"] == first[size_key]
        else:
            assert math.isnan(float(factors[r["id"]]["lesion_radius"]))


@pytest.mark.parametrize("name", ["2d-png", "3d-dicom"])
def test_same_seed_gives_identical_bytes(cohorts: dict, name: str, tmp_path: Path) -> None:
    out, _ = cohorts[name]
    generate_cohort(COHORTS[name], tmp_path, progress=False)
    first, second = _tree_digest(out), _tree_digest(tmp_path)
    assert first == second and "lesions.csv" in first


def test_default_is_the_single_lesion_cohort(tmp_path: Path) -> None:
    """(1, 1) written out equals the field omitted; a multi-lesion cohort's first lesion is the default's lesion."""
    base = {"kind": "brain2d", "n": 6, "seed": 9, "size": 32, "lesion_prevalence": 0.8}
    generate_cohort(PhantomConfig(**base), tmp_path / "omitted", progress=False)
    generate_cohort(PhantomConfig(**base, lesions_per_image=(1, 1)), tmp_path / "explicit", progress=False)
    assert _tree_digest(tmp_path / "omitted") == _tree_digest(tmp_path / "explicit")
    records = _records(tmp_path / "omitted")
    assert any(r["label"] for r in records)
    for r in records:
        mask = _load(tmp_path / "omitted" / r["mask"])
        assert set(np.unique(mask).astype(int)) <= {0, 1} and len(r["boxes"]) == r["label"]
    generate_cohort(PhantomConfig(**base, lesions_per_image=(2, 3)), tmp_path / "multi", progress=False)
    single = {row["id"]: row for row in _csv_rows(tmp_path / "omitted" / "lesions.csv")}
    multi = [row for row in _csv_rows(tmp_path / "multi" / "lesions.csv") if row["instance"] == "1"]
    assert len(multi) == len(single) >= 1
    for row in multi:
        assert (row["x"], row["y"], row["radius"], row["contrast"]) == tuple(
            single[row["id"]][k] for k in ("x", "y", "radius", "contrast")
        )


def test_crowded_images_hold_fewer_lesions_and_say_so(tmp_path: Path) -> None:
    cfg = PhantomConfig(
        kind="brain2d",
        n=2,
        seed=0,
        size=32,
        lesion_prevalence=1.0,
        lesions_per_image=(40, 40),
        lesion_radius_range=(6.0, 8.0),
    )
    summary = generate_cohort(cfg, tmp_path, progress=False)
    counts = {r["id"]: len(r["boxes"]) for r in _records(tmp_path)}
    assert all(1 <= k < 40 for k in counts.values())
    assert summary["lesions_not_placed"] == sum(40 - k for k in counts.values())
    factors = {row["id"]: int(row["lesion_count"]) for row in _csv_rows(tmp_path / "factors.csv")}
    assert factors == counts


def test_monai_detection_transforms_read_a_record(cohorts: dict) -> None:
    """MONAI's box transforms take ``boxes``/``box_labels`` as they are; its own mask-to-box gives them back."""
    import torch
    from monai.apps.detection.transforms.box_ops import convert_mask_to_box
    from monai.apps.detection.transforms.dictionary import BoxToMaskd, ConvertBoxToStandardModed, MaskToBoxd
    from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged

    for name in ("2d-png", "3d-nifti"):
        out, _ = cohorts[name]
        record = max(_records(out), key=lambda r: len(r["boxes"]))
        assert len(record["boxes"]) >= 2
        data = {k: (str(out / record[k]) if k in ("image", "mask") else record[k]) for k in record}
        load = Compose(
            [
                LoadImaged(keys=["image", "mask"], image_only=True),
                EnsureChannelFirstd(keys=["image", "mask"]),
                EnsureTyped(keys="boxes", dtype=torch.float32),  # as MONAI's detection tutorials do
                EnsureTyped(keys="box_labels", dtype=torch.long),
                ConvertBoxToStandardModed(
                    box_keys="boxes", mode="xyxy" if name.startswith("2d") else "xyzxyz"
                ),
                BoxToMaskd(
                    box_keys="boxes",
                    label_keys="box_labels",
                    box_mask_keys="box_mask",
                    box_ref_image_keys="image",
                    min_fg_label=0,
                ),
            ]
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = load(data)
        mask = np.asarray(loaded["mask"])[0]
        box_mask = np.asarray(loaded["box_mask"])
        assert box_mask.shape == (len(record["boxes"]), *mask.shape)
        # MONAI's reference: each instance of the mask as its own channel (background -1, lesion 0)
        instances = np.stack([np.where(mask == i, 0, -1) for i in range(1, len(record["boxes"]) + 1)])
        expected, _ = convert_mask_to_box(instances.astype(np.int16), bg_label=-1)
        np.testing.assert_array_equal(np.asarray(loaded["boxes"]), expected)
        # each channel's rectangle is the tight box of its instance; BoxToMaskd shifts the
        # background to 0, so the lesion class 0 shows as 1
        for c in range(box_mask.shape[0]):
            assert np.array_equal(box_mask[c] == 1, _box_region(expected[c], mask.shape))
            assert np.all(box_mask[c][mask == c + 1] == 1) and set(np.unique(box_mask[c])) == {0, 1}
        back = MaskToBoxd(
            box_mask_keys="box_mask", box_keys="boxes", label_keys="box_labels", min_fg_label=0
        )(loaded)
        np.testing.assert_array_equal(np.asarray(back["boxes"]), np.asarray(record["boxes"]))
        assert np.asarray(back["box_labels"]).tolist() == record["box_labels"]


def _box_region(box: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    nd = len(shape)
    region = np.zeros(shape, bool)
    region[tuple(slice(int(box[d]), int(box[d + nd])) for d in range(nd))] = True
    return region


def test_cli_lesions_per_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipelines.cli import main

    out = tmp_path / "p"
    common = ["phantom", "--n", "3", "--size", "32", "--seed", "1", "--no-progress", "--out", str(out)]
    assert main([*common, "--lesions-per-image", "2", "3", "--lesion-radius", "1", "6"]) == 0
    cfg = PhantomConfig.from_dict(json.loads((out / "phantom_config.json").read_text()))
    assert cfg.lesions_per_image == (2, 3) and cfg.lesion_radius_range == (1.0, 6.0)
    assert main([*common, "--lesions-per-image", "4"]) == 0
    cfg = PhantomConfig.from_dict(json.loads((out / "phantom_config.json").read_text()))
    assert cfg.lesions_per_image == (1, 4)
    capsys.readouterr()
    assert main([*common, "--kind", "dce2d", "--lesions-per-image", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "medglass phantom: error: --lesions-per-image: only for --kind brain2d or brain3d, got --kind dce2d"
    )
    assert main([*common, "--lesions-per-image", "1", "2", "3"]) == 2
    assert "--lesions-per-image takes N (1 to N lesions) or MIN MAX" in capsys.readouterr().err
    assert main([*common, "--lesions-per-image", "0"]) == 2
    assert "lesions_per_image must be a pair (min, max)" in capsys.readouterr().err
