"""Backbone mode: a ResNet's stem and stage outputs as a list of feature maps (timm's FeatureListNet idea).

``FeatureBackbone`` takes the classifier net's modules over under their own names (so a backbone's
state-dict keys are the classifier's minus ``fc``), leaves the pooling and classifier behind, and runs
the modules in the order the net registered them, keeping the outputs named by ``out_indices``:
0 is the stem (before the max-pool), 1.. the stages (C2..C5 on the ImageNet nets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from resnet.errors import ResNetError
from resnet.models.resnet import ResNet, keep_frozen_in_eval

# What a backbone does not keep; checkpoint keys under these prefixes are ignored when loading into one.
HEAD_MODULES = ("avgpool", "fc")
HEAD_KEY_PREFIXES = ("fc.",)


class FeatureBackbone(nn.Module):
    """The feature maps of ``net`` selected by ``out_indices`` (default: every stage)."""

    def __init__(self, net: ResNet, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        num_stages = len(net.stage_names)
        indices = tuple(out_indices) if out_indices is not None else tuple(range(1, num_stages + 1))
        if not indices or any(not 0 <= i <= num_stages for i in indices):
            raise ResNetError(f"out_indices must be in 0..{num_stages} (0 = stem), got {list(indices)}")
        self.out_indices = indices
        self.feature_info: list[dict[str, Any]] = [dict(net.feature_info[i]) for i in indices]
        self.stage_names = list(net.stage_names)
        self.in_chans = net.in_chans
        self.num_classes = 0
        self.num_features = net.num_features
        self.frozen_stages = net.frozen_stages
        self.norm_eval = net.norm_eval
        self.grad_checkpointing = False
        for name, module in net.named_children():
            if name not in HEAD_MODULES:
                self.add_module(name, module)
        # Where each output is taken: the stem's module, each stage; the last stage after the final
        # norm/activation that pre-activation nets end with (identities otherwise).
        taps = [net.feature_info[0]["module"], *self.stage_names[:-1], "final_act"]
        self._taps = {taps[i]: i for i in indices}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        self.grad_checkpointing = enable

    def forward(self, x: Tensor) -> list[Tensor]:
        outputs: list[Tensor] = []
        for name, module in self.named_children():
            if self.grad_checkpointing and name in self.stage_names and torch.is_grad_enabled():
                for block in module:
                    x = checkpoint(block, x, use_reentrant=False)
            else:
                x = module(x)
            if name in self._taps:
                outputs.append(x)
                if len(outputs) == len(self._taps):
                    break
        return outputs

    def frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.conv1, self.bn1, *(getattr(self, name) for name in self.stage_names[: self.frozen_stages])]

    def train(self, mode: bool = True) -> FeatureBackbone:
        """As nn.Module.train, but frozen stages (and, with norm_eval, every BN) stay in eval mode."""
        super().train(mode)
        if mode:
            keep_frozen_in_eval(self)
        return self
