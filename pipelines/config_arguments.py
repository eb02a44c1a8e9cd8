"""Command-line flags generated from a settings dataclass, so each setting has one home.

:func:`add_config_arguments` adds one ``--field-name`` flag per field of a dataclass such as
:class:`~pipelines.training_config.TrainConfig`: its type from the field's annotation, its
choices from a table the dataclass module keeps, its help from the dataclass docstring's
``Args:`` entry and the default shown from the dataclass itself. Every generated flag defaults to
``None`` (not given), and :func:`config_values` returns only the flags given, so the dataclass's
own defaults apply to the rest: a new field is a new flag without touching the command line,
and the command line cannot disagree with the config about a default.

argparse has no dataclass support and MONAI's ``ConfigParser`` reads JSON/YAML, not flags;
this is the thin bridge between the two (about 100 lines).
"""

from __future__ import annotations

import argparse
import dataclasses
import pydoc
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["field_docs", "add_config_arguments", "config_values", "config_from_section", "settings_class"]

_ROLE = re.compile(r":\w+:`(~?)([^`]+)`")  # :class:`~networks.X` -> X, :mod:`a.b` -> a.b


def _plain(text: str) -> str:
    """Docstring markup as plain text for ``--help``."""

    def target(found: re.Match) -> str:
        return found[2].rsplit(".", 1)[-1] if found[1] else found[2]

    return " ".join(_ROLE.sub(target, text).replace("``", "").split())


def field_docs(cls: type) -> dict[str, str]:
    """Each field's entry of the ``Args:`` section of ``cls``'s Google-style docstring, as plain text.

    Args:
        cls: a documented class.

    Returns:
        Field name → its description (markup removed); fields without an entry are absent.

    Example:
        >>> class Settings:
        ...     '''Settings.
        ...
        ...     Args:
        ...         lr: learning rate of :class:`~torch.optim.Adam`, ``> 0``.
        ...         epochs: passes over
        ...             the data.
        ...     '''
        >>> field_docs(Settings)
        {'lr': 'learning rate of Adam, > 0.', 'epochs': 'passes over the data.'}
    """
    docs: dict[str, list[str]] = {}
    inside, indent, current = False, None, None
    for line in (cls.__doc__ or "").splitlines():
        stripped = line.strip()
        if stripped == "Args:":
            inside, indent = True, None
            continue
        if not inside:
            continue
        if not stripped:
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        if depth < indent:  # the next section (Raises:, ...)
            break
        found = re.match(r"(\w+)(?: \([^)]*\))?: (.*)", stripped)
        if depth == indent and found:
            current = found[1]
            docs[current] = [found[2]]
        elif current is not None:
            docs[current].append(stripped)
    return {name: _plain(" ".join(lines)) for name, lines in docs.items()}


