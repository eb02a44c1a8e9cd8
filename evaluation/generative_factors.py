"""The phantom's generative factors as a numeric table aligned with latent codes (``factors.csv``).

Disentanglement scores (:mod:`evaluation.disentanglement`) compare latent codes with the known
factors a phantom cohort was generated from; :func:`factor_table` reads them, aligns rows with
the encoded images' ids and encodes categorical factors as integers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike

import numpy as np

__all__ = ["factor_table", "EXCLUDED_BY_DEFAULT"]

logger = logging.getLogger("medglass.evaluation")

#: factors.csv columns left out by default: bookkeeping, lesion-only measurements (NaN for
#: negatives; ``label`` stands for them) and exact aliases of another factor.
EXCLUDED_BY_DEFAULT = ("id", "split", "age_band", "scanner")


def factor_table(
    factors_csv: str | PathLike, ids: Sequence[str], columns: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str], list[bool]]:
    """Generative factors of a phantom cohort, one row per id, ready for the scores above.

    Default columns: every column of ``factors.csv`` except ``id``/``split`` (bookkeeping),
    the ``lesion_*`` columns (only defined for positives: NaN or 0 elsewhere; ``label`` carries
    lesion presence), ``age_band`` (a binning of ``age``) and ``scanner`` (one name per
    ``site``): an alias factor would make a code that captures the real one look split
    between two factors. Text columns become integer codes (sorted categories) and are
    discrete; numeric columns holding only integers are discrete, others continuous.
    Columns constant over the selected rows are dropped, with a log message.

    Args:
        factors_csv: path of a cohort's ``factors.csv``.
        ids: image ids in the order of the codes.
        columns: factor columns to use; None for the default set.

    Returns:
        ``(values (N, K) float64, names, continuous flags)``.

    Raises:
        ValueError: missing file, ids not in the file, unknown columns, NaN values, or no
            non-constant column.

    Example:
        >>> values, names, continuous = factor_table("cohort/factors.csv", ["p00000", "p00001"])  # doctest: +SKIP
    """
    import pandas as pd

    try:
        table = pd.read_csv(factors_csv, dtype={"id": str})
    except FileNotFoundError as err:
        raise ValueError(f"{factors_csv}: factors file not found") from err
    if "id" not in table.columns:
        raise ValueError(f"{factors_csv}: no 'id' column (columns: {list(table.columns)})")
    table = table.drop_duplicates("id").set_index("id")
    missing = [i for i in ids if i not in table.index]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{factors_csv}: {len(missing)} of {len(ids)} ids not found: {shown}")
    if columns is None:
        columns = [c for c in table.columns if c not in EXCLUDED_BY_DEFAULT and not c.startswith("lesion_")]
    unknown = [c for c in columns if c not in table.columns]
    if unknown:
        raise ValueError(f"{factors_csv}: unknown columns {unknown} (available: {list(table.columns)})")
    rows = table.loc[list(ids), list(columns)]
    values, names, continuous = [], [], []
    for name in columns:
        col = rows[name]
        if col.isna().any():
            raise ValueError(
                f"{factors_csv}: column '{name}' has {int(col.isna().sum())} NaN values for these ids"
            )
        if col.nunique() < 2:
            logger.info(
                "factor_table: dropping column '%s', constant (%r) over the %d ids",
                name,
                col.iloc[0],
                len(ids),
            )
            continue
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            numbers = col.to_numpy(dtype=np.float64)
            is_continuous = bool(np.any(numbers != np.round(numbers)))
        else:
            numbers = np.unique(col.astype(str).to_numpy(), return_inverse=True)[1].astype(np.float64)
            is_continuous = False
        values.append(numbers)
        names.append(name)
        continuous.append(is_continuous)
    if not names:
        raise ValueError(f"{factors_csv}: every selected column is constant over the {len(ids)} ids")
    return np.stack(values, axis=1), names, continuous
