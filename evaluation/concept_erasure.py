"""Mitigation without retraining the network: erase an attribute from ``mu``, refit only the head.

* :func:`fit_eraser` fits LEACE (Belrose et al. 2023, "LEACE: Perfect linear concept erasure
  in closed form", via the ``concept-erasure`` package) so that no linear classifier can
  recover the attribute from the erased latent, while moving ``mu`` as little as possible
  in the least-squares sense;
* :class:`LatentEraser` holds it as a small ``nn.Module`` (buffers only: saveable, scriptable);
* :class:`ErasedClassifier` puts it between an unchanged network's encoder and head;
* :func:`dfr_head` refits only a logistic last layer on a group-balanced set (Deep Feature
  Reweighting, Kirichenko et al. 2022, "Last layer re-training is sufficient for robustness
  to spurious correlations").
"""

from __future__ import annotations

import hashlib
import os
from importlib.metadata import PackageNotFoundError, version
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from concept_erasure import LeaceFitter
from sklearn.linear_model import LogisticRegression
from torch import nn

from evaluation.subgroup_audit import encode_attribute
from transforms.keys import Keys

__all__ = [
    "ErasedClassifier",
    "LatentEraser",
    "dfr_head",
    "dfr_scores",
    "fit_eraser",
    "state_dict_sha256",
]

_FORMAT = "medglass.latent_eraser"
_FORMAT_VERSION = 1


def _library_version() -> str:
    try:
        return version("concept-erasure")
    except PackageNotFoundError:  # pragma: no cover - installed with medglass
        return "unknown"