def _argument(annotation: Any) -> dict[str, Any]:
    """argparse keywords for a field annotation (``int``, ``float | None``, ``tuple[int, ...]``, ...)."""
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        if any(a is str for a in options):  # str | Path (| None): a path or a name
            return {"type": str}
        annotation = options[0] if len(options) == 1 else annotation
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if annotation in (int, float, str):
        return {"type": annotation}
    if typing.get_origin(annotation) is tuple:
        items = typing.get_args(annotation)
        if len(items) == 2 and items[1] is Ellipsis:
            return {"type": items[0], "nargs": "+", "metavar": "N"}
        return {"type": items[0], "nargs": len(items), "metavar": tuple(f"V{i}" for i in range(len(items)))}
    raise TypeError(f"annotation {annotation!r} has no command-line form: add the field to skip")


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    skip: Iterable[str] = (),
    choices: Mapping[str, Iterable[Any]] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Add a ``--field-name`` flag for each field of the dataclass ``cls`` not in ``skip``.

    Args:
        parser: the (sub)command's parser.
        cls: the settings dataclass (its docstring's ``Args:`` entries become the help).
        skip: fields the command sets itself (or does not offer).
        choices: field → allowed values (argparse then refuses others before any work starts).
        defaults: field → the command's own default where it differs from the dataclass's
            (shown in the help and returned by :func:`config_values` when the flag is not given).

    Raises:
        TypeError: ``cls`` is not a dataclass, or a field's type has no command-line form.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"cls must be a dataclass, got {cls!r}")
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    choices = dict(choices or {})
    defaults = dict(defaults or {})
    skipped = set(skip)
    offered = [f for f in dataclasses.fields(cls) if f.name not in skipped]
    for field in offered:
        keywords = _argument(hints[field.name])
        if field.name in choices:
            keywords["choices"] = tuple(choices[field.name])
        if field.name in defaults:
            default = defaults[field.name]
        elif field.default is not dataclasses.MISSING:
            default = field.default
        else:
            default = None
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = docs.get(field.name, field.name.replace("_", " ")).replace("%", "%%")
        parser.add_argument(
            "--" + field.name.replace("_", "-"),
            dest=field.name,
            default=None,
            help=f"{help_text} [default: {shown}]",
            **keywords,
        )
    parser.set_defaults(
        _config_fields=tuple(f.name for f in offered),
        **{f"_config_default_{k}": v for k, v in defaults.items()},
    )


def config_values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` given on the command line (and the command's own defaults).

    Args:
        args: the parsed arguments.
        cls: the dataclass passed to :func:`add_config_arguments`.

    Returns:
        Field name → value, ``tuple`` for flags taking several values; fields not given, and
        fields :func:`add_config_arguments` did not offer, are absent (the dataclass's default applies).
    """
    values = {}
    offered = getattr(args, "_config_fields", ())
    for field in dataclasses.fields(cls):
        if field.name not in offered:
            continue
        value = getattr(args, field.name, None)
        if value is None:
            value = getattr(args, f"_config_default_{field.name}", None)
        if value is not None:
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return values


def settings_class(cls: type | str) -> type:
    """The dataclass ``cls`` names (a class, or its dotted path as bundle configs write it).

    Raises:
        TypeError: the path names nothing, or not a dataclass.
    """
    found = pydoc.locate(cls) if isinstance(cls, str) else cls
    if not (isinstance(found, type) and dataclasses.is_dataclass(found)):
        raise TypeError(f"cls must be a settings dataclass or its dotted path, got {cls!r}")
    return found


def config_from_section(
    cls: type | str, section: Mapping[str, Any], name: str = "train", **fixed: Any
) -> Any:
    """A settings dataclass from a bundle config section that holds only what the bundle changes.

    Args:
        cls: the dataclass (``TrainConfig``, ``SynthesisConfig``, ...) or its dotted path
            (``"pipelines.training_config.TrainConfig"``, as a bundle config names it).
        section: the parsed section; keys starting with ``_`` (``_doc``) are skipped, lists of a
            tuple-typed field become tuples.
        name: the section's id in the bundle, for error messages (``train#<key>``).
        **fixed: fields the bundle sets from other ids (``datalist``, ``out_dir``).

    Returns:
        ``cls(**section, **fixed)``, validated by the dataclass; other fields keep its defaults.

    Raises:
        ValueError: a key that is no field of ``cls`` (named as ``<name>#<key>``), or whatever
            the dataclass refuses.

    Example:
        >>> @dataclasses.dataclass
        ... class Settings:
        ...     size: tuple[int, ...] = (8, 8)
        ...     lr: float = 0.1
        >>> config_from_section(Settings, {"_doc": {}, "size": [4, 4]})
        Settings(size=(4, 4), lr=0.1)
    """
    cls = settings_class(cls)
    if not isinstance(section, Mapping):
        raise ValueError(f"{name} must be an object of {cls.__name__} fields, got {type(section).__name__}")
    values = {k: v for k, v in section.items() if not str(k).startswith("_")}
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known - set(fixed))
    if unknown:
        raise ValueError(
            f"{name}#{unknown[0]} is not a setting of {cls.__name__} (unknown: {unknown}; known: {sorted(known)})"
        )
    values.update(fixed)
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if isinstance(value, list) and typing.get_origin(hints.get(key)) in (
            tuple,
            typing.Union,
            types.UnionType,
        ):
            values[key] = tuple(value)
    return cls(**values)
