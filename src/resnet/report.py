"""The single place the library speaks to a person: log lines, progress bars, tables, results.

Library code never calls ``print``. It calls ``info``/``warn`` for messages (routed through the
``resnet`` logger, so a library user can silence or redirect them), ``progress`` for a bar that
shows only on a terminal, and ``result``/``table`` for the output a command exists to produce
(written to stdout, so it can be piped).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger("resnet")

_quiet = False


def configure(*, quiet: bool = False, verbose: bool = False) -> None:
    """Set up output for the command line: messages on stderr, results on stdout."""
    global _quiet
    _quiet = quiet
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO))
    logger.propagate = False


def ensure_console() -> None:
    """Show messages on stderr for a library user who set up no logging (Keras-style ``verbose=1``)."""
    if not logger.handlers and not logging.getLogger().handlers:
        configure()


def info(message: str) -> None:
    logger.info(message)


def warn(message: str) -> None:
    logger.warning("warning: " + message)


def debug(message: str) -> None:
    logger.debug(message)


def is_terminal() -> bool:
    return sys.stderr.isatty() and not _quiet


def result(text: str) -> None:
    """Write a command's result (a line, a table, JSON) to stdout."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def result_json(data: Any) -> None:
    result(json.dumps(data, indent=2, default=str))


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Render rows as a table on stdout (rich on a terminal, aligned plain text otherwise)."""
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title)
        for c in columns:
            t.add_column(str(c))
        for r in rows:
            t.add_row(*[str(v) for v in r])
        Console().print(t)
        return
    cells = [[str(c) for c in columns]] + [[str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [title] if title else []
    for n, row in enumerate(cells):
        lines.append("  ".join(v.rjust(w) if n and _numeric(v) else v.ljust(w) for v, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    result("\n".join(lines))


def _numeric(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%GMK"))
        return True
    except ValueError:
        return False


class _Bar:
    """A progress bar handle; ``advance`` is cheap and does nothing when no bar is shown."""

    def __init__(self, progress: Any, task: Any) -> None:
        self._progress = progress
        self._task = task

    def advance(self, n: int = 1, **fields: Any) -> None:
        if self._progress is not None:
            text = "  ".join(f"{k} {_fmt(v)}" for k, v in fields.items())
            self._progress.update(self._task, advance=n, info=text)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


@contextmanager
def progress(total: int | None, description: str) -> Iterator[_Bar]:
    """A progress bar with ETA on a terminal; silent otherwise (callers log per-epoch lines)."""
    if not is_terminal():
        yield _Bar(None, None)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total, info="")
        yield _Bar(bar, task)
