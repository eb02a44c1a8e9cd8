"""Tests of pipelines/latent_codes.py: rows aligned with records, same numbers as the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.datalists import load_datalist
from pipelines.latent_codes import encode_datalist, encode_records, load_model_input
from pipelines.trained_model import load_trained_model


def test_encode_datalist_matches_the_network_image_by_image(untrained_run: Path, small_cohort: Path) -> None:
    trained = load_trained_model(untrained_run)
    records = load_datalist(small_cohort, "training")
    codes = encode_datalist(trained, small_cohort, "training", batch_size=7, progress=False)
    assert len(codes) == len(records)
    assert codes.mu.shape == (len(records), 8) and codes.logits.shape == (len(records), 2)
    assert codes.ids == [r["id"] for r in records]
    assert codes.labels.tolist() == [r["label"] for r in records]
    assert codes.attribute("site") == [r["attributes"]["site"] for r in records]
    np.testing.assert_allclose(codes.probs.sum(axis=1), 1.0, rtol=1e-9)
    for i in (0, len(records) - 1):  # one image at a time gives the same row
        x, _ = load_model_input(
            records[i]["image"], trained.spatial_size, intensity_range=trained.intensity_range
        )
        with torch.no_grad():
            out = trained.network(x)
        np.testing.assert_allclose(codes.mu[i], out["mu"][0].numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(codes.logits[i], out["logits"][0].numpy(), rtol=1e-4, atol=1e-5)
        assert codes.scores[i] == pytest.approx(torch.softmax(out["logits"], 1)[0, 1].item(), abs=1e-5)


def test_unlabelled_records_get_minus_one_and_empty_records_are_refused(
    untrained_run: Path, small_cohort: Path
) -> None:
    trained = load_trained_model(untrained_run)
    records = [{"image": r["image"]} for r in load_datalist(small_cohort, "validation")[:3]]
    codes = encode_records(trained, records, progress=False)
    assert codes.labels.tolist() == [-1, -1, -1]
    assert codes.attributes == [{}, {}, {}]
    assert codes.ids == [Path(r["image"]).name for r in records]
    with pytest.raises(ValueError, match="at least one record"):
        encode_records(trained, [], progress=False)


def test_mask_follows_the_image_preprocessing(small_cohort: Path) -> None:
    record = next(r for r in load_datalist(small_cohort, "training") if r["label"] == 1)
    x, mask = load_model_input(record["image"], (64, 64), mask=record["mask"])
    assert x.shape == (1, 1, 64, 64)
    assert mask.dtype == torch.bool and mask.shape == (64, 64)
    # the 32×32 mask upsampled ×2 (nearest) has four times the lesion pixels
    from PIL import Image

    original = np.asarray(Image.open(record["mask"])) > 0
    assert int(mask.sum()) == 4 * int(original.sum())
