"""TF-slim ``resnet_v1_*`` / ``resnet_v2_*`` checkpoints, read without TensorFlow.

Both checkpoint formats are read by ``resnet.convert.tfcheckpoint`` (the V2 ``.index`` +
``.data-*`` bundle and the V1 single file). Variable names follow tf_slim.nets (and
tensorflow/models' research/slim): ``SCOPE/conv1/weights``, ``SCOPE/blockB/unit_U/bottleneck_vN/
{shortcut,conv1,conv2,conv3}/...``, ``SCOPE/postnorm`` (v2) and ``SCOPE/logits``. Block and unit
counts and widths are read from the names and shapes, so a reduced net imports as well as the
published ResNet-50/101/152. TF-slim's numerics are kept by the ``*_slim`` variants: strides on
the last unit of every block but the last, identity shortcuts that subsample, 'SAME' max-pool
padding (bottom/right only) and, in v2, biases on the stem, projection and third convs.
The published checkpoints' 1001-class heads hold a "background" class 0, which is dropped.

Strides are not stored in a checkpoint: like every tf_slim.nets / research/slim ResNet, the net
is taken to stride 2 in every block but the last (output_stride 32).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from torch import Tensor

from resnet.convert.base import Imported
from resnet.convert.tensors import batchnorm, conv_from_hwio, imagenet_class_names, need, tensor
from resnet.convert.tfcheckpoint import index_path, is_table, read_checkpoint
from resnet.errors import ResNetError

UNIT = re.compile(r"^(?:(?P<scope>.*)/)?block(?P<block>\d+)/unit_(?P<unit>\d+)/bottleneck_v(?P<version>[12])/")
STANDARD_LAYERS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
STANDARD_WIDTHS = [64, 128, 256, 512]
OTHER_FORMATS = (".h5", ".keras", ".pdparams", ".safetensors", ".pt", ".pth", ".onnx", ".npz")


def detect(path: str | os.PathLike[str]) -> bool:
    """A V2 bundle (its .index, a .data shard or the prefix) or a V1 file: a table ending in TF's magic."""
    path = Path(path)
    bundle = index_path(path)
    if bundle is not None:
        return is_table(bundle)
    return path.suffix not in OTHER_FORMATS and path.is_file() and is_table(path)


def _layout(names: list[str], source: str) -> tuple[str, int, list[int]]:
    """(variable prefix, version 1/2, units per block) from the unit variable names."""
    units: dict[int, int] = {}
    prefixes, versions = set(), set()
    for name in names:
        match = UNIT.match(name)
        if match:
            prefixes.add(match["scope"] or "")
            versions.add(int(match["version"]))
            block = int(match["block"])
            units[block] = max(units.get(block, 0), int(match["unit"]))
    if not units:
        raise ResNetError(f"{source} has no blockN/unit_M/bottleneck_v1|v2 variables; it is not a TF-slim ResNet checkpoint")
    if len(prefixes) > 1 or len(versions) > 1:
        raise ResNetError(f"{source} holds more than one ResNet ({', '.join(sorted(prefixes))}); import one at a time")
    if sorted(units) != list(range(1, len(units) + 1)):
        raise ResNetError(f"{source} has blocks {sorted(units)}; expected block1..block{len(units)}")
    prefix = prefixes.pop()
    return (f"{prefix}/" if prefix else ""), versions.pop(), [units[b] for b in sorted(units)]


def _bn(arrays: dict[str, np.ndarray], tf_name: str, ours: str, source: str) -> dict[str, Tensor]:
    """A BatchNorm's variables under ``tf_name`` (``conv1/BatchNorm``, or ``preact``/``postnorm`` in v2)."""
    beta = need(arrays, f"{tf_name}/beta", source)
    gamma = arrays.get(f"{tf_name}/gamma", np.ones_like(beta))  # scale=False nets store none
    mean = need(arrays, f"{tf_name}/moving_mean", source)
    var = need(arrays, f"{tf_name}/moving_variance", source)
    return batchnorm(ours, gamma, beta, mean, var)


def _conv(arrays: dict[str, np.ndarray], tf_name: str, ours: str, source: str, bias: bool = False) -> dict[str, Tensor]:
    out = {f"{ours}.weight": conv_from_hwio(need(arrays, f"{tf_name}/weights", source, ndim=4))}
    if bias:
        out[f"{ours}.bias"] = tensor(need(arrays, f"{tf_name}/biases", source, ndim=1))
    return out


