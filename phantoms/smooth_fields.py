"""Low-frequency random fields built from a separable cosine (DCT-II) basis.

Used for the smooth anatomical displacement and for the scanner bias field. A field is
``sum_k c_k * prod_d cos(pi * k_d * (i_d + 0.5) / size)`` over the low frequencies ``k``
(the constant mode excluded); the 1-D basis is computed once per size, so a field costs a
few small tensor contractions. Written here because scipy/MONAI offer random smooth fields
only as resampling transforms, not as a reusable, recorded set of coefficients.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["cosine_basis", "mode_frequencies", "n_modes", "smooth_field"]


@lru_cache(maxsize=16)
def cosine_basis(size: int, n_freq: int) -> np.ndarray:
    """1-D cosine basis, shape ``(n_freq, size)``, row ``k`` = ``cos(pi * k * (i + 0.5) / size)``.

    Args:
        size: number of samples.
        n_freq: number of frequencies, including the constant ``k = 0``.

    Returns:
        Read-only float32 array.
    """
    i = np.arange(size, dtype=np.float64)
    basis = np.stack([np.cos(np.pi * k * (i + 0.5) / size) for k in range(n_freq)]).astype(np.float32)
    basis.setflags(write=False)
    return basis


def n_modes(ndim: int, n_freq: int) -> int:
    """Number of coefficients of one field component (all frequency tuples except the constant)."""
    return n_freq**ndim - 1


def smooth_field(coeffs: np.ndarray, size: int, ndim: int, n_freq: int) -> np.ndarray:
    """Evaluate ``sum_k coeffs[k] * basis_k`` on a ``size**ndim`` grid.

    Args:
        coeffs: shape ``(n_modes(ndim, n_freq),)``: the coefficients of every non-constant mode,
            in C order of the frequency tuple.
        size: grid edge.
        ndim: 2 or 3.
        n_freq: frequencies per axis (including 0).

    Returns:
        float32 array of shape ``(size,) * ndim``.

    Raises:
        ValueError: ``coeffs`` has the wrong length or ``ndim`` is not 2 or 3.
    """
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    coeffs = np.asarray(coeffs, dtype=np.float32)
    if coeffs.shape != (n_modes(ndim, n_freq),):
        raise ValueError(f"coeffs must have shape ({n_modes(ndim, n_freq)},), got {coeffs.shape}")
    full = np.concatenate([np.zeros(1, np.float32), coeffs]).reshape((n_freq,) * ndim)
    b = cosine_basis(size, n_freq)
    if ndim == 2:
        return b.T @ full @ b
    # contract one axis at a time: (a,b,c) -> (x,b,c) -> (x,y,c) -> (x,y,z)
    out = np.tensordot(b.T, full, axes=(1, 0))
    out = np.tensordot(out, b, axes=(1, 0))  # (x, c, y)
    out = np.tensordot(out, b, axes=(1, 0))  # (x, y, z)
    return np.ascontiguousarray(out)


def mode_frequencies(ndim: int, n_freq: int) -> np.ndarray:
    """Frequency tuples of the non-constant modes, shape ``(n_modes, ndim)``, in coefficient order."""
    grids = np.meshgrid(*([np.arange(n_freq)] * ndim), indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)[1:]
