"""The ResNet family in one configurable module, keeping torchvision's and timm's parameter names.

One ``ResNet`` class covers the papers and their successors: basic and bottleneck blocks, the v1
(stride on the first 1x1) and v1.5 (stride on the 3x3) bottleneck, grouped and wide bottlenecks,
the deep 3x3 stem (ResNet-C) and average-pool shortcut (ResNet-D) of "Bag of Tricks", the five
residual-unit orderings of "Identity Mappings" (figure 4) and the CIFAR nets with the parameter-free
zero-padding shortcut (option A). Key names follow torchvision (``conv1``, ``bn1``, ``layer1..4``,
``downsample.0/1``, ``fc``) and timm for the deep stem / avg-pool shortcut (``conv1.0/1/3/4/6``,
``downsample.1/2``), so their state dicts load with ``strict=True``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from resnet.errors import ResNetError

NormLayer = Callable[[int], nn.Module]

# The residual-unit orderings of He et al. 2016, "Identity Mappings", figure 4 (a)-(e).
UNITS = ("original", "bn_after_add", "relu_before_add", "relu_preact", "full_preact")
_UNIT_LETTERS = dict(zip("abcde", UNITS))
SHORTCUTS = ("A", "B", "C", "D", "none")  # paper's options A/B/C, Bag-of-Tricks D, none = plain net
STEMS = ("imagenet", "cifar", "deep")
NORM_LAYERS = ("batchnorm", "groupnorm", "frozen_batchnorm")
# Options that reproduce other frameworks' ResNets (Keras applications, TF-slim, the deeplearning.ai tutorial).
CONV_BIASES = ("none", "all", "unnormalized")  # unnormalized: exactly the convs no norm follows
POOL_PADDINGS = ("symmetric", "zeros", "same", "valid")  # the stem max-pool's padding
DOWNSAMPLE_AT = ("first", "last")  # which block of a stage strides


def group_norm(num_channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups (Wu & He 2018), fewer when the channel count is not a multiple."""
    return nn.GroupNorm(math.gcd(32, num_channels), num_channels)


def resolve_norm_layer(norm_layer: str | NormLayer | None, bn_eps: float = 1e-5) -> NormLayer:
    """The norm factory; ``bn_eps`` applies to the BatchNorm kinds (a callable is taken as it is)."""
    if callable(norm_layer):
        return norm_layer
    batchnorm = nn.BatchNorm2d if bn_eps == 1e-5 else functools.partial(nn.BatchNorm2d, eps=bn_eps)
    if norm_layer is None:
        return batchnorm
    name = norm_layer.lower().replace("-", "_")
    # Also the names a callable is recorded under in model_options, so such a model can be rebuilt.
    aliases = {
        "bn": "batchnorm", "batchnorm2d": "batchnorm", "gn": "groupnorm", "group_norm": "groupnorm",
        "frozen_bn": "frozen_batchnorm", "frozenbn": "frozen_batchnorm", "frozenbatchnorm2d": "frozen_batchnorm",
    }  # fmt: skip
    name = aliases.get(name, name)
    if name == "batchnorm":
        return batchnorm
    if name == "groupnorm":
        return group_norm
    if name == "frozen_batchnorm":
        from torchvision.ops import FrozenBatchNorm2d  # here, not at the top: importing torchvision costs seconds

        return FrozenBatchNorm2d if bn_eps == 1e-5 else functools.partial(FrozenBatchNorm2d, eps=bn_eps)
    raise ResNetError(f"unknown norm_layer '{norm_layer}'; choose one of {', '.join(NORM_LAYERS)}")


def stochastic_depth(rate: float) -> nn.Module:
    """torchvision's per-sample drop path at ``rate`` (identity at 0), imported only when asked for: importing
    torchvision takes seconds (its ops load torch._dynamo), about half of a one-image ``resnet predict``."""
    if rate <= 0:
        return nn.Identity()
    from torchvision.ops import StochasticDepth

    return StochasticDepth(rate, "row")


