"""Every registered ResNet: (block, blocks per stage, options), one builder each.

Options given to ``create_model`` override the defaults set here (e.g. ``resnet20(shortcut="B")``).
"""

from __future__ import annotations

from typing import Any

from resnet.models.registry import register_model
from resnet.models.resnet import BasicBlock, Bottleneck, ResNet, ResidualBlock

CIFAR = {"num_classes": 10, "stem": "cifar", "widths": (16, 32, 64), "shortcut": "A"}
RESNET_C = {"stem": "deep", "stem_width": 32}
RESNET_D = {"stem": "deep", "stem_width": 32, "shortcut": "D"}
PREACT = {"unit": "full_preact"}


# Other frameworks' ResNets, so their weights import with their numerics (and they train from scratch).
# Keras v1 zero-pads its stem pool too, but after a ReLU, where zeros never beat a real cell.
KERAS_V1 = {"stride_in_1x1": True, "bn_eps": 1.001e-5, "conv_bias": "all"}
KERAS_V2 = {"unit": "full_preact", "downsample_at": "last", "conv_bias": "unnormalized", "bn_eps": 1.001e-5, "pool_padding": "zeros"}
TUTORIAL = {"stride_in_1x1": True, "bn_eps": 1e-3, "conv_bias": "all", "pool_padding": "valid", "num_classes": 6}
SLIM_V1 = {"downsample_at": "last", "pool_padding": "same"}
SLIM_V2 = {"unit": "full_preact", "downsample_at": "last", "conv_bias": "unnormalized", "pool_padding": "same"}


def _net(block: type[ResidualBlock], layers: tuple[int, ...], defaults: dict[str, Any], kwargs: dict[str, Any]) -> ResNet:
    # ``layers`` from create_model overrides the blocks per stage (importers build reduced-depth nets).
    kwargs = dict(kwargs)
    layers = tuple(kwargs.pop("layers", None) or layers)
    return ResNet(block, layers, **{**defaults, **kwargs})


def _cifar(depth: int, block: type[ResidualBlock], defaults: dict[str, Any], kwargs: dict[str, Any]) -> ResNet:
    """The 6n+2 (basic) or 9n+2 (bottleneck) CIFAR nets: three stages of n blocks."""
    n = (depth - 2) // (6 if block is BasicBlock else 9)
    return _net(block, (n, n, n), {**CIFAR, **defaults}, kwargs)


# --- ImageNet family, torchvision layout (v1.5: the bottleneck strides on its 3x3) ------------------


@register_model
def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 (He et al. 2015), torchvision layout."""
    return _net(BasicBlock, (2, 2, 2, 2), {}, kwargs)


@register_model
def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34 (He et al. 2015), torchvision layout."""
    return _net(BasicBlock, (3, 4, 6, 3), {}, kwargs)


@register_model
def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50, torchvision v1.5 (stride on the bottleneck's 3x3)."""
    return _net(Bottleneck, (3, 4, 6, 3), {}, kwargs)


@register_model
def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101, torchvision v1.5."""
    return _net(Bottleneck, (3, 4, 23, 3), {}, kwargs)


@register_model
def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152, torchvision v1.5."""
    return _net(Bottleneck, (3, 8, 36, 3), {}, kwargs)


@register_model
def resnet200(**kwargs: Any) -> ResNet:
    """ResNet-200 (He et al. 2016), v1.5 bottleneck."""
    return _net(Bottleneck, (3, 24, 36, 3), {}, kwargs)


@register_model
def resnext50_32x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al. 2017)."""
    return _net(Bottleneck, (3, 4, 6, 3), {"groups": 32, "width_per_group": 4}, kwargs)


@register_model
def resnext101_32x8d(**kwargs: Any) -> ResNet:
    """ResNeXt-101 32x8d (Xie et al. 2017)."""
    return _net(Bottleneck, (3, 4, 23, 3), {"groups": 32, "width_per_group": 8}, kwargs)


@register_model
def resnext101_64x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-101 64x4d (Xie et al. 2017)."""
    return _net(Bottleneck, (3, 4, 23, 3), {"groups": 64, "width_per_group": 4}, kwargs)