def _unit_state(arrays: dict[str, np.ndarray], tf: str, ours: str, version: int, source: str) -> dict[str, Tensor]:
    state: dict[str, Tensor] = {}
    projection = f"{tf}shortcut/weights" in arrays
    if version == 1:  # conv-BN(-ReLU) x3; the projection has its own BN
        for k in (1, 2, 3):
            state.update(_conv(arrays, f"{tf}conv{k}", f"{ours}conv{k}", source))
            state.update(_bn(arrays, f"{tf}conv{k}/BatchNorm", f"{ours}bn{k}", source))
        if projection:
            state.update(_conv(arrays, f"{tf}shortcut", f"{ours}downsample.0", source))
            state.update(_bn(arrays, f"{tf}shortcut/BatchNorm", f"{ours}downsample.1", source))
        return state
    # v2 (full pre-activation): preact BN, then each conv's BN belongs to the next conv's input;
    # the third conv and the projection are unnormalised and carry biases.
    state.update(_bn(arrays, f"{tf}preact", f"{ours}bn1", source))
    for k in (1, 2):
        state.update(_conv(arrays, f"{tf}conv{k}", f"{ours}conv{k}", source))
        state.update(_bn(arrays, f"{tf}conv{k}/BatchNorm", f"{ours}bn{k + 1}", source))
    state.update(_conv(arrays, f"{tf}conv3", f"{ours}conv3", source, bias=True))
    if projection:
        state.update(_conv(arrays, f"{tf}shortcut", f"{ours}downsample.0", source, bias=True))
    return state


def read(path: str | os.PathLike[str]) -> Imported:
    arrays = read_checkpoint(path)
    source = str(path)
    prefix, version, layers = _layout(list(arrays), source)

    widths = []
    for b in range(1, len(layers) + 1):
        unit = f"{prefix}block{b}/unit_1/bottleneck_v{version}/"
        base = need(arrays, f"{unit}conv1/weights", source, ndim=4).shape[-1]
        depth = need(arrays, f"{unit}conv3/weights", source, ndim=4).shape[-1]
        if depth != 4 * base:
            raise ResNetError(f"{source}: block{b} expands {base} -> {depth} channels; TF-slim's bottleneck expands by 4")
        widths.append(int(base))
    stem = need(arrays, f"{prefix}conv1/weights", source, ndim=4)
    if stem.shape[-1] != widths[0]:
        raise ResNetError(f"{source}: the stem has {stem.shape[-1]} channels but block1's base depth is {widths[0]}; our ResNet ties the two")

    state = _conv(arrays, f"{prefix}conv1", "conv1", source, bias=version == 2)
    if version == 1:
        state.update(_bn(arrays, f"{prefix}conv1/BatchNorm", "bn1", source))
    else:
        state.update(_bn(arrays, f"{prefix}postnorm", "final_norm", source))
    for b, units in enumerate(layers, start=1):
        for u in range(1, units + 1):
            state.update(_unit_state(arrays, f"{prefix}block{b}/unit_{u}/bottleneck_v{version}/", f"layer{b}.{u - 1}.", version, source))

    notes = [
        f"TF-slim resnet_v{version}: units per block {layers}, base depths {widths}",
        # The published checkpoints were trained on differently preprocessed inputs; say which.
        "input: RGB 0-255 minus the VGG means (123.68, 116.78, 103.94)" if version == 1 else "input: RGB scaled to [-1, 1] (Inception preprocessing)",
    ]
    num_classes, class_names = 0, None
    if f"{prefix}logits/weights" in arrays:
        weight = need(arrays, f"{prefix}logits/weights", source, ndim=4)[0, 0].T  # (1, 1, C, K) -> (K, C)
        bias = need(arrays, f"{prefix}logits/biases", source, ndim=1)
        if weight.shape[0] == 1001:
            weight, bias = weight[1:], bias[1:]
            notes.append("dropped class 0 ('background') of the 1001-class head")
        state["fc.weight"], state["fc.bias"] = tensor(weight), tensor(bias)
        num_classes = int(weight.shape[0])
        class_names, assumed = imagenet_class_names(num_classes)
        notes += assumed
    else:
        notes.append("no logits in the checkpoint: the net is imported without a classifier")

    standard = STANDARD_LAYERS.get(tuple(layers))
    arch = f"resnet_v{version}_{standard or 50}_slim"
    options: dict[str, object] = {}
    if standard is None:
        options["layers"] = list(layers)
    if widths != STANDARD_WIDTHS:
        options["widths"] = widths
    return Imported(
        arch=arch,
        state_dict=state,
        num_classes=num_classes,
        in_chans=int(stem.shape[2]),
        options=options,
        class_names=class_names,
        source="tf-slim",
        notes=notes,
    )
