"""Plain-text tables and ages for the CLI, in the manner of ``kubectl get``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

#: shown for an empty cell, so columns stay readable
NONE = "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns left-aligned, separated by three spaces; ``None`` shows as ``-``."""
    cells = [[NONE if v is None or v == "" else str(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for index, value in enumerate(row):
            widths[index] = max(widths[index], len(value))
    lines = [headers, *cells]
    return "\n".join(
        "   ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def fields(pairs: Sequence[tuple[str, object]]) -> str:
    """A key/value block, keys aligned."""
    width = max((len(key) for key, _ in pairs), default=0) + 1
    return "\n".join(
        f"{key + ':':<{width}} {NONE if value is None or value == '' else value}"
        for key, value in pairs
    )


def duration(seconds: float) -> str:
    """A short human duration: 42s, 5m, 2h, 3d (the largest unit that fits)."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def age(when: datetime | None, *, now: datetime) -> str:
    """How long ago ``when`` was, or ``in 30s`` for a time still ahead."""
    if when is None:
        return NONE
    seconds = (now - when).total_seconds()
    return duration(seconds) if seconds >= 0 else f"in {duration(-seconds)}"


def relative(when: datetime | None, *, now: datetime) -> str | None:
    """``5m ago`` or ``in 30s``; None stays None."""
    if when is None:
        return None
    shown = age(when, now=now)
    return shown if shown.startswith("in ") else f"{shown} ago"


def shorten(text: str | None, width: int) -> str | None:
    """First line of ``text``, cut to ``width`` characters with an ellipsis."""
    if text is None:
        return None
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"