@register_model
def wide_resnet50_2(**kwargs: Any) -> ResNet:
    """Wide ResNet-50-2: bottleneck 3x3 twice as wide (Zagoruyko & Komodakis 2016)."""
    return _net(Bottleneck, (3, 4, 6, 3), {"width_per_group": 128}, kwargs)


@register_model
def wide_resnet101_2(**kwargs: Any) -> ResNet:
    """Wide ResNet-101-2: bottleneck 3x3 twice as wide."""
    return _net(Bottleneck, (3, 4, 23, 3), {"width_per_group": 128}, kwargs)


# --- the original v1: stride on the first 1x1, as in the paper and the Caffe/Keras models -----------


@register_model
def resnet50_v1(**kwargs: Any) -> ResNet:
    """ResNet-50 v1 as in the paper (stride on the first 1x1)."""
    return _net(Bottleneck, (3, 4, 6, 3), {"stride_in_1x1": True}, kwargs)


@register_model
def resnet101_v1(**kwargs: Any) -> ResNet:
    """ResNet-101 v1 as in the paper (stride on the first 1x1)."""
    return _net(Bottleneck, (3, 4, 23, 3), {"stride_in_1x1": True}, kwargs)


@register_model
def resnet152_v1(**kwargs: Any) -> ResNet:
    """ResNet-152 v1 as in the paper (stride on the first 1x1)."""
    return _net(Bottleneck, (3, 8, 36, 3), {"stride_in_1x1": True}, kwargs)


# --- Bag of Tricks (He et al. 2019): ResNet-C deep stem, ResNet-D avg-pool shortcut (timm's names) --


@register_model
def resnet18d(**kwargs: Any) -> ResNet:
    """ResNet-18-D: deep 3x3 stem and average-pool shortcut, timm layout."""
    return _net(BasicBlock, (2, 2, 2, 2), RESNET_D, kwargs)


@register_model
def resnet34d(**kwargs: Any) -> ResNet:
    """ResNet-34-D: deep 3x3 stem and average-pool shortcut, timm layout."""
    return _net(BasicBlock, (3, 4, 6, 3), RESNET_D, kwargs)


@register_model
def resnet50c(**kwargs: Any) -> ResNet:
    """ResNet-50-C: deep 3x3 stem (32-32-64), timm layout."""
    return _net(Bottleneck, (3, 4, 6, 3), RESNET_C, kwargs)


@register_model
def resnet50d(**kwargs: Any) -> ResNet:
    """ResNet-50-D: deep 3x3 stem and average-pool shortcut, timm layout."""
    return _net(Bottleneck, (3, 4, 6, 3), RESNET_D, kwargs)


@register_model
def resnet101d(**kwargs: Any) -> ResNet:
    """ResNet-101-D: deep 3x3 stem and average-pool shortcut, timm layout."""
    return _net(Bottleneck, (3, 4, 23, 3), RESNET_D, kwargs)


@register_model
def resnet152d(**kwargs: Any) -> ResNet:
    """ResNet-152-D: deep 3x3 stem and average-pool shortcut, timm layout."""
    return _net(Bottleneck, (3, 8, 36, 3), RESNET_D, kwargs)


# --- pre-activation v2 ("Identity Mappings", He et al. 2016) ---------------------------------------


@register_model
def resnet50_v2(**kwargs: Any) -> ResNet:
    """ResNet-50 v2: full pre-activation bottleneck units (TF-slim resnet_v2_50)."""
    return _net(Bottleneck, (3, 4, 6, 3), PREACT, kwargs)


@register_model
def resnet101_v2(**kwargs: Any) -> ResNet:
    """ResNet-101 v2: full pre-activation bottleneck units."""
    return _net(Bottleneck, (3, 4, 23, 3), PREACT, kwargs)


@register_model
def resnet152_v2(**kwargs: Any) -> ResNet:
    """ResNet-152 v2: full pre-activation bottleneck units."""
    return _net(Bottleneck, (3, 8, 36, 3), PREACT, kwargs)


