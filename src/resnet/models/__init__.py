"""Models: the registry, the ResNet families, and safe weight loading/saving."""

from __future__ import annotations

from typing import Any


def create_model(name: str, **kwargs: Any) -> Any:  # replaced by the registry
    raise NotImplementedError


def list_models(pattern: str = "*") -> list[str]:
    raise NotImplementedError


def load_weights(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


def save_weights(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError
