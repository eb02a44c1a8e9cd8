"""The error a user should see when MONAI, ignite or a data loader wrapped it.

MONAI re-raises a transform's error as ``RuntimeError: applying transform <... object at
0x...>`` and keeps the reader's own message (which file, what is wrong) only in ``__cause__``;
the command line and the analysis loaders unwrap it with :func:`user_error`.
"""

from __future__ import annotations

__all__ = ["user_error"]

_WRAPPER_PREFIXES = ("applying transform", "Applying transform")


def user_error(err: BaseException) -> BaseException:
    """The exception a user should see: the cause MONAI's ``apply_transform`` (or ignite) wrapped.

    MONAI re-raises a transform's error as ``RuntimeError: applying transform <... object at
    0x...>`` with the reader's own message (which file, what is wrong) only in ``__cause__``;
    ignite and the data loader wrap it once more. The chain is walked to the innermost error
    that is not such a wrapper.

    Example:
        >>> try:
        ...     try:
        ...         raise ValueError("scan.png: empty file (0 bytes)")
        ...     except ValueError as inner:
        ...         raise RuntimeError("applying transform <Load object at 0x7f00>") from inner
        ... except RuntimeError as outer:
        ...     print(user_error(outer))
        scan.png: empty file (0 bytes)
    """
    seen: set[int] = set()
    current: BaseException = err
    while id(current) not in seen:
        seen.add(id(current))
        wrapped = str(current).startswith(_WRAPPER_PREFIXES) or " object at 0x" in str(current)
        inner = current.__cause__ or current.__context__
        if not wrapped or inner is None:
            return current
        current = inner
    return current
