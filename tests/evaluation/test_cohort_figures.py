"""The cohort montage is a valid PNG drawn from a real phantom datalist."""

from __future__ import annotations

import pytest
from PIL import Image

from evaluation.cohort_figures import cohort_montage
from phantoms import PhantomConfig, generate_cohort


def test_montage_of_a_small_cohort(tmp_path):
    generate_cohort(PhantomConfig(n=12, seed=3, size=32), tmp_path / "c", progress=False)
    out = cohort_montage(tmp_path / "c" / "datalist.json", tmp_path / "m.png", n=6)
    with Image.open(out) as image:
        image.verify()
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 200
    with pytest.raises(ValueError, match="n must be >= 1"):
        cohort_montage(tmp_path / "c" / "datalist.json", tmp_path / "x.png", n=0)
    with pytest.raises(ValueError, match="section 'nope' is empty"):
        cohort_montage(tmp_path / "c" / "datalist.json", tmp_path / "x.png", section="nope")
