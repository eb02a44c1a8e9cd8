"""The key vocabulary, re-exported from :mod:`networks.keys` (its home: the lowest layer)."""

from __future__ import annotations

from networks.keys import Keys

__all__ = ["Keys"]
