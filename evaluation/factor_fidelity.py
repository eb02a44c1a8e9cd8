"""Factor fidelity of synthetic images on phantoms: is the finding drawn, and do the factors follow the cohort?

On a phantom cohort every real image has its ground truth — a lesion mask and the generative
factors of ``factors.csv`` — while a synthetic image has only the class it was drawn for. Both
are read back from the synthetic images with readers trained on the real ones:

* **lesion presence** — :func:`train_lesion_detector` fits a small MONAI ``UNet`` (Dice + cross-
  entropy, ``DiceCELoss``) on real training images and their ground-truth masks (``mask > 0``);
  :func:`predicted_lesion_area` counts the pixels it marks; :func:`calibrate_area_threshold`
  picks the area above which an image holds a lesion on real *validation* images (best balanced
  accuracy against ``mask.any()``). :func:`presence_fidelity` gives the share of class-1
  synthetic images read as holding a lesion and of class-0 ones read as lesion-free.
* **factor distributions** — :func:`factor_readback` fits a linear probe per factor on the real
  training images' encoder features (ridge regression for a continuous factor, logistic
  regression for a discrete one), reads the factor off the synthetic images and off real
  held-out images of the same classes, and compares the two read-out distributions
  (:func:`distribution_gap`: Kolmogorov–Smirnov statistic and Wasserstein distance; total
  variation distance for a discrete factor). Comparing read-outs with read-outs, not with the
  true values, keeps the probe's own error out of the gap; the probe's score on real held-out
  images says how far it can be trusted.

Images are ``(N, 1, *spatial)`` in [0, 1] (numpy or torch), masks boolean of the same spatial
shape. The detector is a plain training loop: MONAI has the network and the loss but no
one-call trainer without an engine and a data pipeline, which would be the larger code here.

Example:
    >>> import numpy as np
    >>> calibrate_area_threshold(np.array([0, 0, 1, 9, 12]), np.array([0, 0, 0, 1, 1]))
    5.0
    >>> presence_fidelity(np.array([True, False, True]), np.array([1, 0, 0]))
    {'lesion_present_share_class1': 1.0, 'lesion_absent_share_class0': 0.5}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.networks.utils import eval_mode
from scipy import stats
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "train_lesion_detector",
    "predicted_lesion_area",
    "calibrate_area_threshold",
    "presence_fidelity",
    "distribution_gap",
    "factor_readback",
    "lesion_fidelity",
]


def _tensor(array: Any, name: str) -> torch.Tensor:
    x = array.detach().cpu() if isinstance(array, torch.Tensor) else torch.as_tensor(np.asarray(array))
    if x.ndim not in (4, 5) or x.shape[1] != 1:
        raise ValueError(f"{name} must be (N, 1, H, W[, D]), got shape {tuple(x.shape)}")
    if x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one image, got 0")
    return x.float()


def train_lesion_detector(
    images: Any, masks: Any, epochs: int = 6, batch_size: int = 16, lr: float = 1e-2, seed: int = 0
) -> torch.nn.Module:
    """A small lesion segmenter fitted on real images and their ground-truth masks.

    Args:
        images: ``(N, 1, *spatial)`` real training images in [0, 1]; each side divisible by 4.
        masks: ``(N, 1, *spatial)`` or ``(N, *spatial)`` ground-truth masks (``> 0``: lesion).
        epochs: passes over the images.
        batch_size: images per step.
        lr: Adam learning rate.
        seed: seed of the initialisation and the batch order.

    Returns:
        The detector (a MONAI ``UNet``, one logit channel), in eval mode.

    Raises:
        ValueError: shapes that do not match, sides not divisible by 4, no lesion pixel, or a
            count below 1.
    """
    x = _tensor(images, "images")
    m = torch.as_tensor(np.asarray(masks.cpu() if isinstance(masks, torch.Tensor) else masks))
    m = (m.unsqueeze(1) if m.ndim == x.ndim - 1 else m).float().gt(0).float()
    if tuple(m.shape) != tuple(x.shape):
        raise ValueError(f"masks must match images {tuple(x.shape)}, got shape {tuple(m.shape)}")
    if any(s % 4 for s in x.shape[2:]):
        raise ValueError(f"images: every spatial side must be divisible by 4, got {tuple(x.shape[2:])}")
    if not m.any():
        raise ValueError("masks: no lesion pixel in any training image; the detector has nothing to learn")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    generator = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng():
        torch.manual_seed(int(seed))
        # batch norm, not MONAI's default instance norm: a lesion is told by its absolute brightness,
        # which instance norm takes out of every image (a lesion-free one included)
        net = UNet(x.ndim - 2, 1, 1, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm="batch")
    # Dice over the whole batch: per image, a lesion-free mask gives no usable Dice term
    loss_fn = DiceCELoss(sigmoid=True, batch=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch_size):
            index = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(net(x[index]), m[index])
            loss.backward()
            optimizer.step()
    return net.eval()


def predicted_lesion_area(detector: torch.nn.Module, images: Any, batch: int = 64) -> np.ndarray:
    """Pixels (voxels) the detector marks as lesion (probability > 0.5), per image.

    Args:
        detector: from :func:`train_lesion_detector`.
        images: ``(N, 1, *spatial)`` images in [0, 1].
        batch: images per forward pass.

    Returns:
        ``(N,)`` float64 areas.
    """
    x = _tensor(images, "images")
    device = next(detector.parameters()).device
    parts = []
    with torch.no_grad(), eval_mode(detector):
        for start in range(0, len(x), batch):
            logits = detector(x[start : start + batch].to(device))
            parts.append((logits > 0).flatten(1).sum(dim=1).cpu().double())
    return torch.cat(parts).numpy()


def calibrate_area_threshold(areas: Any, present: Any) -> float:
    """The predicted area above which an image holds a lesion: best balanced accuracy on real images.

    ``area > t`` reads the same for every ``t`` between two neighbouring observed areas, so the
    observed areas are the candidates; the threshold is the middle of the best range (from the
    lowest best candidate to the observed area above the highest), away from both classes.

    Args:
        areas: ``(N,)`` predicted areas of real (validation) images.
        present: ``(N,)`` ground truth, truthy where the image has a lesion.

    Returns:
        The threshold.

    Raises:
        ValueError: lengths differ, or not both kinds of image are present.
    """
    a = np.asarray(areas, dtype=np.float64).ravel()
    y = np.asarray(present).astype(bool).ravel()
    if a.shape != y.shape:
        raise ValueError(f"areas and present must have the same length, got {a.size} and {y.size}")
    if y.all() or not y.any():
        raise ValueError(
            f"present must hold images with and without a lesion to calibrate on, got {int(y.sum())} of {y.size}"
        )
    candidates = np.unique(a)
    scores = np.array([((a[y] > t).mean() + (a[~y] <= t).mean()) / 2 for t in candidates])
    best = np.flatnonzero(np.isclose(scores, scores.max()))
    # area > t reads the same for every t from candidates[i] up to the next observed area
    upper = candidates[best[-1] + 1] if best[-1] + 1 < len(candidates) else candidates[best[-1]]
    return float((candidates[best[0]] + upper) / 2)


def presence_fidelity(present: Any, labels: Any) -> dict[str, float]:
    """Share of class-1 images read as holding a lesion and of class-0 images read as lesion-free.

    Args:
        present: ``(N,)`` read-back lesion presence of the synthetic images.
        labels: ``(N,)`` the class each was drawn for (other classes are ignored).

    Returns:
        ``lesion_present_share_class1`` and ``lesion_absent_share_class0`` (NaN for a class
        without images).

    Raises:
        ValueError: lengths differ.
    """
    p = np.asarray(present).astype(bool).ravel()
    y = np.asarray(labels).astype(np.int64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"present and labels must have the same length, got {p.size} and {y.size}")
    return {
        "lesion_present_share_class1": float(p[y == 1].mean()) if (y == 1).any() else float("nan"),
        "lesion_absent_share_class0": float((~p[y == 0]).mean()) if (y == 0).any() else float("nan"),
    }


def distribution_gap(real: Any, fake: Any, discrete: bool = False) -> dict[str, float]:
    """How far two samples of one factor lie apart.

    Args:
        real: values of real images.
        fake: values of synthetic images.
        discrete: the values are categories: total variation distance of their frequencies.

    Returns:
        ``{"tv": ...}`` for a discrete factor; else ``ks`` (two-sample Kolmogorov–Smirnov
        statistic, 0 = same distribution, 1 = disjoint), ``wasserstein`` (in the factor's units),
        ``real_mean`` and ``fake_mean``.

    Raises:
        ValueError: an empty sample.
    """
    r = np.asarray(real, dtype=np.float64).ravel()
    f = np.asarray(fake, dtype=np.float64).ravel()
    if r.size == 0 or f.size == 0:
        raise ValueError(f"real and fake must be non-empty, got {r.size} and {f.size} values")
    if discrete:
        values = np.union1d(r, f)
        return {"tv": float(0.5 * sum(abs((r == v).mean() - (f == v).mean()) for v in values))}
    return {
        "ks": float(stats.ks_2samp(r, f).statistic),
        "wasserstein": float(stats.wasserstein_distance(r, f)),
        "real_mean": float(r.mean()),
        "fake_mean": float(f.mean()),
    }


def _class_matched(real_labels: np.ndarray, fake_labels: np.ndarray) -> list[tuple[int, float]]:
    """``(class, weight)``: classes of the synthetic set with real images, weighted by synthetic count."""
    classes = [c for c in np.unique(fake_labels) if (real_labels == c).sum() >= 2]
    total = sum((fake_labels == c).sum() for c in classes)
    return [(int(c), float((fake_labels == c).sum() / total)) for c in classes]


def factor_readback(
    train_features: Any,
    train_factors: Any,
    names: Sequence[str],
    continuous: Sequence[bool],
    real_features: Any,
    real_factors: Any,
    real_labels: Any,
    fake_features: Any,
    fake_labels: Any,
) -> dict[str, float]:
    """Read each factor off synthetic images with a probe fitted on real ones; compare with real held-out images.

    The gap is computed per class of the synthetic set against real held-out images of that
    class, and averaged weighted by the synthetic images' class counts (a class-1-only set is
    compared with real class-1 images).

    Args:
        train_features: ``(N, F)`` encoder features of real training images.
        train_factors: ``(N, K)`` their factor values (:func:`evaluation.generative_factors.factor_table`).
        names: the ``K`` factor names.
        continuous: per factor, continuous (ridge) or discrete (logistic regression).
        real_features: ``(M, F)`` features of real held-out images.
        real_factors: ``(M, K)`` their factor values (scores the probe).
        real_labels: ``(M,)`` their classes.
        fake_features: ``(S, F)`` features of the synthetic images.
        fake_labels: ``(S,)`` the class each was drawn for.

    Returns:
        Per factor ``f``: ``factor_<f>_probe_r2`` or ``factor_<f>_probe_accuracy`` (on the real
        held-out images) and ``factor_<f>_ks`` / ``_wasserstein`` (continuous) or ``factor_<f>_tv``
        (discrete) between the read-outs. Empty when no class of the synthetic set has 2 real
        held-out images.

    Raises:
        ValueError: shapes that do not agree.
    """
    xt, yt = np.asarray(train_features, np.float64), np.asarray(train_factors, np.float64)
    xr, yr = np.asarray(real_features, np.float64), np.asarray(real_factors, np.float64)
    xf = np.asarray(fake_features, np.float64)
    lr_, lf = np.asarray(real_labels).astype(np.int64), np.asarray(fake_labels).astype(np.int64)
    if (
        yt.shape != (len(xt), len(names))
        or yr.shape != (len(xr), len(names))
        or len(continuous) != len(names)
    ):
        raise ValueError(
            f"factors must be (N, {len(names)}) for {len(names)} names, got {yt.shape} (training) and "
            f"{yr.shape} (held-out) with {len(continuous)} continuous flags"
        )
    if xt.shape[1] != xr.shape[1] or xt.shape[1] != xf.shape[1] or len(lr_) != len(xr) or len(lf) != len(xf):
        raise ValueError(
            f"features and labels must agree: training {xt.shape}, held-out {xr.shape} with {len(lr_)} labels, "
            f"synthetic {xf.shape} with {len(lf)} labels"
        )
    matched = _class_matched(lr_, lf)
    out: dict[str, float] = {}
    if not matched:
        return out
    for k, (name, is_continuous) in enumerate(zip(names, continuous, strict=True)):
        if is_continuous:
            probe = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(xt, yt[:, k])
            out[f"factor_{name}_probe_r2"] = float(probe.score(xr, yr[:, k]))
        else:
            if len(np.unique(yt[:, k])) < 2:
                continue
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(xt, yt[:, k])
            out[f"factor_{name}_probe_accuracy"] = float(probe.score(xr, yr[:, k]))
        read_real, read_fake = probe.predict(xr), probe.predict(xf)
        gaps: dict[str, float] = {}
        for c, weight in matched:
            gap = distribution_gap(read_real[lr_ == c], read_fake[lf == c], discrete=not is_continuous)
            for key in ("tv",) if not is_continuous else ("ks", "wasserstein"):
                gaps[key] = gaps.get(key, 0.0) + weight * gap[key]
        out.update({f"factor_{name}_{key}": value for key, value in gaps.items()})
    return out


def lesion_fidelity(
    detector: torch.nn.Module,
    threshold: float,
    real_images: Any,
    real_present: Any,
    real_labels: Any,
    fake_images: Any,
    fake_labels: Any,
) -> dict[str, float]:
    """Lesion presence and area read back from synthetic images, beside the detector's accuracy on real ones.

    Args:
        detector: from :func:`train_lesion_detector`.
        threshold: from :func:`calibrate_area_threshold` (on other real images than these).
        real_images: ``(M, 1, *spatial)`` real held-out images.
        real_present: ``(M,)`` their ground truth (``mask.any()``).
        real_labels: ``(M,)`` their classes.
        fake_images: ``(S, 1, *spatial)`` synthetic images.
        fake_labels: ``(S,)`` the class each was drawn for.

    Returns:
        :func:`presence_fidelity` of the synthetic images, ``detector_balanced_accuracy`` (the
        same reading on the real held-out images against their masks: the ceiling of the
        shares), ``lesion_area_threshold`` and, where both sets hold class-1 images,
        ``lesion_area_ks``, ``lesion_area_wasserstein``, ``lesion_area_real_mean`` and
        ``lesion_area_fake_mean`` (predicted areas of class-1 images, pixels).
    """
    real_area = predicted_lesion_area(detector, real_images)
    fake_area = predicted_lesion_area(detector, fake_images)
    truth = np.asarray(real_present).astype(bool).ravel()
    read = real_area > threshold
    out = presence_fidelity(fake_area > threshold, fake_labels)
    sensitivity = read[truth].mean() if truth.any() else np.nan
    specificity = (~read[~truth]).mean() if (~truth).any() else np.nan
    out["detector_balanced_accuracy"] = float(np.nanmean([sensitivity, specificity]))
    out["lesion_area_threshold"] = float(threshold)
    real_y, fake_y = np.asarray(real_labels).ravel(), np.asarray(fake_labels).ravel()
    if (real_y == 1).any() and (fake_y == 1).any():
        gap = distribution_gap(real_area[real_y == 1], fake_area[fake_y == 1])
        out.update({f"lesion_area_{k}": v for k, v in gap.items()})
    return out
