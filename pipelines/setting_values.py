"""Type checks shared by the workflows' settings dataclasses (``bool`` is not a number there)."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

__all__ = ["is_int", "is_real"]


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer and not a ``bool``.

    Example:
        >>> is_int(3), is_int(True), is_int(3.0)
        (True, False, False)
    """
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number (integers included) and not a ``bool``.

    Example:
        >>> is_real(0.5), is_real(2), is_real(False)
        (True, True, False)
    """
    return isinstance(value, Real) and not isinstance(value, bool)
