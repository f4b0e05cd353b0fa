"""The Keras/Paddle-style high-level API: ``resnet.Model`` and ``resnet.load_model``."""

from resnet.highlevel.model import History, Model, load_model

__all__ = ["History", "Model", "load_model"]
