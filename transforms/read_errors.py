"""The one exception type for files that cannot be read.

Every reader raises :class:`ImageReadError` with the file and the reason, so that the
command line can print one line and folder ingestion can write one ``rejects.csv`` row.
"""

from __future__ import annotations

from os import PathLike

__all__ = ["ImageReadError"]


class ImageReadError(ValueError):
    """A file (or series) that cannot be used as an image, with the reason.

    Args:
        path: the file or folder that failed.
        reason: one human-readable line saying what is wrong.

    Example:
        >>> str(ImageReadError("scan.dcm", "empty file (0 bytes)"))
        'scan.dcm: empty file (0 bytes)'
    """

    def __init__(self, path: str | PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # one line, always
        super().__init__(f"{self.path}: {self.reason}")
