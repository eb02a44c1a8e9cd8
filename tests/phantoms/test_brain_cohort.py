"""Tests for phantoms/brain_cohort.py: files, masks, boxes, factors, determinism, marker and anatomy effects."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from phantoms import PhantomConfig, generate_cohort

COHORTS = {
    "2d-png": PhantomConfig(kind="brain2d", n=12, seed=3, image_format="png"),
    "2d-nifti": PhantomConfig(kind="brain2d", n=12, seed=3, image_format="nifti"),
    "2d-dicom": PhantomConfig(kind="brain2d", n=12, seed=3, image_format="dicom"),
    "3d-nifti": PhantomConfig(kind="brain3d", n=6, seed=3, size=32, image_format="nifti"),
    "3d-dicom": PhantomConfig(kind="brain3d", n=6, seed=3, size=32, image_format="dicom"),
}
SPLIT_NAMES = ("training", "validation", "test")


def _load(path: Path) -> np.ndarray:
    from monai.transforms import LoadImage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(LoadImage(image_only=True)(str(path)))


def _records(datalist: dict) -> list[tuple[str, dict]]:
    return [(split, r) for split in SPLIT_NAMES for r in datalist[split]]


def _factors(out: Path) -> dict[str, dict[str, str]]:
    with (out / "factors.csv").open() as fh:
        return {row["id"]: row for row in csv.DictReader(fh)}


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    made = {}
    for name, cfg in COHORTS.items():
        out = tmp_path_factory.mktemp(name)
        made[name] = (out, generate_cohort(cfg, out, progress=False))
    return made


@pytest.mark.parametrize("name", list(COHORTS))
def test_layout_and_datalist(cohorts: dict, name: str) -> None:
    out, summary = cohorts[name]
    cfg = COHORTS[name]
    datalist = json.loads((out / "datalist.json").read_text())
    assert set(SPLIT_NAMES) <= set(datalist) and datalist["description"]
    assert PhantomConfig.from_dict(datalist["phantom_config"]) == cfg
    assert PhantomConfig.from_dict(json.loads((out / "phantom_config.json").read_text())) == cfg
    records = _records(datalist)
    assert len(records) == cfg.n
    assert sorted(r["id"] for _, r in records) == [f"p{i:05d}" for i in range(cfg.n)]
    assert {s: len(datalist[s]) for s in SPLIT_NAMES} == summary["counts"]
    labels = [r["label"] for _, r in records]
    assert set(labels) == {0, 1}, "the fixture configs are chosen to hold both classes"
    for _, r in records:
        image = out / r["image"]
        if cfg.kind == "brain3d" and cfg.image_format == "dicom":
            assert image.is_dir() and len(list(image.glob("*.dcm"))) == cfg.size
        else:
            assert image.is_file()
        assert (out / r["mask"]).is_file()
        suffix = {"png": ".png", "nifti": ".nii.gz", "dicom": ".dcm" if cfg.kind == "brain2d" else ""}
        assert r["image"].endswith(suffix[cfg.image_format])
        two_d_png_mask = cfg.kind == "brain2d" and cfg.image_format in ("png", "dicom")
        assert r["mask"].endswith(".png" if two_d_png_mask else ".nii.gz")
        attrs = r["attributes"]
        assert attrs["sex"] in ("F", "M") and attrs["site"] in ("A", "B", "C")
        assert attrs["marker"] in ("present", "absent") and attrs["random_group"] in ("g0", "g1")
        assert isinstance(r["label"], int) and r["label"] in (0, 1)


@pytest.mark.parametrize("name", list(COHORTS))
def test_masks_boxes_and_lesion_sizes(cohorts: dict, name: str) -> None:
    out, _ = cohorts[name]
    cfg = COHORTS[name]
    nd = cfg.spatial_dims
    factors = _factors(out)
    for _, r in _records(json.loads((out / "datalist.json").read_text())):
        image, mask = _load(out / r["image"]), _load(out / r["mask"])
        assert image.shape == mask.shape == (cfg.size,) * nd
        assert 0.0 <= image.min() and image.max() <= (65535.0 if cfg.image_format == "png" else 1.0)
        assert set(np.unique(mask)) <= {0, 1}
        row = factors[r["id"]]
        size_key = "lesion_area_px" if nd == 2 else "lesion_volume_vox"
        assert int(row[size_key]) == int(mask.sum())
        if r["label"] == 0:
            assert mask.sum() == 0 and r["boxes"] == []
            assert math.isnan(float(row["lesion_radius"])) and math.isnan(float(row["lesion_x"]))
            continue
        (box,) = r["boxes"]
        idx = np.argwhere(mask > 0)
        lo, hi = np.array(box[:nd]), np.array(box[nd:])
        assert np.all(idx >= lo) and np.all(idx < hi)
        np.testing.assert_array_equal(idx.min(0), lo)  # touches every side (upper bound exclusive)
        np.testing.assert_array_equal(idx.max(0) + 1, hi)
        centre = np.array([float(row[f"lesion_{a}"]) for a in "xyz"[:nd]])
        assert np.all(centre >= lo - 0.5) and np.all(centre <= hi - 0.5)
        r_px = float(row["lesion_radius"])
        h = math.sqrt(nd) / 2  # pixel half-diagonal: discretisation bound
        ball = (lambda v: math.pi * v * v) if nd == 2 else (lambda v: 4 / 3 * math.pi * v**3)
        assert ball(max(r_px - h, 0.0)) <= mask.sum() <= ball(r_px + h)
        lo_r, hi_r = cfg.lesion_radius_range
        assert max(1.0, lo_r * cfg.scale) <= r_px <= max(1.0, hi_r * cfg.scale)


@pytest.mark.parametrize("name", list(COHORTS))
def test_factors_match_datalist(cohorts: dict, name: str) -> None:
    out, _ = cohorts[name]
    factors = _factors(out)
    records = _records(json.loads((out / "datalist.json").read_text()))
    assert len(factors) == len(records)
    for split, r in records:
        row, attrs = factors[r["id"]], r["attributes"]
        assert row["split"] == split and int(row["label"]) == r["label"]
        for key in ("sex", "age_band", "site", "scanner", "random_group"):
            assert row[key] == attrs[key]
        assert int(row["marker"]) == (attrs["marker"] == "present")
        age = float(row["age"])
        assert 20 <= age < 90 and row["age_band"] == f"{int(age // 10) * 10}-{int(age // 10) * 10 + 9}"
        for key in ("head_scale", "ventricle_scale", "bias_field_strength", "noise_sigma", "contrast_gamma"):
            assert math.isfinite(float(row[key]))
    scanners = {(row["site"], row["scanner"]) for row in factors.values()}
    assert len({s for s, _ in scanners}) == len(scanners), "one scanner per site"


@pytest.mark.parametrize("name", ["2d-png", "2d-nifti", "2d-dicom", "3d-dicom"])
def test_same_seed_gives_identical_bytes(cohorts: dict, name: str, tmp_path: Path) -> None:
    out, _ = cohorts[name]
    generate_cohort(COHORTS[name], tmp_path, progress=False)
    first, second = _tree_digest(out), _tree_digest(tmp_path)
    assert first == second and len(first) > 2 * COHORTS[name].n


def test_nifti_gzip_has_no_timestamp(cohorts: dict) -> None:
    out, _ = cohorts["3d-nifti"]
    for path in (out / "images").glob("*.nii.gz"):
        head = path.read_bytes()[:8]
        assert head[:2] == b"\x1f\x8b" and head[4:8] == b"\x00\x00\x00\x00"  # gzip MTIME field


def test_images_do_not_depend_on_n_or_other_seeds(cohorts: dict, tmp_path: Path) -> None:
    out, _ = cohorts["2d-png"]
    small = tmp_path / "small"
    generate_cohort(PhantomConfig(kind="brain2d", n=4, seed=3), small, progress=False)
    for i in range(4):
        assert (small / f"images/p{i:05d}.png").read_bytes() == (out / f"images/p{i:05d}.png").read_bytes()
    other = tmp_path / "other"
    generate_cohort(PhantomConfig(kind="brain2d", n=4, seed=4), other, progress=False)
    for i in range(4):
        a, b = _load(other / f"images/p{i:05d}.png"), _load(out / f"images/p{i:05d}.png")
        assert np.abs(a - b).mean() > 100.0  # different subjects, not just different noise


@pytest.mark.parametrize("r", [0.1, 0.5, 0.9])
def test_marker_agreement_matches_correlation(r: float, tmp_path: Path) -> None:
    n = 400
    cfg = PhantomConfig(kind="brain2d", n=n, seed=11, marker_correlation=r, split_fractions=(1.0, 0.0, 0.0))
    generate_cohort(cfg, tmp_path, progress=False)
    agree = 0
    for rec in json.loads((tmp_path / "datalist.json").read_text())["training"]:
        corner = _load(tmp_path / rec["image"])[:8, :8] / 65535.0  # top-left corner, outside the head
        present = corner.max() > 0.9
        assert present == (rec["attributes"]["marker"] == "present")
        agree += present == bool(rec["label"])
    se = math.sqrt(r * (1 - r) / n)
    assert abs(agree / n - r) < 4 * se


@pytest.fixture(scope="module")
def clean_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[np.ndarray], list[dict[str, str]]]:
    """Healthy 2D subjects without noise, bias, contrast changes or slice jitter: anatomy alone varies."""
    cfg = PhantomConfig(
        n=60,
        slice_offset_max=0.0,  # the slice level is the largest nuisance for a pixel count
        seed=5,
        lesion_prevalence=0.0,
        marker_correlation=1.0,  # label 0 everywhere -> no marker
        site_noise_range=(0.0, 0.0),
        site_bias_strength_range=(0.0, 0.0),
        site_gamma_range=(1.0, 1.0),
        site_intensity_scale_range=(1.0, 1.0),
        site_param_jitter=0.0,
    )
    out = tmp_path_factory.mktemp("clean")
    generate_cohort(cfg, out, progress=False)
    rows = list(_factors(out).values())
    images = [_load(out / f"images/{row['id']}.png") / 65535.0 for row in rows]
    return images, rows


def test_sex_changes_head_size(clean_cohort: tuple) -> None:
    images, rows = clean_cohort
    area = {"F": [], "M": []}
    for image, row in zip(images, rows, strict=True):
        area[row["sex"]].append(int((image > 0.05).sum()))
    assert len(area["F"]) >= 10 and len(area["M"]) >= 10
    # the expected ratio is about 0.93 ** 2 = 0.86; require a clear gap
    assert np.mean(area["F"]) < 0.95 * np.mean(area["M"])


def test_age_enlarges_ventricles(clean_cohort: tuple) -> None:
    images, rows = clean_cohort
    ages = np.array([float(row["age"]) for row in rows])
    # dark (CSF) pixels inside the head's central region, where the lateral ventricles sit
    dark = np.array([int((image[20:44, 18:46] < 0.3).sum()) for image in images])
    assert np.corrcoef(ages, dark)[0, 1] > 0.5
    assert dark[ages >= 65].mean() > 1.2 * dark[ages < 35].mean()


@pytest.mark.parametrize("name", ["2d-png", "3d-nifti"])
def test_marker_sits_outside_the_head(name: str) -> None:
    from phantoms import subject_grid
    from phantoms.site_effects import marker_region

    cfg = COHORTS[name]
    grid = subject_grid(cfg)
    region = marker_region(cfg)
    template = grid.t1[..., int(grid.slice_z)] if cfg.kind == "brain2d" else grid.t1
    assert template[region].size >= 1 and template[region].max() == 0.0
    # room for head scale, shift, rotation and deformation: the token is > 15% of the edge from the head
    mask = np.zeros(template.shape, bool)
    mask[region] = True
    token = np.argwhere(mask)
    head = np.argwhere(template > 0.01)
    gap = np.sqrt(((head[:, None, :] - token[None, :, :]) ** 2).sum(-1)).min()
    assert gap > 0.15 * cfg.size


def test_out_dir_must_be_a_folder(tmp_path: Path) -> None:
    file = tmp_path / "taken"
    file.write_text("x")
    with pytest.raises(NotADirectoryError, match="taken: out_dir exists and is not a folder"):
        generate_cohort(PhantomConfig(n=1), file, progress=False)
    with pytest.raises(TypeError, match="config must be a PhantomConfig"):
        generate_cohort({"n": 1}, tmp_path / "x", progress=False)  # type: ignore[arg-type]


def test_references_are_clean_images_and_body_masks(tmp_path: Path) -> None:
    """``references=True`` adds clean images (no noise, no bias field) and body masks without changing the images."""
    from PIL import Image

    cfg = PhantomConfig(kind="brain2d", n=12, seed=5, size=32, marker_correlation=0.5)
    plain, refs = tmp_path / "plain", tmp_path / "refs"
    generate_cohort(cfg, plain, progress=False)
    generate_cohort(cfg, refs, progress=False, references=True)
    records = [
        r
        for section in json.loads((refs / "datalist.json").read_text()).values()
        if isinstance(section, list)
        for r in section
    ]
    assert records and all("clean" in r and "body" in r for r in records)
    factors = {row["id"]: row for row in csv.DictReader((refs / "factors.csv").open())}
    for r in records:
        assert (refs / r["image"]).read_bytes() == (plain / r["image"]).read_bytes()
        image = np.asarray(Image.open(refs / r["image"]), dtype=np.float64)
        clean = np.asarray(Image.open(refs / r["clean"]), dtype=np.float64)
        body = np.asarray(Image.open(refs / r["body"])) > 0
        lesion = np.asarray(Image.open(refs / r["mask"])) > 0
        assert body.mean() > 0.2 and body[0, 0] == 0  # a head in the middle, background at the corner
        assert not (lesion & ~body).any()
        residual = (image - clean)[body] / np.iinfo(np.uint16).max
        noise = float(factors[r["id"]]["noise_sigma"])
        # the residual is the noise plus the bias field's multiplicative change: noisier than the clean image
        assert residual.std() > 0.5 * noise
        # the clean image is smooth: its pixel-to-pixel differences are far smaller than the noisy image's
        assert (
            np.abs(np.diff(clean, axis=0))[body[1:]].mean() < np.abs(np.diff(image, axis=0))[body[1:]].mean()
        )
