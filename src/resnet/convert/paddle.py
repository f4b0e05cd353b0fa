"""Paddle's ``paddle.vision.models.resnet*`` weights: ``.pdparams`` in, and back out.

A ``.pdparams`` file is a pickle of ``{name: numpy array}`` written by ``paddle.save``. It is read
with the numpy-only unpickler (``resnet.unpickle``), so a tampered file cannot run code. Paddle's
ResNet has torchvision's layout and key names (``conv1``, ``layer1.0.conv1``, ``downsample.0/1``,
``fc``), BatchNorm statistics named ``_mean``/``_variance`` and its Linear weight stored as
(in, out). Depths, widths, groups and classes are read from the shapes, so a narrowed or
shortened net imports as well as a full ResNet-50.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
from torch import Tensor, nn

from resnet.convert.base import Imported
from resnet.convert.tensors import batchnorm, count_indexed, imagenet_class_names, need, tensor
from resnet.errors import ResNetError
from resnet.io import atomic_write
from resnet.unpickle import NumpyUnpickler, load_numpy_pickle

SUFFIX = ".pdparams"
PADDLE_EPS = 1e-5  # nn.BatchNorm2D's default, which paddle.vision's ResNet keeps
STANDARD = {  # (bottleneck?, blocks per stage, groups, width per group) -> our registered name of that net
    (False, (2, 2, 2, 2), 1, 64): "resnet18",
    (False, (3, 4, 6, 3), 1, 64): "resnet34",
    (True, (3, 4, 6, 3), 1, 64): "resnet50",
    (True, (3, 4, 23, 3), 1, 64): "resnet101",
    (True, (3, 8, 36, 3), 1, 64): "resnet152",
    (True, (3, 4, 6, 3), 32, 4): "resnext50_32x4d",
    (True, (3, 4, 23, 3), 32, 8): "resnext101_32x8d",
    (True, (3, 4, 23, 3), 64, 4): "resnext101_64x4d",
    (True, (3, 4, 6, 3), 1, 128): "wide_resnet50_2",
    (True, (3, 4, 23, 3), 1, 128): "wide_resnet101_2",
}
BN_NAMES = {"weight": "weight", "bias": "bias", "_mean": "running_mean", "_variance": "running_var"}


class PaddleUnpickler(NumpyUnpickler):
    holds = "a .pdparams file holds only parameter names and numpy arrays"


def detect(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix == SUFFIX and Path(path).is_file()


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The file's parameters by name (paddle.save's bookkeeping entry, a dict of names, is left out)."""
    obj = load_numpy_pickle(path, unpickler=PaddleUnpickler)
    if not isinstance(obj, dict):
        raise ResNetError(f"{path} holds a {type(obj).__name__}, not a Paddle state dict")
    arrays = {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
    if not arrays:
        raise ResNetError(f"{path} holds no arrays (keys: {', '.join(map(str, list(obj)[:8]))})")
    return arrays


def _stage_blocks(keys: list[str]) -> tuple[int, ...]:
    stages = count_indexed(keys, "layer{}.")
    return tuple(count_indexed(keys, f"layer{s}.{{}}.") for s in range(1, stages + 1))


def read(path: str | os.PathLike[str]) -> Imported:
    path = Path(path)
    if not path.is_file():
        raise ResNetError(f"Paddle weights not found: {path}")
    arrays = read_arrays(path)
    source = str(path)
    keys = list(arrays)
    layers = _stage_blocks(keys)
    if not layers or min(layers) == 0:
        raise ResNetError(f"{source} has no layer1.0.* keys; it is not a paddle.vision ResNet")
    bottleneck = "layer1.0.conv3.weight" in arrays

    widths, groups, width_per_group = [], 1, 64
    for s in range(1, len(layers) + 1):
        conv1 = need(arrays, f"layer{s}.0.conv1.weight", source, ndim=4)
        if not bottleneck:
            widths.append(conv1.shape[0])
            continue
        planes = need(arrays, f"layer{s}.0.conv3.weight", source, ndim=4).shape[0] // 4
        width = conv1.shape[0]
        groups = width // need(arrays, f"layer{s}.0.conv2.weight", source, ndim=4).shape[1]
        width_per_group = width // groups * 64 // planes
        widths.append(planes)
    stem = need(arrays, "conv1.weight", source, ndim=4)
    if stem.shape[0] != widths[0]:
        raise ResNetError(f"{source}: the stem has {stem.shape[0]} channels but layer1 takes {widths[0]}; our ResNet ties the two")

    state: dict[str, Tensor] = {}
    for key, value in arrays.items():
        module, _, leaf = key.rpartition(".")
        if leaf in ("_mean", "_variance") or (leaf in ("weight", "bias") and value.ndim == 1 and not module.startswith("fc")):
            continue  # BatchNorm entries, gathered below per module
        state[key] = tensor(value.T if key == "fc.weight" else value)  # Paddle's Linear stores (in, out)
    for key in keys:
        if key.endswith("._mean"):
            module = key[: -len("._mean")]
            state.update(batchnorm(module, *(need(arrays, f"{module}.{name}", source) for name in BN_NAMES)))

    num_classes = int(arrays["fc.weight"].shape[1]) if "fc.weight" in arrays else 0
    class_names, assumed = imagenet_class_names(num_classes)
    arch = STANDARD.get((bottleneck, layers, groups, width_per_group))
    options: dict[str, object] = {}
    if arch is None:  # a net paddle.vision does not name: the nearest family, with what differs
        arch = "resnet50" if bottleneck else "resnet18"
        options["layers"] = list(layers)
        if groups != 1 or width_per_group != 64:
            options.update(groups=int(groups), width_per_group=int(width_per_group))
    if widths != [64, 128, 256, 512]:
        options["widths"] = [int(w) for w in widths]
    return Imported(
        arch=arch,
        state_dict=state,
        num_classes=num_classes,
        in_chans=int(stem.shape[1]),
        options=options,
        class_names=class_names,
        source="paddle",
        notes=[f"paddle.vision ResNet: {'bottleneck' if bottleneck else 'basic'} blocks {list(layers)}, widths {widths}", *assumed],
    )


# --- export back to Paddle ----------------------------------------------------------------------


def _block_problems(name: str, block: nn.Module, stage_index: int, block_index: int) -> list[str]:
    """How one block differs from paddle.vision's: its stride sits on the 3x3 (the basic block's
    first conv) of each stage's first block, stages 2.. only; it projects exactly where the shape
    changes, with a conv + BatchNorm; every block has its shortcut."""
    problems = []
    strided = block.conv2 if hasattr(block, "conv3") else block.conv1
    want = (2, 2) if block_index == 0 and stage_index > 0 else (1, 1)
    others = [c.stride for c in (block.conv1, block.conv2, getattr(block, "conv3", block.conv2)) if c is not strided]
    if strided.stride != want or any(stride != (1, 1) for stride in others):
        problems.append(f"{name} strides where Paddle's does not (Paddle: the 3x3 of each stage's first block, from stage 2)")
    last = getattr(block, "conv3", block.conv2)
    needs_projection = block_index == 0 and (stage_index > 0 or block.conv1.in_channels != last.out_channels)
    shortcut = block.downsample
    projects = isinstance(shortcut, nn.Sequential) and len(shortcut) == 2 and isinstance(shortcut[0], nn.Conv2d) and hasattr(shortcut[1], "running_var")
    if not getattr(block, "has_shortcut", True) or projects != needs_projection or (shortcut is not None and not projects):
        problems.append(f"{name}'s shortcut is not Paddle's (identity, or a 1x1 conv + BatchNorm where the shape changes)")
    return problems


def _check_paddle_layout(model: nn.Module) -> None:
    """Refuse, in one line, a net that paddle.vision's ResNet cannot represent."""
    problems = []
    if getattr(model, "unit", "original") != "original":
        problems.append(f"its residual unit is {model.unit!r} (Paddle's is 'original': post-activation)")
    from resnet.models.features import FeatureBackbone

    if isinstance(model, FeatureBackbone):
        problems.append("it is a features-only backbone")
    stem = getattr(model, "conv1", None)
    if not isinstance(stem, nn.Conv2d) or stem.kernel_size != (7, 7) or stem.stride != (2, 2):
        problems.append("its stem is not a single 7x7/2 conv")
    pool = getattr(model, "maxpool", None)
    if type(pool) is not nn.MaxPool2d or pool.padding != 1:  # a TF "SAME" pool subclasses MaxPool2d
        problems.append("its stem max-pool is not 3x3/2 with padding 1")
    if not isinstance(getattr(model, "final_norm", nn.Identity()), nn.Identity):
        problems.append("it ends in a final norm (pre-activation)")
    for stage_index, stage_name in enumerate(getattr(model, "stage_names", [])):
        for block_index, block in enumerate(getattr(model, stage_name)):
            problems += _block_problems(f"{stage_name}.{block_index}", block, stage_index, block_index)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.bias is not None:
            problems.append(f"{name} has a bias")
        elif isinstance(module, nn.Conv2d) and module.dilation != (1, 1):
            problems.append(f"{name} is dilated")
        elif isinstance(module, nn.GroupNorm):
            problems.append(f"{name} is a GroupNorm")
        elif hasattr(module, "running_var") and abs(float(getattr(module, "eps", PADDLE_EPS)) - PADDLE_EPS) > 1e-12:
            problems.append(f"{name} has BatchNorm eps {module.eps} (Paddle's is {PADDLE_EPS})")
    if problems:
        name = getattr(model, "model_name", type(model).__name__)
        raise ResNetError(f"cannot write {name} for Paddle: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))


def paddle_state_dict(model: nn.Module) -> dict[str, np.ndarray]:
    """Our state dict under Paddle's names and layouts (float32 numpy arrays)."""
    out: dict[str, np.ndarray] = {}
    rename = {"running_mean": "_mean", "running_var": "_variance"}
    for key, value in model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        array = value.detach().cpu().float().numpy()
        out[f"{module}.{rename.get(leaf, leaf)}"] = np.ascontiguousarray(array.T if key == "fc.weight" else array)
    return out


def write(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s weights as a ``.pdparams`` that paddle.vision's ResNet ``set_state_dict`` accepts."""
    from resnet.models.weights import unwrap_model

    model = unwrap_model(model)
    _check_paddle_layout(model)
    arrays = paddle_state_dict(model)
    # paddle.save writes protocol 4; a plain dict of arrays is what paddle.load hands to set_state_dict.
    return atomic_write(path, lambda tmp: tmp.write_bytes(pickle.dumps(arrays, protocol=4)))