def resolve_unit(unit: str) -> str:
    unit = _UNIT_LETTERS.get(unit, unit)
    if unit not in UNITS:
        raise ResNetError(f"unknown residual unit '{unit}'; choose one of {', '.join(UNITS)} (or a-e as in figure 4 of 'Identity Mappings')")
    return unit


def conv3x3(in_chs: int, out_chs: int, stride: int = 1, groups: int = 1, dilation: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=dilation, groups=groups, dilation=dilation, bias=bias)


def conv1x1(in_chs: int, out_chs: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=bias)


def conv_biases(conv_bias: str, preact: bool) -> tuple[bool, bool]:
    """(bias on convs a norm follows, bias on convs none follows): "all" puts one on every conv
    (Keras ResNet50 v1); "unnormalized" only where no norm follows, which in a full pre-activation
    net is the stem, the projection and each block's last conv (Keras ResNet50V2, TF-slim v2)."""
    if conv_bias not in CONV_BIASES:
        raise ResNetError(f"unknown conv_bias '{conv_bias}'; choose one of {', '.join(CONV_BIASES)}")
    return conv_bias == "all", conv_bias == "all" or (conv_bias == "unnormalized" and preact)


class Subsample(nn.Module):
    """The identity shortcut of a strided block whose channels stay: keep every stride-th pixel
    (TF-slim's and Keras V2's 1x1 max-pool with stride); no parameters. It takes the block's raw
    input, not the pre-activation."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :, :: self.stride, :: self.stride]


class SamePadMaxPool2d(nn.MaxPool2d):
    """TensorFlow's 'SAME' max-pool: pad as much as the input size needs, the extra cell at the
    bottom/right, with -inf so a padded cell never wins. (A MaxPool2d, so summaries count it as one.)
    The padding follows the input size at run time; a traced TorchScript file keeps the traced size's."""

    def __init__(self, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__(kernel_size, stride)

    def pads(self, size: int) -> tuple[int, int]:
        kernel, stride = int(self.kernel_size), int(self.stride)
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: Tensor) -> Tensor:
        top, bottom = self.pads(x.shape[-2])
        left, right = self.pads(x.shape[-1])
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)


def make_stem_pool(pool_padding: str) -> nn.Module:
    """The stem's 3x3/2 max-pool with each framework's padding: "symmetric" (torchvision: -inf on
    every side), "zeros" (Keras: ZeroPadding2D(1), so zeros can win over negative inputs), "same"
    (TF-slim 'SAME'), "valid" (none: the deeplearning.ai tutorial)."""
    if pool_padding == "symmetric":
        return nn.MaxPool2d(3, stride=2, padding=1)
    if pool_padding == "zeros":
        return nn.Sequential(nn.ZeroPad2d(1), nn.MaxPool2d(3, stride=2))
    if pool_padding == "same":
        return SamePadMaxPool2d(3, 2)
    if pool_padding == "valid":
        return nn.MaxPool2d(3, stride=2)
    raise ResNetError(f"unknown pool_padding '{pool_padding}'; choose one of {', '.join(POOL_PADDINGS)}")


