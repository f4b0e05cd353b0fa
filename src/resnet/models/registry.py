"""Named model builders and the published weight sets beside them.

``register_model`` adds a builder under its function name; ``register_pretrained`` attaches a
published weight set (a ``PretrainedCfg``) to a registered name, as ``name.tag`` (timm's naming).
Building models and loading weights live in ``resnet.models.factory``: this module imports neither,
so the registry, the weights I/O and the factory form no import cycle.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

from resnet.errors import ResNetError

if TYPE_CHECKING:
    from resnet.models.pretrained import PretrainedCfg

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
# arch -> tag -> cfg, in registration order; the first tag of an arch is its default weight set.
_PRETRAINED: dict[str, dict[str, PretrainedCfg]] = {}
# Registrations run on the first question about weight sets, not at import: torchvision's are read off
# its Weights enums, and importing torchvision takes seconds a command that needs no weight set should not pay.
_DEFERRED: list[Callable[[], None]] = []


def register_model(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``builder`` under its function name; a name registered twice is an error."""
    name = builder.__name__
    if name in _BUILDERS:
        raise ResNetError(f"model '{name}' is already registered (by {_BUILDERS[name].__module__}); pick another name")
    _BUILDERS[name] = builder
    return builder


def register_pretrained(cfg: PretrainedCfg, *, default: bool = False) -> PretrainedCfg:
    """Attach a published weight set to its registered model; ``default`` makes it the plain name's weights."""
    if cfg.arch not in _BUILDERS:
        raise ResNetError(f"weight set '{cfg.name}' is for '{cfg.arch}', which is not a registered model")
    tags = _published().setdefault(cfg.arch, {})  # the built-in sets first, as if registered at import
    if cfg.tag in tags:
        raise ResNetError(f"weight set '{cfg.name}' is already registered")
    if default:
        _PRETRAINED[cfg.arch] = {cfg.tag: cfg, **tags}
    else:
        tags[cfg.tag] = cfg
    return cfg


def defer_pretrained(register: Callable[[], None]) -> None:
    """Run ``register`` (which calls ``register_pretrained``) when weight sets are first looked up."""
    _DEFERRED.append(register)


def _published() -> dict[str, dict[str, PretrainedCfg]]:
    while _DEFERRED:
        _DEFERRED.pop(0)()
    return _PRETRAINED


def _natural_key(name: str) -> list[Any]:
    # resnet18 < resnet34 < resnet101, not the alphabetical resnet101 < resnet18.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style pattern, in natural order."""
    return sorted((name for name in _BUILDERS if fnmatch.fnmatchcase(name, pattern)), key=_natural_key)


def list_pretrained(pattern: str = "*") -> list[str]:
    """Published weight sets (``name.tag``) matching a shell-style pattern; each model's default first."""
    published = _published()
    names = [cfg.name for arch in list_models() for cfg in published.get(arch, {}).values()]
    return [name for name in names if fnmatch.fnmatchcase(name, pattern)]


def pretrained_cfgs(arch: str) -> list[PretrainedCfg]:
    """The weight sets published for ``arch``, its default first ([] when none)."""
    return list(_published().get(arch, {}).values())


def split_name(name: str) -> tuple[str, str | None]:
    """``"resnet50.tv2_in1k"`` -> ``("resnet50", "tv2_in1k")``; a plain name has no tag."""
    arch, _, tag = name.partition(".")
    return arch, (tag or None)


def get_pretrained_cfg(name: str, tag: str | None = None) -> PretrainedCfg:
    """The weight set ``name.tag`` (or ``name`` with ``tag``); no tag means the model's default.

    A tag also matches case-insensitively, and torchvision's enum names are aliases
    (``resnet50.IMAGENET1K_V2`` is ``resnet50.tv2_in1k``).
    """
    arch, own_tag = split_name(name)
    tag = tag or own_tag
    get_builder(arch)  # an unknown model is named as such, with close names
    cfgs = _published().get(arch, {})
    if not cfgs:
        raise ResNetError(f"no published weights for '{arch}'; `resnet models --pretrained` lists the {len(list_pretrained())} weight sets")
    if tag is None:
        return next(iter(cfgs.values()))
    for cfg in cfgs.values():
        if tag.lower() in (cfg.tag.lower(), *(a.lower() for a in cfg.aliases)):
            return cfg
    raise ResNetError(f"no weight set '{arch}.{tag}'; {arch} has: {', '.join(cfgs)}")


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
