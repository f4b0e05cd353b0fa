"""Crash-safe file writing: a write either completes or leaves the previous file untouched.

Every output of the library goes through ``atomic_write``. Two promises the command line relies on:

- Missing parent folders are created (``-o new/folder/model.onnx`` works), as ``--out`` does for a
  run folder; a path that cannot be written is a ``ResNetError`` naming that path and the reason,
  never the temporary file's name.
- The file gets the mode a plain ``open(path, "w")`` would give it (0666 less the umask, i.e. usually
  0644), whatever the writer did to the temporary file (mkstemp makes it 0600; some writers, like
  safetensors', replace it with a file of their own).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from resnet.errors import ResNetError


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (setting it races with threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)  # no /proc (macOS): the only way is to set it and put it back at once
    os.umask(umask)
    return umask


def _blocking_file(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` that exists but is not a folder (so nothing can go under it)."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _cannot_write(path: Path, exc: OSError) -> ResNetError:
    blocker = _blocking_file(path)
    if blocker is not None or exc.errno in (errno.EEXIST, errno.ENOTDIR):
        where = blocker or path.parent
        return ResNetError(f"cannot write {path}: {where} is a file, not a folder")
    reason = exc.strerror or type(exc).__name__  # strerror never holds the temporary file's name
    if exc.errno == errno.ENOENT and path.parent.is_dir():  # e.g. /proc: the folder exists but takes no files
        return ResNetError(f"cannot write {path}: {path.parent} does not accept new files ({reason})")
    return ResNetError(f"cannot write {path}: {reason}")


def ensure_parent(path: str | os.PathLike[str]) -> Path:
    """Create ``path``'s missing parent folders; a ``ResNetError`` naming ``path`` when that is impossible."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    return path


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)``, fsync the result, then rename it over ``path``.

    A kill at any moment leaves either the old file or the new one, never a torn file: the data
    goes to a temporary file in the same directory (same filesystem, so the rename is atomic) and is
    flushed to disk before the rename; the directory is fsynced so the rename itself survives a crash.
    Parent folders are created; an ``OSError`` while writing becomes a ``ResNetError`` naming ``path``.
    """
    path = ensure_parent(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # Set the mode on what is renamed: the writer may have replaced the file mkstemp made.
        os.chmod(tmp, 0o666 & ~current_umask())
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _cannot_write(path, exc) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return path
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))