@register_model
def preact_resnet110(**kwargs: Any) -> ResNet:
    """Pre-activation ResNet-110 for CIFAR (basic units, projection shortcuts)."""
    return _cifar(110, BasicBlock, {**PREACT, "shortcut": "B"}, kwargs)


@register_model
def preact_resnet164(**kwargs: Any) -> ResNet:
    """Pre-activation ResNet-164 for CIFAR (bottleneck units, projection shortcuts)."""
    return _cifar(164, Bottleneck, {**PREACT, "shortcut": "B"}, kwargs)


@register_model
def preact_resnet1001(**kwargs: Any) -> ResNet:
    """Pre-activation ResNet-1001 for CIFAR (bottleneck units, projection shortcuts)."""
    return _cifar(1001, Bottleneck, {**PREACT, "shortcut": "B"}, kwargs)


# --- the paper's CIFAR nets: 6n+2 layers, widths 16/32/64, option-A shortcut -----------------------


@register_model
def resnet8(**kwargs: Any) -> ResNet:
    """ResNet-8 for CIFAR (n=1), option-A shortcut: the family's shallowest member, for short budgets."""
    return _cifar(8, BasicBlock, {}, kwargs)


@register_model
def resnet20(**kwargs: Any) -> ResNet:
    """ResNet-20 for CIFAR (n=3), option-A shortcut."""
    return _cifar(20, BasicBlock, {}, kwargs)


@register_model
def resnet32(**kwargs: Any) -> ResNet:
    """ResNet-32 for CIFAR (n=5), option-A shortcut."""
    return _cifar(32, BasicBlock, {}, kwargs)


@register_model
def resnet44(**kwargs: Any) -> ResNet:
    """ResNet-44 for CIFAR (n=7), option-A shortcut."""
    return _cifar(44, BasicBlock, {}, kwargs)


@register_model
def resnet56(**kwargs: Any) -> ResNet:
    """ResNet-56 for CIFAR (n=9), option-A shortcut."""
    return _cifar(56, BasicBlock, {}, kwargs)


@register_model
def resnet110(**kwargs: Any) -> ResNet:
    """ResNet-110 for CIFAR (n=18), option-A shortcut."""
    return _cifar(110, BasicBlock, {}, kwargs)


@register_model
def resnet1202(**kwargs: Any) -> ResNet:
    """ResNet-1202 for CIFAR (n=200), option-A shortcut."""
    return _cifar(1202, BasicBlock, {}, kwargs)


# --- plain baselines of the degradation experiment: the same nets without shortcuts ----------------


@register_model
def plain20(**kwargs: Any) -> ResNet:
    """Plain-20 for CIFAR: ResNet-20 without shortcuts."""
    return _cifar(20, BasicBlock, {"shortcut": "none"}, kwargs)


@register_model
def plain32(**kwargs: Any) -> ResNet:
    """Plain-32 for CIFAR: ResNet-32 without shortcuts."""
    return _cifar(32, BasicBlock, {"shortcut": "none"}, kwargs)


@register_model
def plain44(**kwargs: Any) -> ResNet:
    """Plain-44 for CIFAR: ResNet-44 without shortcuts."""
    return _cifar(44, BasicBlock, {"shortcut": "none"}, kwargs)


@register_model
def plain56(**kwargs: Any) -> ResNet:
    """Plain-56 for CIFAR: ResNet-56 without shortcuts."""
    return _cifar(56, BasicBlock, {"shortcut": "none"}, kwargs)


@register_model
def plain110(**kwargs: Any) -> ResNet:
    """Plain-110 for CIFAR: ResNet-110 without shortcuts."""
    return _cifar(110, BasicBlock, {"shortcut": "none"}, kwargs)


@register_model
def plain18(**kwargs: Any) -> ResNet:
    """Plain-18 for ImageNet: ResNet-18 without shortcuts."""
    return _net(BasicBlock, (2, 2, 2, 2), {"shortcut": "none"}, kwargs)


@register_model
def plain34(**kwargs: Any) -> ResNet:
    """Plain-34 for ImageNet: ResNet-34 without shortcuts."""
    return _net(BasicBlock, (3, 4, 6, 3), {"shortcut": "none"}, kwargs)