class ZeroPadShortcut(nn.Module):
    """Option A of the paper: subsample by striding and pad the new channels with zeros; no parameters."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad_before = (out_chs - in_chs) // 2
        self.pad_after = out_chs - in_chs - self.pad_before

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


def make_shortcut(
    kind: str,
    in_chs: int,
    out_chs: int,
    stride: int,
    norm_layer: NormLayer,
    preact: bool,
    *,
    subsample_identity: bool = False,
    conv_bias: str = "none",
) -> nn.Module | None:
    """The shortcut of one block; None means identity (or, for plain nets, no shortcut at all).

    ``subsample_identity``: where only the resolution changes, subsample instead of projecting
    (TF-slim and Keras V2, whose strided last block keeps its channels).
    """
    if kind == "none" or (kind != "C" and stride == 1 and in_chs == out_chs):
        return None
    if kind == "A":
        return ZeroPadShortcut(in_chs, out_chs, stride)
    if subsample_identity and kind == "B" and in_chs == out_chs:
        return Subsample(stride)
    # A pre-activation unit's projection takes the already normalised input, so it carries no
    # norm of its own (TF-slim resnet_v2, timm's PreAct blocks).
    bias = conv_biases(conv_bias, preact)[1 if preact else 0]
    if kind == "D":
        # ResNet-D: average-pool first so the 1x1 projection sees every input pixel (timm's layout).
        pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
        layers = [pool, conv1x1(in_chs, out_chs, bias=bias)]
        return nn.Sequential(*layers) if preact else nn.Sequential(*layers, norm_layer(out_chs))
    # B and C: a strided 1x1 projection.
    if preact:
        return nn.Sequential(conv1x1(in_chs, out_chs, stride, bias=bias))
    return nn.Sequential(conv1x1(in_chs, out_chs, stride, bias=bias), norm_layer(out_chs))


class ResidualBlock(nn.Module):
    """What basic and bottleneck blocks share: the unit ordering, the shortcut, stochastic depth.

    Subclasses create ``conv1..convK`` and ``bn1..bnK``; a block always has exactly one norm per conv,
    and the ordering only decides where each is applied (after its conv, or before it for full
    pre-activation; the last one after the addition for the BN-after-addition unit).
    """

    expansion = 1
    num_convs = 2

    def __init__(self, shortcut: nn.Module | None, has_shortcut: bool, unit: str, drop_path_rate: float) -> None:
        super().__init__()
        self.downsample = shortcut
        self.has_shortcut = has_shortcut
        self.unit = unit
        self.relu = nn.ReLU(inplace=True)
        self.drop_path = stochastic_depth(drop_path_rate)

    def branch_layers(self) -> tuple[list[nn.Module], list[nn.Module]]:
        n = self.num_convs
        return [getattr(self, f"conv{i}") for i in range(1, n + 1)], [getattr(self, f"bn{i}") for i in range(1, n + 1)]

    def forward(self, x: Tensor) -> Tensor:
        convs, norms = self.branch_layers()
        unit, last = self.unit, len(convs) - 1
        shortcut = x
        if unit == "full_preact":
            preact = self.relu(norms[0](x))
            if self.downsample is not None:
                # The projection shares the pre-activation; a subsampled identity takes the raw input.
                shortcut = self.downsample(x if isinstance(self.downsample, Subsample) else preact)
            x = preact
        else:
            if self.downsample is not None:
                shortcut = self.downsample(x)
            if unit == "relu_preact":
                x = F.relu(x)  # not in place: x is also the shortcut
        for i, conv in enumerate(convs):
            if unit == "full_preact":
                if i > 0:
                    x = self.relu(norms[i](x))
                x = conv(x)
            elif i < last:
                x = self.relu(norms[i](conv(x)))
            else:
                x = conv(x)
                if unit != "bn_after_add":
                    x = norms[i](x)
                if unit == "relu_before_add":
                    x = self.relu(x)
        x = self.drop_path(x)
        if self.has_shortcut:
            x = x + shortcut
        if unit == "original":
            x = self.relu(x)
        elif unit == "bn_after_add":
            x = self.relu(norms[last](x))
        return x

    def zero_init_last(self) -> None:
        """Start the branch at zero so the block begins as identity (Goyal et al. 2017).

        Where the branch ends in a norm, zero its scale; where it ends in a conv (full pre-activation)
        or its last norm follows the addition, zero that conv. The ReLU-before-addition unit is left
        alone: a zeroed input to its closing ReLU would receive no gradient.
        """
        convs, norms = self.branch_layers()
        if self.unit in ("full_preact", "bn_after_add"):
            nn.init.zeros_(convs[-1].weight)
        elif self.unit in ("original", "relu_preact") and isinstance(getattr(norms[-1], "weight", None), nn.Parameter):
            nn.init.zeros_(norms[-1].weight)


class BasicBlock(ResidualBlock):
    """Two 3x3 convs (ResNet-18/34 and the CIFAR nets)."""

    expansion = 1
    num_convs = 2

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        *,
        shortcut: nn.Module | None = None,
        has_shortcut: bool = True,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        first_dilation: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        unit: str = "original",
        stride_in_1x1: bool = False,
        drop_path_rate: float = 0.0,
        conv_bias: str = "none",
    ) -> None:
        super().__init__(shortcut, has_shortcut, unit, drop_path_rate)
        if groups != 1 or base_width != 64:
            raise ResNetError("the basic block has no groups/width_per_group; use a bottleneck model (resnext*, wide_resnet*)")
        preact = unit == "full_preact"
        inner_bias, last_bias = conv_biases(conv_bias, preact)
        self.conv1 = conv3x3(in_chs, planes, stride, dilation=first_dilation, bias=inner_bias)
        self.bn1 = norm_layer(in_chs if preact else planes)
        self.conv2 = conv3x3(planes, planes, dilation=dilation, bias=last_bias if preact else inner_bias)
        self.bn2 = norm_layer(planes)


class Bottleneck(ResidualBlock):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand by 4; stride on the 3x3 unless stride_in_1x1 (v1)."""

    expansion = 4
    num_convs = 3

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        *,
        shortcut: nn.Module | None = None,
        has_shortcut: bool = True,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        first_dilation: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
        unit: str = "original",
        stride_in_1x1: bool = False,
        drop_path_rate: float = 0.0,
        conv_bias: str = "none",
    ) -> None:
        super().__init__(shortcut, has_shortcut, unit, drop_path_rate)
        preact = unit == "full_preact"
        inner_bias, last_bias = conv_biases(conv_bias, preact)
        width = int(planes * (base_width / 64.0)) * groups
        out_chs = planes * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_chs, width, stride_1x1, bias=inner_bias)
        self.bn1 = norm_layer(in_chs if preact else width)
        self.conv2 = conv3x3(width, width, stride_3x3, groups, first_dilation, bias=inner_bias)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, out_chs, bias=last_bias if preact else inner_bias)
        self.bn3 = norm_layer(width if preact else out_chs)