class LatentEraser(nn.Module):
    """An affine LEACE eraser ``mu - ((mu - bias) @ proj_right.T) @ proj_left.T`` as a module.

    Args:
        proj_left: ``(D, r)`` left factor of the rank-``r`` edit.
        proj_right: ``(r, D)`` right factor.
        bias: ``(D,)`` mean of ``mu`` over the fit data (the erased ``mu`` keeps this mean).
        attribute: name of the erased attribute.
        categories: the attribute values it was fitted on.
        n_fit: samples it was fitted on.
        library_version: ``concept-erasure`` version that fitted it.

    Raises:
        ValueError: if the tensors' shapes disagree.

    Example:
        >>> eraser = fit_eraser(torch.randn(40, 3) + torch.tensor([0, 0, 2.0]) * (torch.arange(40) % 2)[:, None],
        ...                     torch.arange(40) % 2, attribute="site")
        >>> eraser(torch.zeros(5, 3)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        proj_left: torch.Tensor,
        proj_right: torch.Tensor,
        bias: torch.Tensor,
        attribute: str = "attribute",
        categories: tuple[str, ...] | list[str] = ("0", "1"),
        n_fit: int = 0,
        library_version: str = "unknown",
    ) -> None:
        super().__init__()
        d = bias.shape[0] if bias.dim() == 1 else -1
        if d < 1 or proj_left.dim() != 2 or proj_right.dim() != 2 or proj_left.shape[0] != d:
            raise ValueError(
                f"eraser tensors: expected proj_left (D, r), proj_right (r, D), bias (D,), got "
                f"{tuple(proj_left.shape)}, {tuple(proj_right.shape)}, {tuple(bias.shape)}"
            )
        if proj_right.shape != (proj_left.shape[1], d):
            raise ValueError(
                f"eraser tensors: proj_right must be {(proj_left.shape[1], d)}, got {tuple(proj_right.shape)}"
            )
        self.register_buffer("proj_left", proj_left.detach().clone())
        self.register_buffer("proj_right", proj_right.detach().clone())
        self.register_buffer("bias", bias.detach().clone())
        self.latent_dim = int(d)
        self.attribute = str(attribute)
        self.categories = [str(c) for c in categories]
        self.n_fit = int(n_fit)
        self.library_version = str(library_version)

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        """Erase the attribute from ``mu`` ``(batch, latent_dim)``; same dtype out."""
        if mu.dim() != 2 or mu.shape[1] != self.latent_dim:
            raise ValueError(f"mu: expected shape (batch, {self.latent_dim}), got {list(mu.shape)}")
        x = mu.to(self.bias.dtype)
        erased = x - ((x - self.bias) @ self.proj_right.t()) @ self.proj_left.t()
        return erased.to(mu.dtype)

    def metadata(self) -> dict[str, object]:
        """JSON-able description: attribute, categories, latent_dim, n_fit, library version."""
        return {
            "attribute": self.attribute,
            "categories": list(self.categories),
            "latent_dim": self.latent_dim,
            "n_fit": self.n_fit,
            "library": "concept-erasure",
            "library_version": self.library_version,
            "method": "leace",
        }

    def save(self, path: str | PathLike) -> Path:
        """Write the buffers and :meth:`metadata` to ``path`` (``torch.save``; a small file).

        Written to a temporary file beside ``path`` that then replaces it, so a failure never
        leaves a truncated eraser where a deployment would look for one.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            torch.save(
                {
                    "format": _FORMAT,
                    "format_version": _FORMAT_VERSION,
                    "state_dict": state,
                    "metadata": self.metadata(),
                },
                tmp,
            )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | PathLike, latent_dim: int | None = None) -> LatentEraser:
        """Read an eraser written by :meth:`save`.

        Args:
            path: the file.
            latent_dim: if given, the latent size the eraser must have.

        Raises:
            ValueError: naming the file, when it is missing, unreadable, not an eraser file or
                its latent size differs from ``latent_dim``.
        """
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: eraser file not found")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for corrupt files
            raise ValueError(
                f"{path}: not a readable eraser file ({type(error).__name__}: {error})"
            ) from error
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a medglass latent eraser file (missing format {_FORMAT!r})")
        try:
            state, meta = payload["state_dict"], payload["metadata"]
            eraser = cls(
                state["proj_left"],
                state["proj_right"],
                state["bias"],
                attribute=meta["attribute"],
                categories=meta["categories"],
                n_fit=meta["n_fit"],
                library_version=meta["library_version"],
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: incomplete eraser file ({type(error).__name__}: {error})") from error
        if meta.get("latent_dim") != eraser.latent_dim:
            raise ValueError(
                f"{path}: metadata latent_dim {meta.get('latent_dim')} disagrees with tensors ({eraser.latent_dim})"
            )
        if latent_dim is not None and eraser.latent_dim != latent_dim:
            raise ValueError(f"{path}: eraser has latent_dim {eraser.latent_dim}, expected {latent_dim}")
        return eraser


def fit_eraser(
    mu,
    groups,
    attribute: str = "attribute",
    constrain_cov_trace: bool = False,
    shrinkage: bool = True,
    strata=None,
    per_stratum: bool = False,
) -> LatentEraser:
    """Fit a LEACE eraser of an attribute (one-hot over its categories) on latent means.

    Fitted in float64. ``constrain_cov_trace`` is off by default: the library's trace
    constraint blends LEACE with another projection that no longer guarantees equal
    class-conditional means, and a single linear head does not need it.

    Args:
        mu: ``(N, D)`` latent means (numpy or torch).
        groups: ``(N,)`` attribute values (missing ones are left out of the fit).
        attribute: the attribute's name, kept in the eraser's metadata.
        constrain_cov_trace: passed to :class:`concept_erasure.LeaceFitter`.
        shrinkage: shrink the covariance estimate (passed to ``LeaceFitter``; helps small N).
        strata: optional ``(N,)`` stratum of each sample (e.g. the disease label). The one-hot
            concept is then centred *within* each stratum before fitting, so the eraser removes
            only the part of the attribute that the stratum does not explain (conditional
            erasure). Needed when the attribute is correlated with the label in the calibration
            data (a shortcut): the unconditional cross-covariance ``Cov(mu, attribute)`` then
            also contains the label's own features, and erasing it removes disease information
            and over-corrects the classifier. The fit pools the strata: the attribute's groups
            get equal means on average over the strata, not inside each one.
            Samples with a missing stratum (``None``/NaN/-1) are left out.
        per_stratum: with ``strata``, give the centred concept its own columns in each stratum
            (rank up to ``(categories − 1) × strata``): the groups then get equal means inside
            every stratum, also when the attribute moves the latent differently in each. It
            erases more — of the attribute and of whatever shares its directions
            (``bench/bench_bias.py`` measures both).

    Returns:
        The fitted :class:`LatentEraser` (float64 buffers).

    Raises:
        ValueError: bad shapes, fewer than two categories (naming them), ``strata`` of the
            wrong length, or ``per_stratum`` without ``strata``.

    Example:
        >>> mu = torch.randn(60, 4); g = torch.arange(60) % 3; mu[:, 1] += g
        >>> e = fit_eraser(mu, g, attribute="site")
        >>> e.categories, e.latent_dim
        (['0', '1', '2'], 4)
    """
    x = torch.as_tensor(np.asarray(mu.detach().cpu() if torch.is_tensor(mu) else mu, dtype=np.float64))
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"mu must be (N, D) with N >= 2, got shape {tuple(x.shape)}")
    group_values = groups.detach().cpu().numpy() if torch.is_tensor(groups) else groups
    coded = encode_attribute(group_values)
    if coded.valid.shape[0] != x.shape[0]:
        raise ValueError(f"groups must have length {x.shape[0]} (rows of mu), got {coded.valid.shape[0]}")
    if len(coded.categories) < 2:
        raise ValueError(
            f"{attribute}: erasure needs at least two attribute values, got {list(coded.categories)}"
        )
    if per_stratum and strata is None:
        raise ValueError("per_stratum=True needs strata (e.g. the labels), got strata=None")
    valid = coded.valid.copy()
    if strata is not None:
        strata_coded = encode_attribute(strata.detach().cpu().numpy() if torch.is_tensor(strata) else strata)
        if strata_coded.valid.shape[0] != x.shape[0]:
            raise ValueError(
                f"strata must have length {x.shape[0]} (rows of mu), got {strata_coded.valid.shape[0]}"
            )
        stratum = np.full(x.shape[0], -1, dtype=np.int64)
        stratum[strata_coded.valid] = strata_coded.codes
        stratum = stratum[valid]
        keep = stratum >= 0
    x = x[torch.as_tensor(valid)]
    z = torch.nn.functional.one_hot(torch.as_tensor(coded.codes), len(coded.categories)).to(torch.float64)
    if strata is not None:
        x, z, stratum = x[torch.as_tensor(keep)], z[torch.as_tensor(keep)], stratum[keep]
        values = np.unique(stratum)
        width = z.shape[1]
        centred = torch.zeros(z.shape[0], width * (len(values) if per_stratum else 1), dtype=torch.float64)
        for j, value in enumerate(values):
            rows = torch.as_tensor(stratum == value)
            cols = slice(j * width, (j + 1) * width) if per_stratum else slice(0, width)
            centred[rows, cols] = z[rows] - z[rows].mean(dim=0, keepdim=True)
        z = centred
    fitter = LeaceFitter.fit(x, z, constrain_cov_trace=constrain_cov_trace, shrinkage=shrinkage)
    eraser = fitter.eraser
    bias = eraser.bias if eraser.bias is not None else torch.zeros(x.shape[1], dtype=torch.float64)
    return LatentEraser(
        eraser.proj_left,
        eraser.proj_right,
        bias,
        attribute=attribute,
        categories=coded.categories,
        n_fit=int(x.shape[0]),
        library_version=_library_version(),
    )


