"""A settings dataclass to and from the JSON of a run folder (``config.json``), paths relative to the folder.

The workflows' settings classes (segmentation, synthesis, detection, ...) each write their
``config.json`` the same way: every field as JSON, path fields relative to the run folder so a
moved run tree still finds its inputs, and read back with lists made tuples and unknown names
refused. These two functions are that code once.

Example:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Settings:
    ...     datalist: str
    ...     size: tuple[int, ...] = (8, 8)
    >>> settings_to_json(Settings("/d/c.json"), ("datalist",), relative_to="/runs/r")
    {'datalist': '../../d/c.json', 'size': (8, 8)}
    >>> settings_from_json(Settings, {"datalist": "../c.json", "size": [4, 4]}, ("datalist",), base="/runs/r")
    Settings(datalist=PosixPath('/runs/c.json'), size=(4, 4))
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["settings_to_json", "settings_from_json"]


def settings_to_json(
    settings: Any, path_fields: Sequence[str], relative_to: str | Path | None = None
) -> dict[str, Any]:
    """Every field of a settings dataclass as a JSON-serialisable value.

    Args:
        settings: the dataclass instance.
        path_fields: fields holding paths.
        relative_to: write the path fields relative to this folder (the run folder); ``None``: as given.

    Returns:
        Field name → value (paths as strings).
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if relative_to is not None and f.name in path_fields and value is not None:
            value = os.path.relpath(Path(value).resolve(), Path(relative_to).resolve())
        out[f.name] = str(value) if isinstance(value, Path) else value
    return out


def settings_from_json(
    cls: type, data: Any, path_fields: Sequence[str], base: str | Path | None = None
) -> Any:
    """The settings :func:`settings_to_json` wrote (JSON lists become tuples; unknown names are refused).

    Args:
        cls: the settings dataclass.
        data: field values, e.g. ``json.loads(Path("config.json").read_text())``.
        path_fields: fields holding paths; relative ones are taken relative to ``base``.
        base: the folder the file was read from (``None``: paths as written).

    Returns:
        ``cls(**values)``, validated by the class.

    Raises:
        ValueError: ``data`` is not an object, has an unknown field, or the class refuses a value.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a {cls.__name__} must be a JSON object, got {type(data).__name__}")
    values = dict(data)
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {unknown}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    if base is not None:
        for name in path_fields:
            if values.get(name) is not None and not Path(values[name]).is_absolute():
                values[name] = Path(os.path.normpath(Path(base) / values[name]))
    return cls(**values)
