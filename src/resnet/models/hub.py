"""Where a published weight file comes from, and the hash check before it is used.

In order: an explicit path; the cache (``$RESNET_CACHE``, else torch hub's ``checkpoints/`` folder
under ``$TORCH_HOME``, where torchvision keeps the same files under the same names, so a file it
downloaded is reused); otherwise a download into the cache, written atomically with a progress bar.
Every file's SHA-256 is checked against the published one (or its published prefix) before use; a
mismatch is refused and the file is not used. A weight set published without a hash is trusted on
first use: its SHA-256 is reported and recorded in ``<file>.sha256`` beside the cached file, and
every later use must match that record.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from resnet import report
from resnet.errors import ResNetError
from resnet.io import atomic_write, atomic_write_text
from resnet.models.pretrained import PretrainedCfg

CACHE_ENV = "RESNET_CACHE"
_CHUNK = 1 << 20
_TIMEOUT_S = 60.0  # per blocking read: a stalled connection ends with the offline message, not a hang


def cache_dir() -> Path:
    """``$RESNET_CACHE``, else torch hub's checkpoint folder (``$TORCH_HOME/hub/checkpoints``)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _record_of(cached: Path) -> Path:
    return cached.with_name(cached.name + ".sha256")


def check_hash(cfg: PretrainedCfg, path: Path, actual: str, *, cached: Path) -> None:
    """Refuse ``path`` unless its SHA-256 ``actual`` is the published one (or, unpublished, the recorded one)."""
    if cfg.sha256:
        if not actual.startswith(cfg.sha256.lower()):
            raise ResNetError(f"{path} has SHA-256 {actual} but {cfg.name} is published with {cfg.sha256}; "
                              "the file was not used (delete it to download it again)")
        return
    record = _record_of(cached)
    if record.is_file():
        expected = record.read_text(encoding="utf-8").split()[0]
        if actual != expected:
            raise ResNetError(f"{path} has SHA-256 {actual} but {expected} was recorded for {cfg.name} on first use "
                              f"({record}); the file was not used")
        return
    atomic_write_text(record, f"{actual}  {cached.name}\n")
    report.info(f"{cfg.name} is published without a hash: recorded SHA-256 {actual} in {record}; later uses are checked against it")


def download(url: str, dest: Path, *, check: Callable[[Path, str], None] | None = None) -> str:
    """Fetch ``url`` into ``dest`` atomically; ``check(tmp, sha256)`` may refuse it before it lands. Returns its SHA-256."""
    report.info(f"downloading {url} to {dest}")
    digest = hashlib.sha256()

    def fetch(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with report.progress(total, f"downloading {dest.name}") as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.advance(len(chunk))

    def write(tmp: Path) -> None:
        # Network failures are OSErrors too; said here, so atomic_write does not report them as a write failure.
        try:
            fetch(tmp)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ResNetError(f"cannot download {url} ({reason}); if this machine is offline, put the file at {dest}") from None
        if check is not None:
            check(tmp, digest.hexdigest())

    atomic_write(dest, write)
    return digest.hexdigest()


def weights_file(cfg: PretrainedCfg, path: str | os.PathLike[str] | None = None) -> tuple[Path, str]:
    """The hash-checked file of ``cfg`` and its SHA-256: ``path`` if given, else the cache, else a download."""
    cached = cache_dir() / cfg.file_name
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ResNetError(f"weights file not found: {file}")
    elif cached.is_file():
        file = cached
    else:
        def refuse_mismatch(tmp: Path, actual: str) -> None:
            if cfg.sha256 and not actual.startswith(cfg.sha256.lower()):
                raise ResNetError(f"downloaded {cfg.url} has SHA-256 {actual} but {cfg.name} is published with "
                                  f"{cfg.sha256}; it was not saved to {cached}")

        actual = download(cfg.url, cached, check=refuse_mismatch)
        check_hash(cfg, cached, actual, cached=cached)
        return cached, actual
    actual = file_sha256(file)
    check_hash(cfg, file, actual, cached=cached)
    return file, actual
