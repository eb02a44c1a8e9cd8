"""LEACE erasure of an attribute from mu, the eraser file, the wrapped classifier and DFR."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from evaluation.concept_erasure import (
    ErasedClassifier,
    LatentEraser,
    dfr_head,
    dfr_scores,
    fit_eraser,
    state_dict_sha256,
)
from evaluation.latent_leakage import probe_auc
from networks.glassbox import GlassBoxNet


def correlated_leaky_latents(n: int = 400, dim: int = 6, categories: int = 2, seed: int = 0):
    """Correlated Gaussian ``mu`` whose mean depends on the attribute along two dims."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, categories, n)
    mixing = rng.normal(size=(dim, dim))
    mu = rng.normal(size=(n, dim)) @ mixing
    mu[:, 1] += 3.0 * groups
    mu[:, 4] -= 2.0 * (groups == 1)
    return mu, groups


@pytest.mark.parametrize("categories", [2, 3])
def test_erasure_removes_linear_information(categories):
    mu, groups = correlated_leaky_latents(categories=categories)
    assert probe_auc(mu, groups).auc > 0.9
    eraser = fit_eraser(mu, groups, attribute="site")
    erased = eraser(torch.as_tensor(mu)).numpy()
    means = np.stack([erased[groups == k].mean(axis=0) for k in range(categories)])
    np.testing.assert_allclose(means, means.mean(axis=0, keepdims=True).repeat(categories, 0), atol=1e-5)
    assert probe_auc(erased, groups).auc <= 0.55
    assert eraser.categories == [str(k) for k in range(categories)] and eraser.n_fit == 400


def test_erasure_along_a_coordinate_axis_leaves_the_other_dims_unchanged():
    # Columns exactly centred, orthogonal and of equal norm (isotropic sample covariance);
    # column 0 is the centred attribute, so the least-squares-minimal edit changes column 0 only.
    # shrinkage=False: concept-erasure 0.2.4's shrinkage divides 0 by 0 for an exactly
    # isotropic covariance and returns noise of order 1e-2, which the real data never hits.
    rng = np.random.default_rng(0)
    n, dim = 200, 5
    groups = np.repeat([0, 1], n // 2)
    q, _ = np.linalg.qr(np.c_[np.ones(n), groups - 0.5, rng.normal(size=(n, dim - 1))])
    mu = q[:, 1:] * np.sqrt(n) + np.arange(1, dim + 1)  # drop the constant column; non-zero mean
    assert abs(np.corrcoef(mu[:, 0], groups)[0, 1]) == pytest.approx(1.0)
    erased = fit_eraser(mu, groups, shrinkage=False)(torch.as_tensor(mu)).numpy()
    np.testing.assert_allclose(erased[:, 1:], mu[:, 1:], atol=1e-8)
    np.testing.assert_allclose(erased[:, 0], 1.0, atol=1e-8)  # flattened to its mean


def test_erasure_of_an_axis_concept_in_noisy_iid_data_mostly_moves_that_axis():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 2, 400)
    mu = rng.normal(size=(400, 5))
    mu[:, 0] += 2.0 * groups
    change = np.abs(fit_eraser(mu, groups)(torch.as_tensor(mu)).numpy() - mu).mean(axis=0)
    assert change[0] > 1.0 and change[1:].max() < 0.1 * change[0]