class ErasedClassifier(nn.Module):
    """Logits of an unchanged network computed from erased latent means.

    ``forward(x) = network.classify(eraser(network.encode(x)["mu"]))``. The network is
    held by reference, not copied or modified (its parameters keep their values).

    Args:
        network: anything with ``encode(x) -> {"mu": ...}`` and ``classify(mu)``, e.g. ``GlassBoxNet``.
        eraser: the :class:`LatentEraser`.

    Raises:
        TypeError: if ``network`` lacks ``encode``/``classify``.
        ValueError: if the network's ``latent_dim`` differs from the eraser's.

    Example:
        >>> from networks.glassbox import GlassBoxNet
        >>> net = GlassBoxNet(img_size=(32, 32), latent_dim=4).eval()
        >>> eraser = fit_eraser(torch.randn(20, 4), torch.arange(20) % 2)
        >>> ErasedClassifier(net, eraser)(torch.rand(2, 1, 32, 32)).shape
        torch.Size([2, 2])
    """

    __constants__ = ["key_mu"]
    key_mu = Keys.MU

    def __init__(self, network: nn.Module, eraser: LatentEraser) -> None:
        super().__init__()
        if not (callable(getattr(network, "encode", None)) and callable(getattr(network, "classify", None))):
            raise TypeError(f"network must have encode(x) and classify(mu), got {type(network).__name__}")
        latent_dim = getattr(network, "latent_dim", None)
        if latent_dim is not None and latent_dim != eraser.latent_dim:
            raise ValueError(
                f"eraser: latent_dim {eraser.latent_dim} does not match the network's {latent_dim}"
            )
        self.network = network
        self.eraser = eraser

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, num_classes)`` from the erased latent mean."""
        mu = self.network.encode(x)[self.key_mu]
        return self.network.classify(self.eraser(mu))


def state_dict_sha256(module: nn.Module) -> str:
    """SHA-256 over a module's state dict: names, dtypes, shapes and raw bytes, in key order.

    Example:
        >>> state_dict_sha256(nn.Linear(2, 1)) != state_dict_sha256(nn.Linear(2, 1))
        True
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _balanced_subsample(cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices with every cell cut down to the smallest cell's size."""
    names, counts = np.unique(cells, return_counts=True)
    size = counts.min()
    return np.concatenate([rng.choice(np.flatnonzero(cells == c), size, replace=False) for c in names])


def dfr_head(
    mu, labels, groups=None, seed: int = 0, balance: bool = True, n_subsamples: int = 10, C: float = 1.0
) -> LogisticRegression:
    """Deep Feature Reweighting: refit a logistic last layer on group-balanced data.

    Each of ``n_subsamples`` draws cuts every (label, group) cell — (label) cells without
    ``groups`` — to the smallest cell's size and fits an L2 logistic regression on
    standardised ``mu``; as in the paper the weights are averaged over draws. The
    standardisation is folded into the averaged coefficients, so the returned model takes
    raw ``mu`` (typically the erased one held out from training) and ``coef_[0, j]`` is the
    weight of latent ``j``.

    Args:
        mu: ``(N, D)`` latent means of a held-out set.
        labels: ``(N,)`` 0/1 labels.
        groups: ``(N,)`` attribute values, or ``None`` to balance the labels only
            (samples with a missing attribute are left out).
        seed: seed of the subsamples.
        balance: ``False`` fits once on all samples (the plain last-layer baseline).
        n_subsamples: balanced draws to average (>= 1).
        C: inverse L2 strength of the logistic regression.

    Returns:
        A fitted ``LogisticRegression`` (``classes_ == [0, 1]``).

    Raises:
        ValueError: bad shapes, labels not 0/1 with both present, or ``n_subsamples < 1``.

    Example:
        >>> rng = np.random.default_rng(0); y = rng.integers(0, 2, 80)
        >>> head = dfr_head(np.c_[y + rng.normal(0, 0.5, 80)], y, groups=rng.integers(0, 2, 80))
        >>> dfr_scores(head, np.array([[-1.0], [2.0]])).round(1).tolist()[0] < 0.5
        True
    """
    x = np.asarray(mu, dtype=np.float64)
    y = np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"mu must be (N, D) and labels (N,), got shapes {x.shape} and {y.shape}")
    if set(np.unique(y).tolist()) != {0, 1}:
        raise ValueError(f"labels must be 0/1 with both present, got values {np.unique(y).tolist()}")
    if isinstance(n_subsamples, bool) or not isinstance(n_subsamples, (int, np.integer)) or n_subsamples < 1:
        raise ValueError(f"n_subsamples must be an int >= 1, got {n_subsamples!r}")
    cells = y.astype(str)
    if groups is not None:
        coded = encode_attribute(groups)
        if coded.valid.shape[0] != x.shape[0]:
            raise ValueError(f"groups must have length {x.shape[0]} (rows of mu), got {coded.valid.shape[0]}")
        x, y = x[coded.valid], y[coded.valid]
        cells = np.char.add(y.astype(str), np.char.add("|", coded.codes.astype(str)))
    rng = np.random.default_rng(seed)
    draws = [_balanced_subsample(cells, rng) for _ in range(n_subsamples)] if balance else [np.arange(len(y))]
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    z = (x - mean) / std
    coefs, intercepts = [], []
    for index in draws:
        model = LogisticRegression(C=C, max_iter=1000, random_state=seed).fit(z[index], y[index])
        coefs.append(model.coef_)
        intercepts.append(model.intercept_)
    coef, intercept = np.mean(coefs, axis=0), np.mean(intercepts, axis=0)
    model.coef_ = coef / std  # fold the standardisation in: w·(x - m)/s = (w/s)·x - (w/s)·m
    model.intercept_ = intercept - (coef / std) @ mean
    return model


def dfr_scores(head: LogisticRegression, mu) -> np.ndarray:
    """Positive-class (label 1) probabilities of ``mu`` ``(N, D)`` under a :func:`dfr_head` model."""
    positive = int(np.flatnonzero(head.classes_ == 1)[0])
    return head.predict_proba(np.asarray(mu, dtype=np.float64))[:, positive]
