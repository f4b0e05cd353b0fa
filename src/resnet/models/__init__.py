"""Models: the registry of named ResNets and their published weights, and safe weight loading/saving.

``create_model(name, ...)`` builds any registered ResNet (``list_models()`` names them), optionally
with published weights (``pretrained=True``, ``list_pretrained()`` names them; ``from_pretrained``
returns the model with its classes and preprocessing); ``load_weights`` / ``save_weights`` /
``read_metadata`` / ``model_from_checkpoint`` move weights in and out without ever unpickling
arbitrary objects.
"""

from __future__ import annotations

from resnet.models import zoo as _zoo  # noqa: F401  (registers every builder)
from resnet.models.factory import create_model, from_pretrained, model_from_checkpoint
from resnet.models.features import FeatureBackbone
from resnet.models.pretrained import PretrainedCfg, register_published
from resnet.models.registry import (
    defer_pretrained,
    get_pretrained_cfg,
    is_model,
    list_models,
    list_pretrained,
    model_description,
    register_model,
    register_pretrained,
)
from resnet.models.resnet import UNITS, BasicBlock, Bottleneck, ResidualBlock, ResNet
from resnet.models.weights import (
    LoadResult,
    load_pretrained,
    load_weights,
    normalize_state_dict,
    read_metadata,
    read_state_dict,
    save_weights,
    unwrap_model,
)

defer_pretrained(register_published)  # after the builders (each weight set attaches to one), on first lookup

__all__ = [
    "UNITS",
    "BasicBlock",
    "Bottleneck",
    "FeatureBackbone",
    "LoadResult",
    "PretrainedCfg",
    "ResNet",
    "ResidualBlock",
    "create_model",
    "from_pretrained",
    "get_pretrained_cfg",
    "is_model",
    "list_models",
    "list_pretrained",
    "load_pretrained",
    "load_weights",
    "model_description",
    "model_from_checkpoint",
    "normalize_state_dict",
    "read_metadata",
    "read_state_dict",
    "register_model",
    "register_pretrained",
    "save_weights",
    "unwrap_model",
]
