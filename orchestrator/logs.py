"""Structured logs: one JSON object per line, with the onboarding, cluster,
step and workflow as fields. Secret values the daemon knows of are masked as a
last line of defence; the code does not log them in the first place.

Whatever else would write to stderr goes through the same handler, so the stream
stays one JSON object a line: Python warnings, an exception that escapes a thread or
the main program, and uvicorn's own loggers (their ANSI-coloured twin of each message
is dropped). A line written while an API request is served carries its ``request_id``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

#: attributes every LogRecord has; everything else was passed in ``extra``; uvicorn's
#: ``color_message`` is its message again with ANSI colours
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}
#: the id of the API request being served (set by ``apirequests``), added to each line
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
LEVELS = ("debug", "info", "warning", "error", "critical")
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["auto", "json", "text"]
_secrets: set[str] = set()
#: the secrets, longest first: a short one inside a long one must not hide the long
#: one's match and leave the rest of it readable
_longest_first: tuple[str, ...] = ()
MASK = "***"


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it would appear in a log line."""
    global _longest_first
    if value and len(value) >= 6 and value not in _secrets:
        _secrets.add(value)
        _longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def mask(text: str) -> str:
    for secret in _longest_first:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the line carries besides time, level, logger and message."""
    found = {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD and not key.startswith("_")
    }
    rid = request_id.get()
    if rid is not None:
        found.setdefault("request_id", rid)
    return found


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return mask(json.dumps(entry, default=str))


class TextFormatter(logging.Formatter):
    """For a terminal: the message, then the fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        time = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        line = f"{time} {record.levelname:<7} {record.getMessage()}"
        if fields:
            line += f"  {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return mask(line)


def configure(
    *, level: str = "INFO", json_lines: bool | None = None, log_format: LogFormat | None = None
) -> bool:
    """Log to stderr at ``level``: JSON lines unless stderr is a terminal (``log_format``
    ``json`` or ``text`` decides instead; ``json_lines`` is the older way to say it).
    Answers whether the lines are JSON (then nothing else may be written to stderr)."""
    if log_format in ("json", "text"):
        json_lines = log_format == "json"
    use_json = not sys.stderr.isatty() if json_lines is None else json_lines
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # no line shows the caller's file, thread or process: not looked up for each record
    # (the optimisations the logging HOWTO names; a tenth of a line's cost)
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    for noisy in ("httpx", "httpcore", "apscheduler", "uvicorn.access", "transitions", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for own in ("uvicorn", "uvicorn.error"):
        # uvicorn's loggers go through the root handler, never a handler of their own
        logging.getLogger(own).handlers[:] = []
        logging.getLogger(own).propagate = True
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_exception
    return use_json


def _log_uncaught(
    kind: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, trace)
        return
    logging.getLogger("orchestrator").critical("uncaught exception", exc_info=(kind, error, trace))


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    error = args.exc_value or args.exc_type()
    logging.getLogger("orchestrator").error(
        "uncaught exception in a thread",
        exc_info=(args.exc_type, error, args.exc_traceback),
        extra={"in_thread": args.thread.name if args.thread else None},
    )