def make_stem(
    kind: str, in_chans: int, out_chs: int, stem_width: int, norm_layer: NormLayer, conv_bias: str = "none", preact: bool = False
) -> tuple[nn.Module, int]:
    """The first conv(s) and their stride: 7x7/2 (ImageNet), 3x3/1 (CIFAR), or three 3x3 (ResNet-C)."""
    inner_bias, last_bias = conv_biases(conv_bias, preact)
    bias = last_bias if preact else inner_bias  # a pre-activation stem has no norm of its own
    if kind == "imagenet":
        return nn.Conv2d(in_chans, out_chs, 7, stride=2, padding=3, bias=bias), 2
    if kind == "cifar":
        return conv3x3(in_chans, out_chs, bias=bias), 1
    if kind == "deep":
        stem = nn.Sequential(
            conv3x3(in_chans, stem_width, stride=2, bias=inner_bias),
            norm_layer(stem_width),
            nn.ReLU(inplace=True),
            conv3x3(stem_width, stem_width, bias=inner_bias),
            norm_layer(stem_width),
            nn.ReLU(inplace=True),
            conv3x3(stem_width, out_chs, bias=bias),
        )
        return stem, 2
    raise ResNetError(f"unknown stem '{kind}'; choose one of {', '.join(STEMS)}")