# --- other frameworks' ResNets: Keras applications, the deeplearning.ai tutorial, TF-slim ------------


@register_model
def resnet50_keras(**kwargs: Any) -> ResNet:
    """ResNet-50 of keras.applications (v1: stride on the first 1x1, conv biases, BN eps 1.001e-5)."""
    return _net(Bottleneck, (3, 4, 6, 3), KERAS_V1, kwargs)


@register_model
def resnet101_keras(**kwargs: Any) -> ResNet:
    """ResNet-101 of keras.applications (v1: stride on the first 1x1, conv biases, BN eps 1.001e-5)."""
    return _net(Bottleneck, (3, 4, 23, 3), KERAS_V1, kwargs)


@register_model
def resnet152_keras(**kwargs: Any) -> ResNet:
    """ResNet-152 of keras.applications (v1: stride on the first 1x1, conv biases, BN eps 1.001e-5)."""
    return _net(Bottleneck, (3, 8, 36, 3), KERAS_V1, kwargs)


@register_model
def resnet50v2_keras(**kwargs: Any) -> ResNet:
    """ResNet50V2 of keras.applications (full pre-activation, stride in each stage's last block)."""
    return _net(Bottleneck, (3, 4, 6, 3), KERAS_V2, kwargs)


@register_model
def resnet101v2_keras(**kwargs: Any) -> ResNet:
    """ResNet101V2 of keras.applications (full pre-activation, stride in each stage's last block)."""
    return _net(Bottleneck, (3, 4, 23, 3), KERAS_V2, kwargs)


@register_model
def resnet152v2_keras(**kwargs: Any) -> ResNet:
    """ResNet152V2 of keras.applications (full pre-activation, stride in each stage's last block)."""
    return _net(Bottleneck, (3, 8, 36, 3), KERAS_V2, kwargs)


@register_model
def resnet50_tutorial(**kwargs: Any) -> ResNet:
    """ResNet-50 of the deeplearning.ai SIGNS tutorial (v1, conv biases, BN eps 1e-3, unpadded max-pool, 6 classes)."""
    return _net(Bottleneck, (3, 4, 6, 3), TUTORIAL, kwargs)


@register_model
def resnet_v1_50_slim(**kwargs: Any) -> ResNet:
    """TF-slim resnet_v1_50 (stride on the 3x3 of each stage's last unit, 'SAME' max-pool)."""
    return _net(Bottleneck, (3, 4, 6, 3), SLIM_V1, kwargs)


@register_model
def resnet_v1_101_slim(**kwargs: Any) -> ResNet:
    """TF-slim resnet_v1_101 (stride on the 3x3 of each stage's last unit, 'SAME' max-pool)."""
    return _net(Bottleneck, (3, 4, 23, 3), SLIM_V1, kwargs)


@register_model
def resnet_v1_152_slim(**kwargs: Any) -> ResNet:
    """TF-slim resnet_v1_152 (stride on the 3x3 of each stage's last unit, 'SAME' max-pool)."""
    return _net(Bottleneck, (3, 8, 36, 3), SLIM_V1, kwargs)


@register_model
def resnet_v2_50_slim(**kwargs: Any) -> ResNet:
    """TF-slim resnet_v2_50 (full pre-activation, stride in each stage's last unit, 'SAME' max-pool)."""
    return _net(Bottleneck, (3, 4, 6, 3), SLIM_V2, kwargs)


@register_model
def resnet_v2_101_slim(**kwargs: Any) -> ResNet:
    """TF-slim resnet_v2_101 (full pre-activation, stride in each stage's last unit, 'SAME' max-pool)."""
    return _net(Bottleneck, (3, 4, 23, 3), SLIM_V2, kwargs)


@register_model
def resnet_v2_152_slim(**kwargs: Any) -> ResNet:
    """TF-slim resnet_v2_152 (full pre-activation, stride in each stage's last unit, 'SAME' max-pool)."""
    return _net(Bottleneck, (3, 8, 36, 3), SLIM_V2, kwargs)