def test_save_load_round_trip_and_scripting(tmp_path):
    mu, groups = correlated_leaky_latents(categories=3)
    eraser = fit_eraser(mu, np.array(["a", "b", "c"])[groups], attribute="scanner")
    path = eraser.save(tmp_path / "eraser.pt")
    assert path.stat().st_size < 20_000
    loaded = LatentEraser.load(path, latent_dim=6)
    x = torch.randn(7, 6)
    assert torch.equal(loaded(x), eraser(x)) and loaded(x).dtype == torch.float32
    assert loaded.metadata() == eraser.metadata()
    assert (
        loaded.metadata()["categories"] == ["a", "b", "c"] and loaded.metadata()["library_version"] == "0.2.4"
    )
    assert torch.equal(torch.jit.script(loaded)(x), eraser(x))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"missing\.pt: eraser file not found"):
        LatentEraser.load(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a torch file")
    with pytest.raises(ValueError, match=r"corrupt\.pt: not a readable eraser file"):
        LatentEraser.load(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match=r"other\.pt: not a medglass latent eraser file"):
        LatentEraser.load(other)
    saved = fit_eraser(*correlated_leaky_latents()).save(tmp_path / "six.pt")
    with pytest.raises(ValueError, match=r"six\.pt: eraser has latent_dim 6, expected 16"):
        LatentEraser.load(saved, latent_dim=16)


def test_fit_eraser_needs_two_categories():
    with pytest.raises(ValueError, match=r"sex: erasure needs at least two attribute values, got \['F'\]"):
        fit_eraser(np.zeros((4, 2)), ["F", "F", None, "F"], attribute="sex")


def test_erased_classifier_leaves_the_network_untouched():
    torch.manual_seed(0)
    net = GlassBoxNet(img_size=(32, 32), latent_dim=4).eval()
    before = state_dict_sha256(net)
    images = torch.rand(24, 1, 32, 32)
    with torch.no_grad():
        mu = net.encode(images)["mu"]
    groups = (mu[:, 0] > mu[:, 0].median()).long()  # an attribute the latent certainly encodes
    eraser = fit_eraser(mu, groups, attribute="site")
    wrapped = ErasedClassifier(net, eraser)
    with torch.no_grad():
        logits = wrapped(images)
    assert state_dict_sha256(net) == before
    torch.testing.assert_close(logits, net.classify(eraser(mu)))
    assert not torch.allclose(logits, net.classify(mu))
    with pytest.raises(ValueError, match="eraser: latent_dim 4 does not match the network's 8"):
        ErasedClassifier(GlassBoxNet(img_size=(32, 32), latent_dim=8), eraser)


def test_state_dict_hash_sees_a_changed_weight():
    layer = torch.nn.Linear(3, 2)
    digest = state_dict_sha256(layer)
    assert digest == state_dict_sha256(layer) and len(digest) == 64
    with torch.no_grad():
        layer.weight[0, 0] += 1e-6
    assert state_dict_sha256(layer) != digest


def shortcut_data(n: int, agreement: float, rng: np.random.Generator):
    """Dim 0: a weak real signal; dim 1: the group, equal to the label with probability ``agreement``."""
    labels = rng.integers(0, 2, n)
    groups = np.where(rng.uniform(size=n) < agreement, labels, 1 - labels)
    mu = np.c_[labels + rng.normal(0, 0.7, n), groups + rng.normal(0, 0.1, n), rng.normal(size=(n, 2))]
    return mu, labels, groups


def worst_group_accuracy(scores, labels, groups) -> float:
    correct = (scores >= 0.5) == labels
    return min(correct[(labels == y) & (groups == g)].mean() for y in (0, 1) for g in (0, 1))


def test_dfr_beats_plain_logistic_regression_on_the_worst_group():
    rng = np.random.default_rng(0)
    mu_train, y_train, g_train = shortcut_data(1500, 0.9, rng)
    mu_test, y_test, g_test = shortcut_data(1000, 0.1, rng)  # the shortcut is reversed
    plain = LogisticRegression().fit(mu_train, y_train)
    dfr = dfr_head(mu_train, y_train, g_train, seed=0)
    plain_worst = worst_group_accuracy(plain.predict_proba(mu_test)[:, 1], y_test, g_test)
    dfr_worst = worst_group_accuracy(dfr_scores(dfr, mu_test), y_test, g_test)
    assert dfr_worst > plain_worst + 0.2
    assert abs(dfr.coef_[0, 1]) < abs(dfr.coef_[0, 0])  # the balanced head leans on the real signal


def test_dfr_without_balancing_equals_a_standardised_logistic_regression():
    rng = np.random.default_rng(1)
    mu, labels, _ = shortcut_data(300, 0.5, rng)
    mu = mu * [1.0, 5.0, 0.1, 2.0] + 3.0
    reference = make_pipeline(StandardScaler(), LogisticRegression()).fit(mu, labels)
    head = dfr_head(mu, labels, balance=False)
    np.testing.assert_allclose(dfr_scores(head, mu), reference.predict_proba(mu)[:, 1], atol=1e-6)
    with pytest.raises(ValueError, match=r"labels must be 0/1 with both present, got values \[1\]"):
        dfr_head(mu, np.ones(300, dtype=int))


def test_conditional_erasure_keeps_the_label_information_a_shortcut_shares():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(7)

    def cohort(n: int, agreement: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        label = rng.integers(0, 2, n)
        marker = np.where(rng.random(n) < agreement, label, 1 - label)
        mu = np.stack([label + 0.7 * rng.standard_normal(n), 2.0 * marker + 0.3 * rng.standard_normal(n)], 1)
        return mu, label, marker

    calib_mu, calib_label, calib_marker = cohort(2000, 0.9)  # the shortcut holds in calibration
    test_mu, test_label, test_marker = cohort(2000, 0.9)
    head = np.array([1.0, 1.0])  # the classifier reads the lesion (z0) and the marker (z1)
    plain = fit_eraser(calib_mu, calib_marker)
    conditional = fit_eraser(calib_mu, calib_marker, strata=calib_label)

    def auc(eraser) -> float:
        erased = eraser(torch.as_tensor(test_mu)).numpy()
        return roc_auc_score(test_label, erased @ head)

    lesion_only = roc_auc_score(test_label, test_mu[:, 0])
    # unconditional erasure also removes the label signal the marker carries and over-corrects
    assert auc(plain) < lesion_only - 0.1
    # conditional erasure removes the marker within each label and keeps the lesion signal
    assert auc(conditional) == pytest.approx(lesion_only, abs=0.03)
    erased = conditional(torch.as_tensor(test_mu)).numpy()
    for value in (0, 1):  # within a label, nothing linear tells the marker any more
        rows = test_label == value
        assert abs(roc_auc_score(test_marker[rows], erased[rows, 1]) - 0.5) < 0.06
    with pytest.raises(ValueError, match="strata must have length 2000"):
        fit_eraser(calib_mu, calib_marker, strata=calib_label[:-1])


def test_per_stratum_erasure_removes_a_marker_that_acts_differently_in_each_label():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(11)

    def cohort(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        label = rng.integers(0, 2, n)
        marker = np.where(rng.random(n) < 0.9, label, 1 - label)
        mu = 0.3 * rng.standard_normal((n, 4))
        mu[:, 0] += label
        # the marker moves z1 among negatives and z2 among positives
        mu[:, 1] += 2.0 * marker * (label == 0)
        mu[:, 2] += 2.0 * marker * (label == 1)
        return mu, label, marker

    calib_mu, calib_label, calib_marker = cohort(4000)
    test_mu, test_label, test_marker = cohort(4000)

    def within_label_separation(eraser) -> float:
        erased = eraser(torch.as_tensor(test_mu)).numpy()
        worst = 0.0
        for value in (0, 1):
            rows = test_label == value
            gap = erased[rows][test_marker[rows] == 1].mean(0) - erased[rows][test_marker[rows] == 0].mean(0)
            worst = max(worst, float(np.abs(gap).max()))
        return worst

    pooled = fit_eraser(calib_mu, calib_marker, strata=calib_label)
    per_label = fit_eraser(calib_mu, calib_marker, strata=calib_label, per_stratum=True)
    assert within_label_separation(pooled) > 0.5  # a pooled direction cannot remove both effects
    assert within_label_separation(per_label) < 0.1  # one direction per label can
    erased = per_label(torch.as_tensor(test_mu)).numpy()
    assert roc_auc_score(test_label, erased[:, 0]) > 0.95  # the lesion variable z0 is kept
    with pytest.raises(ValueError, match="per_stratum=True needs strata"):
        fit_eraser(calib_mu, calib_marker, per_stratum=True)
