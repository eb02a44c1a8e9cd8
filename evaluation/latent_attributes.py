"""How each latent dimension relates to each recorded attribute (sex, site, age band, label, ...).

`attribute_matrix` turns datalist records into integer codes per attribute;
`latent_attribute_correlation` gives one number per (attribute, latent dimension):

- a binary attribute: the point-biserial correlation, i.e. Pearson's r between the 0/1
  indicator of the second category (sorted order) and the latent, signed in [-1, 1]
  (positive: the second category has the larger latent values);
- an attribute with more than two categories: the correlation ratio
  ``eta = sqrt(between-group sum of squares / total sum of squares)`` of the latent across the
  groups, in [0, 1] and unsigned (the categories have no order). For two groups eta equals
  ``|r|``, so both kinds read on the same scale. With few rows per category eta is biased
  upward: for an unrelated latent, ``E[eta^2] ~ (L - 1) / (N - 1)`` with L categories (about
  0.15 for 7 age bands over 40 images), so read small values against that floor.

Rows whose attribute is missing (code -1) are left out of that attribute's row. A latent
dimension that is constant over the rows (a collapsed β-VAE unit) gets 0: it carries no
information about the attribute. `correlation_heatmap` draws the matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np

__all__ = ["attribute_matrix", "correlation_heatmap", "latent_attribute_correlation"]

logger = logging.getLogger("medglass.evaluation")

_MISSING = (None, "")


def _is_scalar_label(value: object) -> bool:
    return isinstance(value, (bool, int, np.integer, str)) and value not in _MISSING


def _sorted_categories(values: set) -> list:
    try:
        return sorted(values)
    except TypeError:  # mixed types: order by text
        return sorted(values, key=str)


def attribute_matrix(
    records: Sequence[dict], keys: Sequence[str] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Integer codes per attribute from datalist records.

    A key is looked up in the record's ``attributes`` dict first, then at the record's top
    level (so ``label`` works). Categories are sorted and coded 0, 1, ...; a missing value
    (absent key, None or "") is coded -1. An attribute with fewer than two categories among
    the records is skipped with a log message: nothing can be correlated with a constant.

    Args:
        records: datalist records (dicts with an ``attributes`` dict and optionally ``label``).
        keys: attributes to read; None for every key found in ``attributes`` (first-seen
            order) followed by ``label`` when the records carry a scalar class label.

    Returns:
        ``(codes, categories)``: name -> ``(N,)`` int64 codes, and name -> category names
        (as text) in code order.

    Raises:
        ValueError: no records, a record that is not a dict, or no attribute left.

    Example:
        >>> codes, cats = attribute_matrix([{"attributes": {"sex": "M"}}, {"attributes": {"sex": "F"}}])
        >>> codes["sex"].tolist(), cats["sex"]
        ([1, 0], ['F', 'M'])
    """
    if len(records) == 0:
        raise ValueError("records must hold at least one datalist record, got 0")
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise ValueError(f"records[{i}] must be a dict, got {type(record).__name__}")
    if keys is None:
        keys = list(dict.fromkeys(k for r in records for k in (r.get("attributes") or {})))
        labels = [r["label"] for r in records if r.get("label") not in _MISSING]
        if labels and all(_is_scalar_label(v) for v in labels) and "label" not in keys:
            keys.append("label")
    codes: dict[str, np.ndarray] = {}
    categories: dict[str, list[str]] = {}
    for key in keys:
        raw = [(r.get("attributes") or {}).get(key, r.get(key)) for r in records]
        bad = next((v for v in raw if isinstance(v, (list, dict, set, tuple, np.ndarray))), None)
        if bad is not None:
            raise ValueError(f"attribute '{key}' must hold scalar values, got {type(bad).__name__} {bad!r}")
        present = {v for v in raw if v not in _MISSING}
        if len(present) < 2:
            logger.info(
                "attribute_matrix: skipping '%s': %d categor(ies) among %d records",
                key,
                len(present),
                len(raw),
            )
            continue
        levels = _sorted_categories(present)
        index = {v: i for i, v in enumerate(levels)}
        codes[key] = np.array([index.get(v, -1) if v not in _MISSING else -1 for v in raw], dtype=np.int64)
        categories[key] = [str(v) for v in levels]
    if not codes:
        raise ValueError(f"no attribute with >= 2 categories among keys {list(keys)}")
    return codes, categories