class ResNet(nn.Module):
    """A residual network with timm's interface (forward_features / forward_head / feature_info).

    Options (every one may be passed to ``create_model``):
        widths: base channels per stage (64..512 ImageNet, 16/32/64 CIFAR); bottlenecks output 4x.
        stem: "imagenet" (7x7/2 + max-pool), "cifar" (3x3/1), "deep" (ResNet-C: three 3x3, ``stem_width`` wide).
        shortcut: "A" zero-padded identity, "B" projection where the shape changes, "C" projection
            everywhere, "D" average-pool + projection, "none" for the plain nets.
        unit: residual-unit ordering of "Identity Mappings" fig. 4 ("original", "bn_after_add",
            "relu_before_add", "relu_preact", "full_preact", or "a".."e").
        groups, width_per_group: ResNeXt / wide bottlenecks. stride_in_1x1: v1 bottleneck.
        output_stride: 8 or 16 dilate the last stages instead of striding.
        norm_layer: "batchnorm", "groupnorm", "frozen_batchnorm" or a callable taking channels.
        zero_init_residual: start each branch at zero. drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth, rising linearly to this rate at the last block.
        frozen_stages: freeze the stem and the first k stages (-1: none). norm_eval: every BN in eval.
      Other frameworks' variants (defaults keep torchvision's net):
        bn_eps: every BatchNorm's eps (Keras applications 1.001e-5, Keras' default 1e-3).
        conv_bias: "none", "all" (every conv), "unnormalized" (the convs no norm follows).
        pool_padding: the stem max-pool's padding, "symmetric", "zeros" (Keras), "same" (TF), "valid".
        downsample_at: "first" block of stages 2..N strides (torchvision), or the "last" block of
            stages 1..N-1 (TF-slim, Keras V2), whose identity shortcut then subsamples.

    Backbone mode (the stem's and stages' outputs as a list) is ``resnet.models.features.FeatureBackbone``,
    a wrapper around this net (``create_model(..., features_only=True)``); ``forward`` always returns logits.
    """

    def __init__(
        self,
        block: type[ResidualBlock],
        layers: Sequence[int],
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: str = "imagenet",
        stem_width: int | None = None,
        shortcut: str = "B",
        unit: str = "original",
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
        output_stride: int = 32,
        norm_layer: str | NormLayer | None = "batchnorm",
        zero_init_residual: bool = False,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        bn_eps: float = 1e-5,
        conv_bias: str = "none",
        pool_padding: str = "symmetric",
        downsample_at: str = "first",
    ) -> None:
        super().__init__()
        if len(layers) != len(widths):
            raise ResNetError(f"{len(layers)} stages of blocks but {len(widths)} widths")
        if num_classes < 0 or in_chans < 1:
            raise ResNetError(f"num_classes must be >= 0 and in_chans >= 1 (got {num_classes}, {in_chans})")
        if output_stride not in (8, 16, 32):
            raise ResNetError(f"output_stride must be 8, 16 or 32 (got {output_stride})")
        if shortcut not in SHORTCUTS:
            raise ResNetError(f"unknown shortcut '{shortcut}'; choose one of {', '.join(SHORTCUTS)}")
        if not 0.0 <= drop_path_rate < 1.0 or not 0.0 <= drop_rate < 1.0:
            raise ResNetError(f"drop_rate and drop_path_rate must be in [0, 1) (got {drop_rate}, {drop_path_rate})")
        if downsample_at not in DOWNSAMPLE_AT:
            raise ResNetError(f"unknown downsample_at '{downsample_at}'; choose one of {', '.join(DOWNSAMPLE_AT)}")
        if not bn_eps > 0:
            raise ResNetError(f"bn_eps must be > 0 (got {bn_eps})")
        unit = resolve_unit(unit)
        norm = resolve_norm_layer(norm_layer, bn_eps)
        preact = unit == "full_preact"
        conv_biases(conv_bias, preact)  # validates the name
        self.unit = unit
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        # Stem. A full pre-activation net normalises at the start of every block instead.
        in_chs = widths[0]
        self.conv1, reduction = make_stem(stem, in_chans, in_chs, stem_width or in_chs // 2, norm, conv_bias, preact)
        self.bn1 = nn.Identity() if preact else norm(in_chs)
        self.relu = nn.Identity() if preact else nn.ReLU(inplace=True)
        self.maxpool = make_stem_pool(pool_padding) if reduction > 1 else nn.Identity()
        self.feature_info: list[dict[str, Any]] = [
            {"num_chs": in_chs, "reduction": reduction, "module": "conv1" if preact else "relu"}
        ]
        reduction *= 2 if reduction > 1 else 1

        # Stages; past output_stride, trade stride for dilation (DeepLab) so the resolution stays.
        # torchvision strides in the first block of stages 2..N, TF-slim in the last of stages 1..N-1.
        total_blocks, block_index = sum(layers), 0
        dilation = 1
        last = downsample_at == "last"
        self.stage_names: list[str] = []
        for index, (num_blocks, planes) in enumerate(zip(layers, widths)):
            stride = (2 if index < len(layers) - 1 else 1) if last else (1 if index == 0 else 2)
            first_dilation = dilation
            if reduction * stride > output_stride:
                dilation, stride = dilation * stride, 1
            strided = num_blocks - 1 if last else 0
            blocks: list[nn.Module] = []
            for b in range(num_blocks):
                out_chs = planes * block.expansion
                block_stride = stride if b == strided else 1
                # Blocks before the strided one (downsample_at="last") keep the old dilation.
                block_dilation = first_dilation if b < strided else dilation
                blocks.append(
                    block(
                        in_chs,
                        planes,
                        block_stride,
                        shortcut=make_shortcut(
                            shortcut, in_chs, out_chs, block_stride, norm, preact, subsample_identity=last, conv_bias=conv_bias
                        ),
                        has_shortcut=shortcut != "none",
                        groups=groups,
                        base_width=width_per_group,
                        dilation=block_dilation,
                        first_dilation=first_dilation if b <= strided else dilation,
                        norm_layer=norm,
                        unit=unit,
                        stride_in_1x1=stride_in_1x1,
                        # Stochastic depth grows linearly with depth (Huang et al. 2016).
                        drop_path_rate=drop_path_rate * block_index / max(total_blocks - 1, 1),
                        conv_bias=conv_bias,
                    )
                )
                in_chs = out_chs
                block_index += 1
            reduction *= stride
            name = f"layer{index + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            self.stage_names.append(name)
            self.feature_info.append({"num_chs": in_chs, "reduction": reduction, "module": name})

        self.num_features = in_chs
        # A pre-activation net ends with the BN-ReLU that its last unit left out.
        self.final_norm = norm(in_chs) if preact else nn.Identity()
        self.final_act = nn.ReLU(inplace=True) if preact else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_classes = num_classes
        self.fc: nn.Module = nn.Linear(in_chs, num_classes) if num_classes > 0 else nn.Identity()

        self.init_weights(zero_init_residual)
        self._freeze_stages()

    def init_weights(self, zero_init_residual: bool = False) -> None:
        """Kaiming-normal (fan_out) convs, unit-scale norms (torchvision's initialisation)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, ResidualBlock):
                    m.zero_init_last()

    # --- timm's interface ---------------------------------------------------------------------

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one for ``num_classes`` (0 = no classifier)."""
        self.num_classes = num_classes
        device = next(self.parameters()).device
        self.fc = nn.Linear(self.num_features, num_classes, device=device) if num_classes > 0 else nn.Identity()

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations.

        As in timm, a BatchNorm's running statistics see the recomputed forward pass too.
        """
        self.grad_checkpointing = enable

    def forward_stem(self, x: Tensor) -> Tensor:
        return self.relu(self.bn1(self.conv1(x)))

    def run_stage(self, stage: nn.Module, x: Tensor) -> Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            for block in stage:
                x = checkpoint(block, x, use_reentrant=False)
            return x
        return stage(x)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.forward_stem(x))
        for name in self.stage_names:
            x = self.run_stage(getattr(self, name), x)
        return self.final_act(self.final_norm(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        if self.drop_rate > 0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    # --- backbone mode: frozen stages, BN kept in eval ------------------------------------------

    def frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        stem = [self.conv1, self.bn1]
        return stem + [getattr(self, name) for name in self.stage_names[: self.frozen_stages]]

    def _freeze_stages(self) -> None:
        for module in self.frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet:
        """As nn.Module.train, but frozen stages (and, with norm_eval, every BN) stay in eval mode."""
        super().train(mode)
        if mode:
            keep_frozen_in_eval(self)
        return self


def keep_frozen_in_eval(net: Any) -> None:
    """After ``train()``: the frozen modules (and, with ``norm_eval``, every BatchNorm) back in eval mode,
    so their running statistics stay those of the pretrained weights (ResNet and its backbone wrapper)."""
    for module in net.frozen_modules():
        module.eval()
    if net.norm_eval:
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
