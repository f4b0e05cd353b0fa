"""Where named datasets are looked for, and the one error that says where we looked."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from resnet import report
from resnet.errors import ResNetError

SYSTEM_DIR = Path("/usr/share/datasets")  # Debian's dataset-* packages install here
CACHE_DIR = Path("~/.cache/resnet")


def search_roots(data_dir: str | os.PathLike[str] | None, dataset: str) -> list[Path]:
    """--data-dir, then $RESNET_DATA, then /usr/share/datasets/<dataset>, then ~/.cache/resnet."""
    roots = []
    if data_dir:
        roots.append(Path(data_dir).expanduser())
    if os.environ.get("RESNET_DATA"):
        roots.append(Path(os.environ["RESNET_DATA"]).expanduser())
    roots.append(SYSTEM_DIR / dataset)
    roots.append(CACHE_DIR.expanduser())
    return roots


def find(
    dataset: str,
    roots: Sequence[Path],
    subdirs: Sequence[str],
    is_complete: Callable[[Path], bool],
    given: str | os.PathLike[str] | None = None,
) -> Path | None:
    """The first ``root/subdir`` (in that order) that holds a complete copy, or None.

    ``given`` is the folder the user named (--data-dir): finding the set elsewhere is said aloud.
    """
    for root in roots:
        for sub in subdirs:
            candidate = root / sub if sub else root
            if candidate.is_dir() and is_complete(candidate):
                if given is not None and root != Path(given).expanduser():
                    report.warn(f"{dataset} is not in {given}; using {candidate}")
                report.debug(f"{dataset}: using {candidate}")
                return candidate
    return None


def not_found(dataset: str, roots: Sequence[Path], subdirs: Sequence[str], expected: str, how: str) -> ResNetError:
    looked = ", ".join(str(r / s if s else r) for r in roots for s in subdirs)
    return ResNetError(
        f"{dataset} not found; looked in: {looked}. Expected {expected}. {how}; or pass --download (needs a network), "
        f"or point --data-dir (or $RESNET_DATA) at a folder holding those files"
    )


def download_root(data_dir: str | os.PathLike[str] | None) -> Path:
    return Path(data_dir).expanduser() if data_dir else CACHE_DIR.expanduser()


def torchvision_download(dataset: str, data_dir: str | os.PathLike[str] | None) -> None:
    """Fetch ``dataset`` with torchvision's downloader (only ever on an explicit --download)."""
    import torchvision.datasets as tvd

    root = download_root(data_dir)
    factory = {"fashion-mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[dataset]
    report.info(f"downloading {dataset} to {root} ...")
    try:
        for train in (True, False):
            factory(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types (URLError, socket, HTTP, checksum)
        raise ResNetError(f"downloading {dataset} to {root} failed: {exc}") from None
