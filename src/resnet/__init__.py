"""resnet: residual networks from the papers, trained, inspected, exported and served.

The public surface: ``create_model``, ``list_models``, ``list_pretrained``, ``from_pretrained``,
``load_weights``, ``save_weights``, ``model_from_checkpoint`` (models),
``resnet.data.load`` (datasets), ``resnet.train.fit`` / ``evaluate`` (training), ``resnet.inspect``
(summary, diagrams), ``resnet.export`` and ``optimize`` (fast inference).
"""

from __future__ import annotations

import importlib
from typing import Any

from resnet.errors import ResNetError
from resnet.models import create_model, from_pretrained, list_models, list_pretrained, load_weights, model_from_checkpoint, save_weights

__version__ = "0.1.0"

__all__ = [
    "Model", "ResNetError", "create_model", "from_pretrained", "import_weights", "list_models", "list_pretrained",
    "load_model", "load_weights", "model_from_checkpoint", "save_weights", "optimize", "__version__",
]  # fmt: skip


def optimize(*args: Any, **kwargs: Any) -> Any:
    """Fast inference callable for a model on this machine; see ``resnet.speed.optimize``."""
    from resnet.speed import optimize as _optimize

    return _optimize(*args, **kwargs)


def import_weights(path: Any, source: str = "auto", **kwargs: Any) -> Any:
    """A model of the right registered variant with another framework's weights loaded (Keras, Paddle,
    TF-slim, torchvision, timm); see ``resnet.convert.import_weights``."""
    from resnet.convert import import_weights as _import_weights

    return _import_weights(path, source, **kwargs)


_SUBPACKAGES = ("convert", "data", "device", "export", "highlevel", "inspect", "io", "models", "report", "speed", "train")


def __getattr__(name: str) -> Any:
    """``resnet.inspect.summary(...)`` etc. after a plain ``import resnet``: sub-packages load on first use,
    and so does the high-level ``Model`` (it imports the trainer), so ``import resnet`` stays light."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f"resnet.{name}")
    if name in ("Model", "load_model"):
        from resnet import highlevel

        return getattr(highlevel, name)
    raise AttributeError(f"module 'resnet' has no attribute {name!r}")
