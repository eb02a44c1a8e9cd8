"""The error a user should see when MONAI, ignite or a data loader wrapped it, and said only once.

MONAI re-raises a transform's error as ``RuntimeError: applying transform <... object at
0x...>`` (and a bundle component's as ``Failed to instantiate component ...``) and keeps the
reader's own message (which file, what is wrong) only in ``__cause__``; a data-loader worker
sends the whole chain back as the text of one new exception. :func:`user_error` finds the
reader's message again. While an engine fails, ignite and MONAI's ``StatsHandler`` also log the
exception, traceback included, before it reaches the command line's handler;
:func:`quiet_engine_errors` keeps those echoes off the console (``medglass --debug`` shows them).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["user_error", "one_line", "quiet_engine_errors", "EngineErrorFilter", "apply_quiet_filter"]

_WRAPPER_PREFIXES = (
    "applying transform",
    "Applying transform",
    "Failed to instantiate component",
    "Failed to evaluate",
)
_WORKER_PREFIX = re.compile(r"^Caught \w+ in DataLoader worker process \d+")
_ERROR_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception)): (?P<message>.+)$")
_USER_ERROR_TYPES = ("ImageReadError", "ValueError", "TypeError", "OSError", "FileNotFoundError", "KeyError")
_ADDRESS = re.compile(r"<(?:[\w.]*\.)?(\w+) object at 0x[0-9a-fA-F]+>")


def _is_wrapper(err: BaseException) -> bool:
    text = str(err)
    return text.startswith(_WRAPPER_PREFIXES) or " object at 0x" in text


def _from_worker_text(err: BaseException) -> BaseException | None:
    """The reader's error named in a data-loader worker's traceback text, or ``None``.

    ``traceback.format_exception`` prints a chain cause first and the outermost error last, so
    the last ``Type: message`` line that is not a MONAI wrapper is the reader's own error (the
    lines above it are what the reader found wrong, in the library's words).
    """
    text = str(err)
    if not _WORKER_PREFIX.match(text):
        return None
    for line in reversed(text.splitlines()):
        found = _ERROR_LINE.match(line.strip())
        if found is None or found["message"].startswith(_WRAPPER_PREFIXES) or " object at 0x" in line:
            continue
        kind = found["type"].rsplit(".", 1)[-1]
        rebuilt = ValueError if kind in _USER_ERROR_TYPES else RuntimeError
        return rebuilt(found["message"] if rebuilt is ValueError else f"{kind}: {found['message']}")
    return None


def user_error(err: BaseException) -> BaseException:
    """The exception a user should see: the cause MONAI's ``apply_transform`` (or ignite) wrapped.

    MONAI re-raises a transform's error as ``RuntimeError: applying transform <... object at
    0x...>`` with the reader's own message (which file, what is wrong) only in ``__cause__``;
    MONAI's bundle parser wraps a component's error as ``Failed to instantiate component``;
    ignite and the data loader wrap it once more. The chain is walked inwards to the first error
    that is not such a wrapper. An error a data-loader *worker* raised comes back as the text of
    its traceback; the reader's error is then rebuilt from that text (as a ``ValueError`` when
    it was one, else a ``RuntimeError`` named after its type).

    Args:
        err: the exception caught.

    Returns:
        The exception to report (``err`` itself when nothing wraps anything).

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
        from_worker = _from_worker_text(current)
        if from_worker is not None:
            return from_worker
        inner = current.__cause__ or current.__context__
        if not _is_wrapper(current) or inner is None:
            return current
        current = inner
    return current


def one_line(err: BaseException, limit: int = 600) -> str:
    """``err``'s message on one line, without object addresses, at most ``limit`` characters.

    Args:
        err: the exception (usually from :func:`user_error`).
        limit: longest message kept; a longer one ends with ``...``.

    Returns:
        The message, or the exception's type name when it has none.

    Example:
        >>> one_line(RuntimeError("failed in <Load object at 0x7f00>\\n  details"))
        'failed in <Load> details'
    """
    text = " ".join(_ADDRESS.sub(r"<\1>", str(err)).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


_ENGINE_ECHOES = (
    "Engine run is terminating due to exception",  # ignite
    "Current run is terminating due to exception",  # ignite
    "Exception: ",  # MONAI StatsHandler.exception_raised
)


class EngineErrorFilter(logging.Filter):
    """Drops an engine's echo of the exception that ends its run; strips other tracebacks.

    ignite logs ``Engine run is terminating due to exception: <message>`` and MONAI's
    ``StatsHandler`` logs ``Exception: <message>`` with the traceback, then the exception goes
    on to whoever called the engine — the command line, which reports it once. Any other
    record that carries a traceback keeps its message and loses the traceback.

    Example:
        >>> record = logging.LogRecord("ignite", logging.ERROR, "", 0, "Exception: x", None, None)
        >>> EngineErrorFilter().filter(record)
        False
    """

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102 - see the class docstring
        if record.levelno < logging.ERROR:
            return True
        if str(record.msg).startswith(_ENGINE_ECHOES):
            return False
        if record.exc_info or record.exc_text or record.stack_info:
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


_ACTIVE: list[EngineErrorFilter] = []


def _handlers() -> list[logging.Handler]:
    """Every handler of every logger known now, and the last-resort handler."""
    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    found = [h for lg in loggers for h in lg.handlers]
    if logging.lastResort is not None:
        found.append(logging.lastResort)
    return list(dict.fromkeys(found))


def apply_quiet_filter() -> None:
    """Put the active :func:`quiet_engine_errors` filter on the handlers that exist now.

    For code that installs logging handlers while a command runs (MONAI's bundle workflow reads
    its ``logging.conf``): call it after the handlers are set up. Does nothing outside
    :func:`quiet_engine_errors`.
    """
    for quiet in _ACTIVE:
        for handler in _handlers():
            if quiet not in handler.filters:
                handler.addFilter(quiet)


@contextmanager
def quiet_engine_errors() -> Iterator[EngineErrorFilter]:
    """Within the block, logging handlers drop engines' echoes of a failing run (see :class:`EngineErrorFilter`).

    The command line wraps each command in it unless ``--debug``: the error is then reported
    once, as one line, by its own handler.

    Yields:
        The filter (removed from every handler on exit).
    """
    quiet = EngineErrorFilter()
    _ACTIVE.append(quiet)
    try:
        apply_quiet_filter()
        yield quiet
    finally:
        _ACTIVE.remove(quiet)
        for handler in _handlers():
            handler.removeFilter(quiet)