def _association(z: np.ndarray, groups: np.ndarray) -> float:
    """Point-biserial r (two groups) or correlation ratio eta (more) of ``z`` across ``groups``."""
    total = ((z - z.mean()) ** 2).sum()
    if total <= 0:
        return 0.0
    levels = np.unique(groups)
    if levels.size == 2:
        return float(np.corrcoef((groups == levels[1]).astype(np.float64), z)[0, 1])
    between = sum((groups == g).sum() * (z[groups == g].mean() - z.mean()) ** 2 for g in levels)
    return float(np.sqrt(min(1.0, between / total)))


def latent_attribute_correlation(
    mu: np.ndarray, attributes: dict[str, np.ndarray]
) -> tuple[np.ndarray, list[str]]:
    """Association of every latent dimension with every attribute.

    Args:
        mu: ``(N, D)`` latent means.
        attributes: name -> ``(N,)`` integer codes (-1 = missing), e.g. from `attribute_matrix`.

    Returns:
        ``(matrix (A, D), names)``: point-biserial r for binary attributes, eta for attributes
        with more than two categories (see the module docstring), rows in ``attributes`` order.

    Raises:
        ValueError: ``mu`` not 2-D finite, codes not of length N, no attributes, or an
            attribute with fewer than two categories among its non-missing rows.

    Example:
        >>> mu = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
        >>> latent_attribute_correlation(mu, {"g": np.array([0, 1, 2])})[0].round(3).tolist()
        [[1.0, 0.0]]
    """
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2 or mu.shape[0] < 2:
        raise ValueError(f"mu must be a 2-D array (N >= 2, D), got shape {mu.shape}")
    if not np.isfinite(mu).all():
        raise ValueError("mu must be finite, got NaN/inf values")
    if not attributes:
        raise ValueError("attributes must hold at least one attribute, got none")
    names = list(attributes)
    matrix = np.zeros((len(names), mu.shape[1]))
    for a, name in enumerate(names):
        codes = np.asarray(attributes[name]).ravel()
        if codes.shape[0] != mu.shape[0]:
            raise ValueError(
                f"attribute '{name}' has {codes.shape[0]} codes, expected N={mu.shape[0]} (mu {mu.shape})"
            )
        keep = codes >= 0
        if np.unique(codes[keep]).size < 2:
            raise ValueError(
                f"attribute '{name}' needs >= 2 categories among its non-missing rows (code >= 0)"
            )
        matrix[a] = [_association(mu[keep, d], codes[keep]) for d in range(mu.shape[1])]
    return matrix, names


def correlation_heatmap(
    matrix: np.ndarray, attribute_names: Sequence[str], path: str | PathLike, title: str | None = None
) -> Path:
    """Save the attribute × latent matrix as an annotated heatmap (PNG).

    Diverging colormap fixed to [-1, 1] (red positive, blue negative), one annotated cell per
    value, columns labelled ``z0 .. z{D-1}``.

    Args:
        matrix: ``(A, D)`` values in [-1, 1] (e.g. from `latent_attribute_correlation`).
        attribute_names: A row labels.
        path: PNG to write (parent folders are created).
        title: optional figure title.

    Returns:
        The written path.

    Raises:
        ValueError: ``matrix`` not 2-D or a label count that does not match its rows.

    Example:
        >>> correlation_heatmap(np.eye(2), ["sex", "site"], "latent_attributes.png")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or min(matrix.shape) < 1:
        raise ValueError(
            f"matrix must be a non-empty 2-D array (attributes, latents), got shape {matrix.shape}"
        )
    if len(attribute_names) != matrix.shape[0]:
        raise ValueError(
            f"attribute_names must have {matrix.shape[0]} entries (matrix rows), got {len(attribute_names)}"
        )
    n_attr, n_lat = matrix.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * n_lat, 1.0 + 0.45 * n_attr))
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-1.0, vmax=1.0, aspect="auto")
    for (i, j), value in np.ndenumerate(matrix):
        text = "n/a" if not np.isfinite(value) else f"{value:.2f}"
        ax.text(
            j, i, text, ha="center", va="center", fontsize=7, color="white" if abs(value) > 0.6 else "black"
        )
    ax.set_xticks(range(n_lat), [f"z{j}" for j in range(n_lat)], fontsize=8)
    ax.set_yticks(range(n_attr), list(attribute_names), fontsize=8)
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("attribute")
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02, label="r (binary) / η (categorical)")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
