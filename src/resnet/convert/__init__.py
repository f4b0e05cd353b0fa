"""Weights from other frameworks: ``import_weights`` reads a file into the registered variant that
reproduces its numerics; ``export_weights`` writes one of ours back into another framework's format.

Each source is a module here exposing ``detect(path) -> bool`` and ``read(path) -> Imported``
(``keras``, ``paddle``, ``tfslim``, and ``pytorch`` for torchvision/timm checkpoints); a module that can
write its format back also exposes ``write(model, path)``.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from resnet.convert.base import Imported
from resnet.errors import ResNetError

PathLike = str | Path
# Source name -> module under resnet.convert, in the order "auto" tries them: the specific formats
# first (a .keras file and a Paddle pickle would otherwise pass for PyTorch files).
SOURCES = {"keras": "keras", "paddle": "paddle", "tf-slim": "tfslim", "torchvision": "pytorch", "timm": "pytorch"}
TARGETS = {"keras": "keras", "paddle": "paddle"}


def _module(source: str) -> ModuleType | None:
    """The reader module of a source, or None where it is not installed on this branch/build."""
    try:
        return importlib.import_module(f"resnet.convert.{SOURCES.get(source) or TARGETS[source]}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("resnet.convert."):
            return None
        raise


def available_sources() -> list[str]:
    return [s for s in SOURCES if _module(s) is not None]


def weights_file(path: PathLike) -> Path:
    """The file to read: ``path`` itself, or for a TF-slim checkpoint prefix (``model.ckpt``) its ``.index``."""
    path = Path(path)
    if path.exists():
        return path
    from resnet.convert.tfcheckpoint import index_path

    bundle = index_path(path)
    if bundle is None:
        raise ResNetError(f"file not found: {path}")
    return bundle


def detect_source(path: PathLike) -> str:
    """The source framework of a file, from its content (``resnet`` checkpoints count as torchvision)."""
    path = weights_file(path)
    seen: set[str] = set()
    for source, module_name in SOURCES.items():
        module = _module(source)
        if module is None or module_name in seen:
            continue
        seen.add(module_name)
        if module.detect(path):
            return source
    raise ResNetError(f"{path}: not a weights file of any known source ({', '.join(available_sources())}); pass --from to say which")


def read(path: PathLike, source: str = "auto", *, model: str | None = None) -> Imported:
    """The file as an ``Imported`` record (architecture, options, our state dict, class names)."""
    if source == "auto":
        source = detect_source(path)
    if source not in SOURCES:
        raise ResNetError(f"unknown source '{source}'; choose auto or one of {', '.join(SOURCES)}")
    module = _module(source)
    if module is None:
        raise ResNetError(f"the {source} reader is not part of this installation")
    path = weights_file(path)
    if not path.is_file():
        raise ResNetError(f"not a file: {path}")
    if "model" in inspect.signature(module.read).parameters:
        return module.read(path, model=model)
    if model is not None:
        raise ResNetError(f"--model applies to torchvision/timm files; a {source} file names its own architecture")
    return module.read(path)


def build(imported: Imported, *, origin: dict[str, Any] | None = None) -> nn.Module:
    """The registered model an ``Imported`` describes, with its weights loaded (strictly)."""
    from resnet.models import create_model, load_weights

    model = create_model(imported.arch, num_classes=imported.num_classes, in_chans=imported.in_chans, **imported.options)
    load_weights(model, imported.state_dict, strict=True)
    model.class_names = imported.class_names
    model.preprocessing = dict(imported.preprocessing)
    model.converted_from = {"source": imported.source, **(origin or {}), "notes": list(imported.notes)}
    return model.eval()


def import_weights(path: PathLike, source: str = "auto", *, model: str | None = None) -> nn.Module:
    """A model of the right registered variant with the file's weights loaded, in eval mode.

    ``source``: "auto" (from the file's content), "keras", "paddle", "tf-slim", "torchvision" or
    "timm". ``model`` names the architecture of a bare PyTorch state dict when it cannot be inferred.
    The model carries ``class_names`` (where the file has them), ``preprocessing`` (image_size, mean,
    std where the source's are known) and ``converted_from``.
    """
    imported = read(path, source, model=model)
    from resnet.models.hub import file_sha256

    origin = {"file": Path(path).name, "sha256": file_sha256(weights_file(path))}
    return build(imported, origin=origin)


def export_weights(model: nn.Module, path: PathLike, target: str, *, class_names: list[str] | None = None) -> Path:
    """Write ``model`` in another framework's format ("keras": legacy HDF5 weights; "paddle": .pdparams)."""
    if target not in TARGETS:
        raise ResNetError(f"unknown export target '{target}'; choose one of {', '.join(TARGETS)}")
    module = _module(target)
    if module is None or not hasattr(module, "write"):
        raise ResNetError(f"exporting to {target} is not part of this installation")
    if "class_names" in inspect.signature(module.write).parameters:
        return module.write(model, path, class_names=class_names)
    return module.write(model, path)


__all__ = ["Imported", "SOURCES", "build", "detect_source", "export_weights", "import_weights", "read"]
