"""What every foreign-weights reader returns, and how converters are found.

A reader turns another framework's file into an ``Imported``: the registered architecture (with its
options) that reproduces that framework's numerics, and a state dict in our key names. Readers use
h5py, numpy and restricted unpicklers only: importing never needs TensorFlow, Keras or Paddle, and
never executes code from the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class Imported:
    arch: str  # a registered model name, e.g. "resnet50_keras"
    state_dict: dict[str, Tensor]  # our key names, torch tensors
    num_classes: int
    in_chans: int = 3
    options: dict[str, Any] = field(default_factory=dict)  # create_model options (e.g. widths, layers)
    class_names: list[str] | None = None
    source: str = ""  # "keras", "paddle", "tf-slim", ...
    notes: list[str] = field(default_factory=list)  # e.g. "dropped the background class"
