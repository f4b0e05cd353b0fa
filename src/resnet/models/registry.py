"""Named model builders: ``register_model`` adds one, ``create_model`` builds one by name."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import json
import re
from collections.abc import Callable
from typing import Any

from torch import nn

from resnet.errors import ResNetError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``builder`` under its function name."""
    _BUILDERS[builder.__name__] = builder
    return builder


def _natural_key(name: str) -> list[Any]:
    # resnet18 < resnet34 < resnet101, not the alphabetical resnet101 < resnet18.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, in natural order."""
    return sorted((name for name in _BUILDERS if fnmatch.fnmatchcase(name, pattern)), key=_natural_key)


def is_model(name: str) -> bool:
    return name in _BUILDERS


def model_description(name: str) -> str:
    """The first line of the builder's docstring."""
    doc = inspect.getdoc(get_builder(name)) or ""
    return doc.splitlines()[0] if doc else ""


def get_builder(name: str) -> Callable[..., nn.Module]:
    try:
        return _BUILDERS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_BUILDERS), n=4, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ResNetError(f"unknown model '{name}'; {hint}`resnet models` lists all {len(_BUILDERS)}") from None


def _option_names() -> set[str]:
    from resnet.models.resnet import ResNet

    params = inspect.signature(ResNet.__init__).parameters
    # ``layers`` (blocks per stage) overrides the builder's depth, e.g. for a reduced net read from a file.
    return {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY} | {"layers"}


def _jsonable(value: Any) -> Any:
    """Options as they go into a checkpoint header (tuples become lists)."""
    return json.loads(json.dumps(value, default=lambda v: getattr(v, "__name__", str(v))))


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int = 3,
    pretrained_path: str | None = None,
    **options: Any,
) -> nn.Module:
    """Build a registered model; ``num_classes=None`` keeps the family's default (1000, or 10 for CIFAR nets).

    ``pretrained_path`` loads weights (safetensors or a weights-only PyTorch file); a classifier
    whose shape does not fit ``num_classes`` is left freshly initialised, and that is reported.
    """
    builder = get_builder(name)
    allowed = _option_names() - {"num_classes", "in_chans"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ResNetError(f"unknown option(s) {', '.join(unknown)} for {name}; options are: {', '.join(sorted(allowed))}")
    kwargs = dict(options, in_chans=in_chans)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = builder(**kwargs)
    model.model_name = name
    model.model_options = _jsonable(options)
    if pretrained_path is not None:
        from resnet.models.weights import load_pretrained

        load_pretrained(model, pretrained_path)
    return model
