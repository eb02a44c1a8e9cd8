"""Read MONAI datalists for training: resolve paths, validate records, hide labels for semi-supervision.

A datalist is the JSON written by ``medglass ingest`` and ``medglass phantom``: sections
(``training``, ``validation``, ``test``) of records with ``image`` (and optionally ``mask``) paths
relative to the datalist's folder and an integer ``label`` (``-1`` = unlabelled).

Example:
    >>> records = load_datalist("runs/demo/cohort/datalist.json", "training")  # doctest: +SKIP
    >>> check_labels(records, num_classes=2)  # doctest: +SKIP
    >>> semi = mask_labels(records, label_fraction=0.1, seed=0)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from numbers import Integral
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from transforms.keys import Keys

__all__ = [
    "PATH_KEYS",
    "load_datalist",
    "check_labels",
    "mask_labels",
    "resolve_paths",
    "read_section",
    "UNLABELLED",
]

PATH_KEYS: tuple[str, ...] = (Keys.IMAGE, Keys.MASK)
"""Record keys whose values are file paths (or lists of them) resolved against the datalist folder."""

UNLABELLED = -1
"""Label value of an image without a label (semi-supervised training)."""


def _resolve_one(value: str, root: Path) -> tuple[str, Path]:
    """Resolve one path (keeping an ``npz#split/index`` suffix); returns (reference, file to check)."""
    file_part, sep, fragment = value.partition("#")
    path = Path(file_part).expanduser()
    if not path.is_absolute():
        path = root / path
    return str(path) + (sep + fragment if sep else ""), path


def read_section(path: str | PathLike, section: str, required: bool = True) -> list[Any]:
    """The raw items of one section of a datalist JSON file.

    Args:
        path: the datalist file.
        section: the section name.
        required: raise when the section is missing (else return ``[]``).

    Returns:
        The section's list, non-empty (``[]`` only for a missing, not required section).

    Raises:
        ValueError: unreadable file, not an object of sections, a missing (required), non-list or
            empty section; the message names the datalist and the section.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"datalist {path}: file not found")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"datalist {path}: not a readable JSON file ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"datalist {path}: expected a JSON object with sections, got {type(data).__name__}")
    if section not in data:
        if not required:
            return []
        sections = sorted(k for k, v in data.items() if isinstance(v, list))
        raise ValueError(
            f"datalist {path}: no section {section!r} (sections: {', '.join(sections) or 'none'})"
        )
    items = data[section]
    if not isinstance(items, list):
        raise ValueError(f"datalist {path}: section {section!r} must be a list, got {type(items).__name__}")
    if not items:
        raise ValueError(f"datalist {path}: section {section!r} is empty")
    return items


def resolve_paths(value: Any, root: Path, where: str) -> Any:
    """A record's path (or list of paths) resolved against the datalist folder ``root``.

    Args:
        value: the path as written in the record, or a list of them.
        root: the datalist's folder.
        where: how to name the record in an error (``"d.json training record 3 image"``).

    Returns:
        The resolved path(s), as the record should hold them.

    Raises:
        ValueError: a file that does not exist, or a value that is not a path (named with ``where``).
    """
    if isinstance(value, str):
        ref, path = _resolve_one(value, root)
        if not path.exists():
            raise ValueError(f"{where}: file not found: {path}")
        return ref
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return [resolve_paths(v, root, where) for v in value]
    raise ValueError(f"{where}: expected a path or a list of paths, got {type(value).__name__} {value!r}")


def load_datalist(path: str | PathLike, section: str = "training", required: bool = True) -> list[dict]:
    """Load one section of a datalist with its image/mask paths resolved and checked.

    Args:
        path: the datalist JSON file.
        section: ``"training"``, ``"validation"``, ``"test"`` or any other list-valued key.
        required: raise when the section is missing; with ``False`` a missing section gives ``[]``
            (an existing but empty section is always an error).

    Returns:
        New record dicts (the file is not changed) whose ``image``/``mask`` values are absolute
        paths (lists stay lists; ``file.npz#train/0`` references keep their suffix).

    Raises:
        ValueError: unreadable datalist, a missing (required) or empty section, a record that is
            not an object or has no ``image``, or a referenced file that does not exist; the
            message names the datalist and the section.
    """
    path = Path(path)
    items = read_section(path, section, required)
    if not items:
        return []
    root = path.parent
    records = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or Keys.IMAGE not in item:
            raise ValueError(f"datalist {path}: section {section!r}: record {i} has no 'image'")
        record = dict(item)
        name = record.get(Keys.ID, i)
        for key in PATH_KEYS:
            if key in record and record[key] is not None:
                where = f"datalist {path}: section {section!r}: record {name!r} {key}"
                record[key] = resolve_paths(record[key], root, where)
        records.append(record)
    return records


def _record_name(record: dict, index: int) -> str:
    return repr(record.get(Keys.ID, f"#{index}"))


def check_labels(records: Sequence[dict], num_classes: int, allow_unlabelled: bool = True) -> None:
    """Check that every record's ``label`` is an integer class index.

    Args:
        records: datalist records.
        num_classes: labels must lie in ``[0, num_classes)``.
        allow_unlabelled: accept ``-1`` (unlabelled) and records without a ``label``.

    Raises:
        ValueError: a label outside the range, not an integer, or missing/``-1`` when not
            allowed; the message names the record id and the value.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    for i, record in enumerate(records):
        label = record.get(Keys.LABEL, UNLABELLED)
        is_int = isinstance(label, Integral) and not isinstance(label, bool)
        if is_int and label == UNLABELLED:
            if not allow_unlabelled:
                raise ValueError(f"record {_record_name(record, i)}: a label is required, got {label!r}")
            continue
        if not is_int or not 0 <= label < num_classes:
            raise ValueError(
                f"record {_record_name(record, i)}: label must be an int in [0, {num_classes}), got {label!r}"
            )


def mask_labels(records: Sequence[dict], label_fraction: float, seed: int = 0) -> list[dict]:
    """Keep the label on a deterministic, class-stratified fraction of records; set the rest to -1.

    In each class, ``floor(label_fraction * n_class + 0.5)`` records keep their label (chosen by
    a permutation drawn from ``seed``); records already unlabelled stay unlabelled.

    Args:
        records: datalist records with integer labels (``-1`` or missing = unlabelled).
        label_fraction: fraction in ``[0, 1]`` of each class that keeps its label.
        seed: seed of the choice (same records + seed → same choice).

    Returns:
        New record dicts (the input is not changed), in the input order.

    Raises:
        ValueError: ``label_fraction`` outside [0, 1].

    Example:
        >>> recs = [{"id": i, "label": i % 2} for i in range(8)]
        >>> [r["label"] for r in mask_labels(recs, 0.5, seed=0)].count(-1)
        4
    """
    if isinstance(label_fraction, bool) or not 0.0 <= float(label_fraction) <= 1.0:
        raise ValueError(f"label_fraction must be in [0, 1], got {label_fraction!r}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        label = record.get(Keys.LABEL, UNLABELLED)
        if label != UNLABELLED:
            by_class[int(label)].append(i)
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    for label in sorted(by_class):
        indices = by_class[label]
        n_keep = int(math.floor(label_fraction * len(indices) + 0.5))
        keep.update(indices[j] for j in rng.permutation(len(indices))[:n_keep])
    out = []
    for i, record in enumerate(records):
        new = dict(record)
        if i not in keep:
            new[Keys.LABEL] = UNLABELLED
        out.append(new)
    return out
