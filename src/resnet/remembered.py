"""Choices measured once per machine and remembered: one small JSON file each under the user's cache.

``resnet.optimize`` keeps its engine choice in ``optimize-choices.json``, training its precision in
``train-precision.json`` and whether to compile in ``train-compile.json``, in ``$RESNET_CACHE`` or else
``~/.cache/resnet/``. Entries are keyed by a hash of everything the choice depends on (the CPU line among
it), so another machine never reuses them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from resnet import report
from resnet.io import atomic_write_text


def cache_file(name: str) -> Path:
    root = os.environ.get("RESNET_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "resnet")
    return Path(root) / name


def key(*parts: object) -> str:
    """The entry key for a choice that depends on ``parts`` (the hardware line first, by convention)."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def read(path: Path) -> dict[str, dict[str, Any]]:
    """The remembered entries; {} when there are none yet or the file is damaged (the choice is simply re-measured)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` (stamped with the time) under ``key``; a read-only home only means it is not remembered."""
    entries = read(path)
    entries[key] = {**entry, "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    try:
        atomic_write_text(path, json.dumps(entries, indent=1))
    except OSError as exc:
        report.debug(f"could not remember the choice in {path} ({exc})")
