"""Tests for phantoms/contrast_cohort.py and its contrast_* helpers: ground-truth maps, files, determinism."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest

from phantoms import (
    ContrastPhantomConfig,
    enhancement_curve,
    generate_contrast_cohort,
    render_contrast_subject,
)
from phantoms.contrast_lesions import t2_like

SPLIT_NAMES = ("training", "validation", "test")
DCE2D = ContrastPhantomConfig(kind="dce2d", n=12, seed=5, size=32, time_points=(1.0, 2.0, 5.0))
DCE2D_MANY = ContrastPhantomConfig(
    kind="dce2d", n=12, seed=1, size=48, time_points=(1.0, 2.0, 5.0), lesions_per_image=(3, 5)
)
T2 = ContrastPhantomConfig(kind="dce2d_t2", n=12, seed=5, size=32)
DCE3D = ContrastPhantomConfig(
    kind="dce3d",
    n=4,
    seed=2,
    size=32,
    time_points=(1.0, 4.0),
    lesions_per_image=(1, 3),
    enhancing_fraction=0.5,
)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read(path: Path) -> np.ndarray:
    """``[x, y(, z)]`` array of a PNG (transposed back, as MONAI's PILReader does) or NIfTI file."""
    if path.suffix == ".png":
        from PIL import Image

        return np.asarray(Image.open(path)).T
    import nibabel as nib

    return np.asarray(nib.load(str(path)).dataobj)


def _records(out: Path) -> list[dict]:
    data = json.loads((out / "datalist.json").read_text())
    return [r for split in SPLIT_NAMES for r in data[split]]


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("contrast")
    out = {}
    for name, cfg in {"dce2d": DCE2D, "t2": T2, "dce3d": DCE3D}.items():
        out[name] = (root / name, generate_contrast_cohort(cfg, root / name, progress=False))
    return out


# --- kinetics -------------------------------------------------------------------------------


def test_curves_hand_values() -> None:
    assert float(enhancement_curve("persistent", 3.0, 1.0)) == pytest.approx(1.0 - math.exp(-1.0))
    assert float(enhancement_curve("plateau", 0.75, 0.4)) == pytest.approx(0.4 * 0.75)  # 1 - (1 - 0.5)^2
    assert float(enhancement_curve("washout", 9.5, 1.0)) == pytest.approx(math.exp(-1.0))
    assert float(enhancement_curve("vascular", 20.5, 1.0)) == pytest.approx(math.exp(-1.0))
    for kind in ("none", "persistent", "plateau", "washout", "vascular"):
        assert float(enhancement_curve(kind, 0.0, 0.3)) == 0.0
    assert np.array_equal(enhancement_curve("none", np.array([0.0, 2.0, 9.0]), 0.3), np.zeros(3))


def test_curve_shapes() -> None:
    t = np.linspace(0.0, 10.0, 201)
    persistent = enhancement_curve("persistent", t, 0.2)
    assert np.all(np.diff(persistent) > 0) and persistent[-1] < 0.2  # rises, never reaches the peak
    for kind in ("plateau", "washout"):
        e = enhancement_curve(kind, t, 0.2)
        before, after = e[t <= 1.5], e[t >= 1.5]
        assert np.all(np.diff(before) > 0) and after[0] == pytest.approx(0.2)  # rises to the peak at 1.5
        if kind == "plateau":
            assert np.all(after == 0.2)  # flat after the peak
        else:
            assert np.all(np.diff(after) < 0) and after[-1] < 0.5 * 0.2  # falls after the peak
    assert enhancement_curve("washout", np.array([[1.0, 2.0]]), 0.1).shape == (1, 2)


@pytest.mark.parametrize(
    "args, message",
    [
        (("fast", 1.0, 0.1), r"kinetics must be one of .*got 'fast'"),
        (("plateau", -1.0, 0.1), r"t must be finite minutes >= 0"),
        (("plateau", np.array([1.0, np.nan]), 0.1), r"t must be finite minutes >= 0"),
        (("plateau", 1.0, -0.1), r"peak must be a finite number >= 0, got -0.1"),
    ],
)
def test_curve_errors(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        enhancement_curve(*args)


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "dce4d"}, r"kind must be one of \('dce2d', 'dce2d_t2', 'dce3d'\), got 'dce4d'"),
        ({"n": 0}, r"n must be an integer >= 1, got 0"),
        ({"size": 8}, r"size must be an integer \[16, 512\], got 8"),
        ({"time_points": ()}, r"time_points must be a non-empty, strictly increasing .*got \(\)"),
        ({"time_points": (2.0, 1.0)}, r"time_points must be .*got \(2.0, 1.0\)"),
        ({"time_points": (0.0,)}, r"time_points must be .*in \(0, 60\]"),
        ({"enhancing_fraction": 1.5}, r"enhancing_fraction must be in \[0.0, 1.0\], got 1.5"),
        (
            {"kinetics_fractions": (0.5, 0.5, 0.5)},
            r"kinetics_fractions must be 3 non-negative numbers summing to 1",
        ),
        ({"lesions_per_image": (3, 1)}, r"lesions_per_image must be a pair of integers .*got \(3, 1\)"),
        ({"lesions_per_image": (0, 2.5)}, r"lesions_per_image must be a pair of integers"),
        ({"noise_sigma": -0.1}, r"noise_sigma must be in \[0.0, 0.5\], got -0.1"),
        (
            {"split_fractions": (0.5, 0.5, 0.5)},
            r"split_fractions must be 3 non-negative numbers summing to 1",
        ),
        ({"peak_enhancement_range": (0.3, 0.1)}, r"peak_enhancement_range must be a pair \(low, high\)"),
        ({"vessel_radius": 0.1}, r"vessel_radius must be in \[0.5, 8.0\], got 0.1"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ContrastPhantomConfig(**kwargs)


def test_config_round_trip_and_brain_config() -> None:
    cfg = ContrastPhantomConfig(kind="dce3d", n=7, size=32, time_points=[1, 3])
    assert cfg.time_points == (1.0, 3.0) and cfg.spatial_dims == 3
    assert ContrastPhantomConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    base = cfg.brain_config()
    assert (base.kind, base.n, base.size, base.seed) == ("brain3d", 7, 32, 0)
    with pytest.raises(ValueError, match=r"unknown ContrastPhantomConfig fields: \['bogus'\]"):
        ContrastPhantomConfig.from_dict({"bogus": 1})


# --- rendering: the ground truth --------------------------------------------------------------


@pytest.mark.parametrize("cfg", [DCE2D_MANY, DCE3D], ids=["2d", "3d"])
def test_maps_are_exact_clean_differences(cfg: ContrastPhantomConfig) -> None:
    seen_enhancing = seen_plain = 0
    for index in range(cfg.n):
        r = render_contrast_subject(cfg, index)
        lesions, vessels = r.lesion_mask > 0, r.vessel_mask > 0
        assert vessels.any()
        assert len(r.maps) == len(r.targets) == len(cfg.time_points)
        for k, t in enumerate(cfg.time_points):
            expected = r.targets_clean[k] - r.pre_clean
            assert r.maps[k].dtype == np.float32 and np.array_equal(r.maps[k], expected)
            assert np.all(r.maps[k][~(lesions | vessels)] == 0.0)
            for j, les in enumerate(r.lesions):
                own = (r.lesion_mask == j + 1) & ~vessels
                if not les.enhancing:
                    seen_plain += 1
                    assert les.kinetics == "none" and np.all(r.maps[k][own] == 0.0)
                    continue
                seen_enhancing += 1
                if not own.any():
                    continue
                value = float(enhancement_curve(les.kinetics, t, les.peak_enhancement))
                top = float(r.maps[k][own].max())
                assert r.maps[k][own].min() >= 0.0 and top <= value + 1e-6
                if les.lesion.radius >= 1.5:  # the pixel nearest the centre lies on the profile's plateau
                    assert top == pytest.approx(value, abs=1e-6)
                else:
                    assert top >= 0.5 * value
        assert r.label == int(any(les.enhancing for les in r.lesions))
    assert seen_enhancing and seen_plain


def test_same_acquisition_for_pre_and_post() -> None:
    cfg = ContrastPhantomConfig(n=3, size=32, seed=4, noise_sigma=0.0, time_points=(1.0, 3.0))
    r = render_contrast_subject(cfg, 2)
    outside = r.maps[0] == 0.0
    for target in r.targets:  # no noise: identical wherever nothing enhanced
        assert np.array_equal(target[outside], r.pre[outside])
    noisy = render_contrast_subject(dataclasses.replace(cfg, noise_sigma=0.02), 2)
    diff = noisy.targets[0][outside] - noisy.pre[outside]
    assert diff.std() == pytest.approx(0.02 * math.sqrt(2), rel=0.3)  # independent noise draws


def test_lesions_do_not_touch_and_vary_in_size() -> None:
    radii = []
    for index in range(DCE2D_MANY.n):
        r = render_contrast_subject(DCE2D_MANY, index)
        assert sorted(np.unique(r.lesion_mask)[1:].tolist()) == list(range(1, len(r.lesions) + 1))
        for a in r.lesions:
            radii.append(a.lesion.radius)
            for b in r.lesions:
                if a is not b:
                    d = math.dist(a.lesion.centre, b.lesion.centre)
                    assert d >= a.lesion.radius + b.lesion.radius
    assert min(radii) < 1.5 and max(radii) > 3.0  # size 48: radii from max(1, 0.75) to 4.5 px


def test_t2_like_contrast() -> None:
    t1 = np.array([0.0, 0.3, 0.75, 1.0], np.float32) * 0.45  # background, CSF, GM, WM at tissue 0.45
    assert t2_like(t1, 0.45) == pytest.approx([0.0, 0.7, 0.45, 0.25], abs=1e-6)
    r = render_contrast_subject(T2, 0)
    assert len(r.targets) == 1 and np.array_equal(r.maps[0], r.targets_clean[0] - r.pre_clean)


def test_render_rejects_bad_index() -> None:
    with pytest.raises(ValueError, match=r"index must be an integer in \[0, 12\), got 12"):
        render_contrast_subject(DCE2D, 12)


# --- files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dce2d", "t2", "dce3d"])
def test_datalist_points_at_files_of_equal_shape(cohorts: dict, name: str) -> None:
    out, summary = cohorts[name]
    cfg = ContrastPhantomConfig.from_dict(json.loads((out / "phantom_config.json").read_text()))
    records = _records(out)
    assert len(records) == cfg.n == sum(summary["counts"].values())
    shape = (cfg.size,) * cfg.spatial_dims
    for rec in records:
        paths = [rec["source"], *rec["targets"], rec["mask"], rec["vessels"], rec["difference"]]
        paths += rec.get("enhancements", [])
        for rel in paths:
            assert not Path(rel).is_absolute() and (out / rel).is_file(), rel
            assert _read(out / rel).shape == shape, rel
        assert rec["target"] == rec["targets"][0]
        assert set(rec["attributes"]) >= {"sex", "site", "age_band", "scanner"}
        if name == "t2":
            assert "enhancement" not in rec and rec["time_points"] == [] and rec["target"].endswith("_t2.png")
        else:
            assert rec["enhancement"] == rec["difference"] == rec["enhancements"][0]
            assert len(rec["targets"]) == len(rec["enhancements"]) == len(cfg.time_points)
        # the saved map is the rendered ground truth, bit for bit
        r = render_contrast_subject(cfg, int(rec["id"][1:]))
        assert np.array_equal(_read(out / rec["difference"]), r.maps[0])
        assert np.array_equal(_read(out / rec["mask"]), r.lesion_mask)
        assert rec["label"] == r.label


@pytest.mark.parametrize("name", ["dce2d", "dce3d"])
def test_factors_one_row_per_lesion(cohorts: dict, name: str) -> None:
    out, summary = cohorts[name]
    with (out / "factors.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == summary["lesions"]["total"]
    size_key = "area_px" if name == "dce2d" else "volume_vox"
    by_id = {r["id"]: r for r in _records(out)}
    for row in rows:
        mask = _read(out / by_id[row["id"]]["mask"])
        assert int(row[size_key]) == int((mask == int(row["lesion_id"])).sum()) > 0
        assert row["site"] == by_id[row["id"]]["attributes"]["site"]
        assert (row["kinetics"] == "none") == (row["enhancing"] == "0")
        assert (float(row["peak_enhancement"]) == 0.0) == (row["enhancing"] == "0")
    for rec in by_id.values():
        enhancing = [r for r in rows if r["id"] == rec["id"] and r["enhancing"] == "1"]
        assert rec["label"] == int(bool(enhancing))


def test_same_seed_same_bytes_other_seed_differs(cohorts: dict, tmp_path: Path) -> None:
    out, _ = cohorts["dce2d"]
    generate_contrast_cohort(DCE2D, tmp_path / "again", progress=False)
    assert _tree_digest(tmp_path / "again") == _tree_digest(out)
    generate_contrast_cohort(dataclasses.replace(DCE2D, seed=6), tmp_path / "other", progress=False)
    other = _tree_digest(tmp_path / "other")
    assert other.keys() == _tree_digest(out).keys()
    assert other["images/p00000_pre.png"] != _tree_digest(out)["images/p00000_pre.png"]


def test_generate_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cfg must be a ContrastPhantomConfig, got dict"):
        generate_contrast_cohort({}, tmp_path)  # type: ignore[arg-type]
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="out_dir exists and is not a folder"):
        generate_contrast_cohort(DCE2D, tmp_path / "file", progress=False)


def test_cohort_without_lesions(tmp_path: Path) -> None:
    cfg = ContrastPhantomConfig(n=3, size=32, lesions_per_image=(0, 0))
    summary = generate_contrast_cohort(cfg, tmp_path, progress=False)
    assert summary["lesions"]["total"] == 0 and summary["label_counts"] == {"0": 3, "1": 0}
    header = (tmp_path / "factors.csv").read_text().splitlines()
    assert header == [
        "id,lesion_id,split,site,centre_x,centre_y,radius,enhancing,kinetics,peak_enhancement,area_px,t1_contrast,t2_contrast"
    ]
    for rec in _records(tmp_path):  # only the vessels enhance
        enhancement = _read(tmp_path / rec["enhancement"])
        vessels = _read(tmp_path / rec["vessels"]) > 0
        assert np.all(enhancement[~vessels] == 0.0) and enhancement[vessels].max() > 0.1
