"""resnet: residual networks from the papers, trained, inspected, exported and served.

The public surface: ``create_model``, ``list_models``, ``load_weights``, ``save_weights`` (models),
``resnet.data.load`` (datasets), ``resnet.train.fit`` / ``evaluate`` (training), ``resnet.inspect``
(summary, diagrams), ``resnet.export`` and ``optimize`` (fast inference).
"""

from __future__ import annotations

from typing import Any

from resnet.errors import ResNetError
from resnet.models import create_model, list_models, load_weights, save_weights

__version__ = "0.1.0"

__all__ = [
    "Model", "ResNetError", "create_model", "list_models", "load_model", "load_weights", "save_weights", "optimize",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # The high-level API imports the trainer; load it only when asked for, so `import resnet` stays light.
    if name in ("Model", "load_model"):
        from resnet import highlevel

        return getattr(highlevel, name)
    raise AttributeError(f"module 'resnet' has no attribute {name!r}")


def optimize(*args: Any, **kwargs: Any) -> Any:
    """Fast inference callable for a model on this machine; see ``resnet.speed.optimize``."""
    from resnet.speed import optimize as _optimize

    return _optimize(*args, **kwargs)
