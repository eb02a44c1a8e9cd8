"""The out-of-distribution maths: thresholds at the training quantile, flagging, JSON round trip, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf

from evaluation.out_of_distribution import (
    VARIANCE_FLOOR,
    OodReference,
    describe,
    fit_reference,
    score,
    unexplained_variance,
)


@pytest.fixture()
def training() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random(400) * 0.01, rng.normal(size=(400, 3)), 0.05 + rng.random(400) * 0.1


def test_thresholds_sit_at_the_training_quantile(training) -> None:
    errors, mus, variances = training
    ref = fit_reference(errors, mus, variances, quantile=0.99)
    # expected values from numpy's quantile and scikit-learn's own (squared) Mahalanobis distance
    distances = np.sqrt(LedoitWolf().fit(mus).mahalanobis(mus))
    assert ref.recon_threshold == pytest.approx(np.quantile(errors, 0.99))
    assert ref.unexplained_threshold == pytest.approx(np.quantile(errors / variances, 0.99))
    assert ref.latent_threshold == pytest.approx(np.quantile(distances, 0.99))
    assert ref.n_images == 400 and ref.quantile == 0.99
    flags = [score(ref, e, m, v)["flagged"] for e, m, v in zip(errors, mus, variances, strict=True)]
    assert 0.01 <= np.mean(flags) <= 0.03  # about 1 % of the training images above each of three thresholds
    result = score(ref, errors[7], mus[7], variances[7])
    assert result["latent_distance"] == pytest.approx(distances[7])


def test_any_score_above_its_threshold_flags(training) -> None:
    errors, mus, variances = training
    ref = fit_reference(errors, mus, variances)
    inside = score(ref, 0.001, np.zeros(3), 0.1)
    assert not inside["flagged"]
    # each score alone above its threshold
    assert score(ref, ref.recon_threshold * 1.01, np.zeros(3), 1.0)["flagged"]
    assert score(ref, 0.001, np.zeros(3), 0.001 / (ref.unexplained_threshold * 1.01))["flagged"]
    far = score(ref, 0.001, np.full(3, 10.0), 0.1)
    assert far["flagged"] and far["latent_distance"] > far["latent_threshold"]
    # on the threshold is not above it
    assert not score(ref, ref.recon_threshold, np.zeros(3), 1.0)["flagged"]
    # an infinite code is infinitely far (scored, not an error)
    assert score(ref, 0.001, np.array([np.inf, 0.0, 0.0]), 0.1)["latent_distance"] == np.inf


def test_unexplained_variance_catches_a_dark_image_the_plain_error_misses(training) -> None:
    errors, mus, variances = training
    ref = fit_reference(errors, mus, variances)
    # a nearly black image (std 0.01) reconstructed with a small error: below the plain-error
    # threshold, but the error is 0.0005 / max(1e-4, 1e-3) = 0.5 of the image's (floored) variance
    dark = score(ref, 0.0005, np.zeros(3), 1e-4)
    assert dark["recon_error"] < dark["recon_threshold"]
    assert dark["unexplained_variance"] == pytest.approx(0.0005 / VARIANCE_FLOOR)
    assert dark["flagged"]
    assert unexplained_variance(np.array([0.01, 0.002]), np.array([0.1, 0.0])) == pytest.approx([0.1, 2.0])


def test_json_round_trip_and_bad_json(training) -> None:
    ref = fit_reference(*training)
    data = json.loads(json.dumps(ref.to_json()))
    again = OodReference.from_json(data)
    mus = training[1]
    assert score(again, 0.005, mus[0], 0.1) == score(ref, 0.005, mus[0], 0.1)
    with pytest.raises(ValueError, match="no 'latent_threshold'"):
        OodReference.from_json({k: v for k, v in data.items() if k != "latent_threshold"})
    with pytest.raises(ValueError, match="format 1, expected 2"):
        OodReference.from_json(data | {"format": 1})
    with pytest.raises(ValueError, match=r"precision \(2, 2\) does not fit mean \(3,\)"):
        OodReference.from_json(data | {"precision": [[1.0, 0.0], [0.0, 1.0]]})
    with pytest.raises(ValueError, match="data must be a dict"):
        OodReference.from_json([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n": 5}, "at least 10 training images"),
        ({"mus": np.zeros((400, 3, 1))}, r"mus must be \(n, latent_dim\)"),
        ({"variances": np.ones(399)}, "image_variances must hold one value per recon error"),
        ({"nan": "errors"}, "recon_errors must be finite"),
        ({"nan": "mus"}, "mus must be finite"),
        ({"negative": True}, "must be non-negative"),
        ({"quantile": 1.0}, r"quantile must be in \(0.5, 1\)"),
        ({"quantile": 0.5}, r"quantile must be in \(0.5, 1\)"),
    ],
)
def test_fit_reference_rejects_bad_input(training, change: dict, message: str) -> None:
    errors, mus, variances = (a.copy() for a in training)
    n = change.get("n", 400)
    errors, mus, variances = errors[:n], change.get("mus", mus[:n]), change.get("variances", variances[:n])
    if change.get("nan") == "errors":
        errors[3] = np.nan
    if change.get("nan") == "mus":
        mus[3, 1] = np.inf
    if change.get("negative"):
        variances[0] = -1.0
    with pytest.raises(ValueError, match=message):
        fit_reference(errors, mus, variances, quantile=change.get("quantile", 0.995))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0.0, np.zeros(4), 0.1), "mu: expected 3 values, got 4"),
        ((0.0, np.array([np.nan, 0.0, 0.0]), 0.1), "mu must not contain NaN"),
        ((float("nan"), np.zeros(3), 0.1), "recon_error must be a non-negative number"),
        ((0.0, np.zeros(3), -0.1), "image_variance must be a non-negative number"),
    ],
)
def test_score_rejects_bad_input(training, args: tuple, message: str) -> None:
    ref = fit_reference(*training)
    with pytest.raises(ValueError, match=message):
        score(ref, *args)


def test_describe_names_the_scores_above_their_thresholds(training) -> None:
    ref = fit_reference(*training)
    far = score(ref, 0.001, np.full(3, 10.0), 0.1)
    sentence = describe(far, "CT_small.dcm")
    assert sentence.startswith("CT_small.dcm is unlike the model's training images: latent distance ")
    assert (
        f"above threshold {ref.latent_threshold:.3g}" in sentence and "reconstruction error" not in sentence
    )
    inside = describe(score(ref, 0.001, np.zeros(3), 0.1), "p001.png")
    assert inside.startswith("p001.png is within the range of the model's training images")
    assert "reconstruction error 0.001" in inside
