"""Models: the registry of named ResNets, and safe weight loading/saving.

``create_model(name, ...)`` builds any registered ResNet (``list_models()`` names them);
``load_weights`` / ``save_weights`` / ``read_metadata`` / ``model_from_checkpoint`` move weights in and
out without ever unpickling arbitrary objects.
"""

from __future__ import annotations

from resnet.models import zoo as _zoo  # noqa: F401  (registers every builder)
from resnet.models.registry import create_model, is_model, list_models, model_description, register_model
from resnet.models.resnet import UNITS, BasicBlock, Bottleneck, ResidualBlock, ResNet
from resnet.models.weights import (
    LoadResult,
    load_pretrained,
    load_weights,
    model_from_checkpoint,
    normalize_state_dict,
    read_metadata,
    read_state_dict,
    save_weights,
    unwrap_model,
)

__all__ = [
    "UNITS",
    "BasicBlock",
    "Bottleneck",
    "LoadResult",
    "ResNet",
    "ResidualBlock",
    "create_model",
    "is_model",
    "list_models",
    "load_pretrained",
    "load_weights",
    "model_description",
    "model_from_checkpoint",
    "normalize_state_dict",
    "read_metadata",
    "read_state_dict",
    "register_model",
    "save_weights",
    "unwrap_model",
]
