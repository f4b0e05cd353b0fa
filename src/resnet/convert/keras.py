"""Keras ResNets in and out, with h5py and numpy only (no Keras, no TensorFlow).

Read: the legacy HDF5 file of Keras 2 (weights named ``kernel:0``) and Keras 3 (``kernel``), full
model or weights only, and the Keras 3 ``.keras`` zip, whose ``model.weights.h5`` stores weights by
layer class and index (``layers/conv2d_3/vars/0``): ``config.json`` lists the layers in that order.
Two namings: keras.applications' (``conv2_block1_1_conv``, ``_0_conv`` shortcut, ``predictions``;
ResNet50/101/152 and their V2) and the deeplearning.ai tutorial's (``res2a_branch2a``,
``bn2a_branch2a``, ``res2a_branch1``, ``fc``). Depths and widths come from the file, so reduced nets
import too; the options that decide the numerics (BN eps, stem-pool padding) come from the model
config where the file has one.

Write: the legacy HDF5 weights file that ``keras.applications.ResNet50(weights=None).load_weights``
reads; Keras loads it by layer order, so the layers are written in the order Keras builds them.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor, nn

from resnet.convert.base import Imported
from resnet.errors import ResNetError
from resnet.io import atomic_write

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MAX_CONFIG_BYTES = 64 << 20  # a .keras config.json is a few hundred kB; refuse anything absurd
_WEIGHTED = ("Conv2D", "BatchNormalization", "Dense")
_STANDARD_DEPTHS = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}

# keras.applications: conv1_conv, conv1_bn, conv{S}_block{B}_{0..3|preact}_{conv|bn}, post_bn.
_APPS = re.compile(r"^conv(\d+)_block(\d+)_(0|1|2|3|preact)_(conv|bn)$")
# The tutorial (and Caffe-converted Keras ResNets): res{S}{block}_branch{1|2a|2b|2c}, bn{S}{block}_branch...
_TUTORIAL = re.compile(r"^(res|bn)(\d+)([a-z](?:\d+)?)_branch(1|2a|2b|2c)$")


@dataclass
class KerasLayer:
    name: str
    class_name: str
    weights: dict[str, np.ndarray]
    config: dict[str, Any] = field(default_factory=dict)


# --- reading the files ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == HDF5_SIGNATURE


def detect(path: str | Path) -> bool:
    """A Keras model or weights file: an HDF5 file with Keras' layer list, or a .keras zip."""
    path = Path(path)
    if not path.is_file():
        return False
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
        return {"config.json", "model.weights.h5"} <= names
    if not _is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            return "layer_names" in root.attrs or _is_keras3_weights_only(f)
    except OSError:
        return False


def _config_layers(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The layer list of a Functional/Sequential model config (Keras 2 and 3 spell it alike)."""
    inner = config.get("config", config)
    # Keras <= 2.2 wrote a Sequential model's config as the bare layer list.
    layers = inner if isinstance(inner, list) else inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        raise ResNetError("the Keras model config has no layer list")
    return layers


def _layer_configs(config: dict[str, Any] | None) -> dict[str, tuple[str, dict[str, Any]]]:
    if not config:
        return {}
    out = {}
    for layer in _config_layers(config):
        cfg = layer.get("config", {})
        name = cfg.get("name") or layer.get("name")
        out[str(name)] = (str(layer.get("class_name")), cfg)
    return out


def _short_name(weight_name: str) -> str:
    """'conv1/conv1/kernel:0' or 'conv1_conv/kernel' -> 'kernel'."""
    return weight_name.split("/")[-1].split(":")[0]


def _is_keras3_weights_only(f: h5py.File) -> bool:
    """Keras 3's model.weights.h5 (``save_weights``): layers/<class>_<n>/vars/<i>, no layer names."""
    layers = f.get("layers")
    return isinstance(layers, h5py.Group) and any("vars" in g for g in layers.values() if isinstance(g, h5py.Group))


def _read_legacy_h5(path: Path) -> tuple[list[KerasLayer], dict[str, Any]]:
    with h5py.File(path, "r") as f:
        if _is_keras3_weights_only(f):
            raise ResNetError(
                f"{path} is a Keras 3 .weights.h5, which stores weights by layer class and index without the layer "
                "names; convert the .keras file (model.save('model.keras')) or a model.save('model.h5') file instead"
            )
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise ResNetError(f"{path} is an HDF5 file but not a Keras model (no 'layer_names' attribute; a data set?)")
        config = json.loads(_text(f.attrs["model_config"])) if "model_config" in f.attrs else None
        configs = _layer_configs(config)
        attrs = {k: _text(v) for k, v in f.attrs.items() if k in ("keras_version", "backend", "class_names")}
        layers = []
        for raw in root.attrs["layer_names"]:
            name = _text(raw)
            group = root[name]
            weight_names = [_text(w) for w in group.attrs.get("weight_names", [])]
            if not weight_names:
                continue
            weights = {_short_name(w): np.asarray(group[w]) for w in weight_names}
            class_name, cfg = configs.get(name, (_guess_class(weights), {}))
            layers.append(KerasLayer(name, class_name, weights, cfg))
    return layers, attrs


def _guess_class(weights: dict[str, np.ndarray]) -> str:
    if "moving_mean" in weights:
        return "BatchNormalization"
    kernel = weights.get("kernel")
    return "Conv2D" if kernel is not None and kernel.ndim == 4 else "Dense"


def _snake_case(class_name: str) -> str:
    """Keras 3's name for a layer's folder in model.weights.h5 (Conv2D -> conv2d, BatchNormalization -> batch_normalization)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _var_names(class_name: str, cfg: dict[str, Any]) -> list[str]:
    """The order Keras 3 creates a layer's variables in (its vars/0, vars/1, ...)."""
    if class_name == "BatchNormalization":
        return [n for n, on in (("gamma", cfg.get("scale", True)), ("beta", cfg.get("center", True))) if on] + ["moving_mean", "moving_variance"]
    return ["kernel", "bias"] if cfg.get("use_bias", True) else ["kernel"]


def _read_keras_zip(path: Path) -> tuple[list[KerasLayer], dict[str, Any]]:
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("config.json")
        if info.file_size > _MAX_CONFIG_BYTES:
            raise ResNetError(f"{path}: config.json is {info.file_size} bytes; not a Keras model file")
        config = json.loads(zf.read("config.json"))
        weights_bytes = zf.read("model.weights.h5")
    layers: list[KerasLayer] = []
    used: dict[str, int] = {}
    with h5py.File(io.BytesIO(weights_bytes), "r") as f:
        for layer in _config_layers(config):
            class_name = str(layer.get("class_name"))
            cfg = layer.get("config", {})
            folder = _snake_case(class_name)
            # Keras numbers repeated classes: conv2d, conv2d_1, conv2d_2, ... in the model's layer order.
            count = used.get(folder)
            used[folder] = 0 if count is None else count + 1
            key = folder if count is None else f"{folder}_{count + 1}"
            if class_name in ("Functional", "Sequential", "Model"):
                raise ResNetError(f"{path}: a model nested inside the model ({cfg.get('name')}) is not supported; save the inner ResNet on its own")
            if class_name not in _WEIGHTED:
                continue
            group = f.get(f"layers/{key}/vars")
            if group is None:
                raise ResNetError(f"{path}: model.weights.h5 has no layers/{key} for layer {cfg.get('name')}")
            names = _var_names(class_name, cfg)
            values = [np.asarray(group[str(i)]) for i in range(len(group))]
            if len(values) != len(names):
                raise ResNetError(f"{path}: layer {cfg.get('name')} ({class_name}) has {len(values)} variables, expected {len(names)}")
            layers.append(KerasLayer(str(cfg.get("name")), class_name, dict(zip(names, values)), cfg))
    attrs = {"config": config}
    return layers, attrs


def read_layers(path: str | Path) -> tuple[list[KerasLayer], dict[str, Any]]:
    """The layers that carry weights, in the file's order, and the file's attributes/config."""
    path = Path(path)
    if not path.is_file():
        raise ResNetError(f"Keras file not found: {path}")
    if zipfile.is_zipfile(path):
        try:
            return _read_keras_zip(path)
        except KeyError as exc:
            raise ResNetError(f"{path} is a zip but not a Keras 3 .keras file (missing {exc})") from None
    if not _is_hdf5(path):
        raise ResNetError(f"{path} is neither a Keras .h5 (HDF5) nor a .keras (zip) file")
    try:
        return _read_legacy_h5(path)
    except (OSError, KeyError) as exc:
        raise ResNetError(f"{path} is not a readable Keras HDF5 file ({exc})") from None


# --- mapping Keras layers to our names -----------------------------------------------------------


def _block_index(letters: str) -> int:
    """Tutorial/Caffe block ids: 'a', 'b', 'c', ... or 'a', 'b1', 'b2', ... (ResNet-101/152)."""
    if len(letters) > 1:
        return int(letters[1:])
    return ord(letters) - ord("a")


def _our_prefix(name: str, preact: bool) -> tuple[str, str] | None:
    """(our module path, 'conv'|'bn') of a Keras layer name; None if the name is not a ResNet layer."""
    if name in ("conv1_conv", "conv1"):
        return "conv1", "conv"
    if name in ("conv1_bn", "bn_conv1"):
        return "bn1", "bn"
    if name == "post_bn":
        return "final_norm", "bn"
    if m := _APPS.match(name):
        stage, block, part, kind = int(m[1]) - 1, int(m[2]) - 1, m[3], m[4]
        where = f"layer{stage}.{block}"
        if kind == "conv":
            return (f"{where}.downsample.0" if part == "0" else f"{where}.conv{part}"), kind
        if part == "0":
            return f"{where}.downsample.1", kind
        if preact:  # the pre-activation BN is our bn1; the BN after conv k is bn(k+1)
            return f"{where}.bn{1 if part == 'preact' else int(part) + 1}", kind
        return f"{where}.bn{part}", kind
    if m := _TUTORIAL.match(name):
        kind = "conv" if m[1] == "res" else "bn"
        where = f"layer{int(m[2]) - 1}.{_block_index(m[3])}"
        if m[4] == "1":
            return f"{where}.downsample.{0 if kind == 'conv' else 1}", kind
        return f"{where}.{kind}{'abc'.index(m[4][1]) + 1}", kind
    return None


def _to_torch(layer: KerasLayer, prefix: str) -> dict[str, Tensor]:
    w = layer.weights

    def t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    if layer.class_name == "BatchNormalization":
        channels = w["moving_mean"].shape[0]
        return {
            f"{prefix}.weight": t(w.get("gamma", np.ones(channels))),
            f"{prefix}.bias": t(w.get("beta", np.zeros(channels))),
            f"{prefix}.running_mean": t(w["moving_mean"]),
            f"{prefix}.running_var": t(w["moving_variance"]),
            f"{prefix}.num_batches_tracked": torch.tensor(0),
        }
    out = {}
    kernel = w["kernel"]
    if kernel.ndim == 4:  # (kh, kw, in, out) -> (out, in, kh, kw)
        out[f"{prefix}.weight"] = t(kernel.transpose(3, 2, 0, 1))
    else:  # Dense (in, out) -> Linear (out, in)
        out[f"{prefix}.weight"] = t(kernel.T)
    if "bias" in w:
        out[f"{prefix}.bias"] = t(w["bias"])
    return out


def _single(values: set[Any], what: str, path: Path) -> Any:
    if len(values) > 1:
        raise ResNetError(f"{path}: the layers disagree on {what} ({sorted(values)}); one value per net is supported")
    return next(iter(values)) if values else None


def _stem_pool(configs: list[dict[str, Any]], classes: list[str]) -> str | None:
    """The stem max-pool's padding read from the model config: 'valid', 'zeros' (after a
    ZeroPadding2D(1)) or 'same'; None when the file has no config."""
    for i, (class_name, cfg) in enumerate(zip(classes, configs)):
        if class_name != "MaxPooling2D":
            continue
        if cfg.get("padding") == "same":
            return "same"
        previous = (classes[i - 1], configs[i - 1]) if i else (None, {})
        if previous[0] == "ZeroPadding2D":
            pad = previous[1].get("padding")
            if pad not in (1, [1, 1], [[1, 1], [1, 1]], (1, 1), ((1, 1), (1, 1))):
                raise ResNetError(f"the stem pool's ZeroPadding2D pads {pad}; only 1 on every side is supported")
            return "zeros"
        return "valid"
    return None


def _model_config(attrs: dict[str, Any], path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    config = attrs.get("config")
    if config is None and path.is_file() and _is_hdf5(path):
        with h5py.File(path, "r") as f:
            if "model_config" in f.attrs:
                config = json.loads(_text(f.attrs["model_config"]))
    if not config:
        return [], []
    layers = _config_layers(config)
    return [str(layer.get("class_name")) for layer in layers], [layer.get("config", {}) for layer in layers]


def _to_state(layers: list[KerasLayer], preact: bool, path: Path) -> tuple[dict[str, Tensor], dict[str, KerasLayer]]:
    """Our state dict, and the conv layers by our module path."""
    dense = [layer for layer in layers if layer.class_name == "Dense"]
    if len(dense) > 1:
        raise ResNetError(f"{path}: {len(dense)} Dense layers ({', '.join(d.name for d in dense)}); a ResNet has one classifier")
    state: dict[str, Tensor] = {}
    convs: dict[str, KerasLayer] = {}
    for layer in layers:
        where = ("fc", "dense") if layer.class_name == "Dense" else _our_prefix(layer.name, preact)
        if where is None:
            raise ResNetError(f"{path}: layer {layer.name} ({layer.class_name}) is not part of a Keras ResNet")
        state.update(_to_torch(layer, where[0]))
        if where[1] == "conv":
            convs[where[0]] = layer
    return state, convs


def _depths_and_widths(convs: dict[str, KerasLayer], path: Path) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Blocks per stage and each stage's bottleneck width, as the file has them."""
    blocks: dict[int, int] = {}
    for key in convs:
        if m := re.match(r"layer(\d+)\.(\d+)\.", key):
            blocks[int(m[1])] = max(blocks.get(int(m[1]), 0), int(m[2]) + 1)
    stages = sorted(blocks)
    if not stages or stages != list(range(1, len(stages) + 1)):
        raise ResNetError(f"{path}: stages {stages} are not numbered 1..N (Keras conv2..conv5)")
    depths = tuple(blocks[s] for s in stages)
    for stage in stages:
        missing = [b + 1 for b in range(depths[stage - 1]) if f"layer{stage}.{b}.conv1" not in convs]
        if missing:
            raise ResNetError(f"{path}: stage {stage + 1} misses block(s) {missing}")
    widths = tuple(int(convs[f"layer{s}.0.conv1"].weights["kernel"].shape[-1]) for s in stages)
    if "conv1" not in convs:
        raise ResNetError(f"{path}: no stem conv (conv1_conv or conv1)")
    stem_width = convs["conv1"].weights["kernel"].shape[-1]
    if stem_width != widths[0]:
        raise ResNetError(f"{path}: the stem has {stem_width} channels but stage 1 is {widths[0]} wide; not a layout we build")
    return depths, widths


def _conv_bias(convs: dict[str, KerasLayer], preact: bool, path: Path) -> str:
    with_bias = {key for key, layer in convs.items() if "bias" in layer.weights}
    unnormalized = {k for k in convs if k == "conv1" or k.endswith(".conv3") or k.endswith("downsample.0")}
    if with_bias == set(convs):
        return "all"
    if not with_bias:
        return "none"
    if preact and with_bias == unnormalized:
        return "unnormalized"
    raise ResNetError(f"{path}: conv biases on {len(with_bias)} of {len(convs)} convs in a pattern we do not build")


def _arch(tutorial: bool, preact: bool, depths: tuple[int, ...]) -> tuple[str, dict[str, Any]]:
    """The registered variant and the options it sets (what the file's options are compared with)."""
    if tutorial:
        return "resnet50_tutorial", {"bn_eps": 1e-3, "conv_bias": "all", "pool_padding": "valid", "layers": (3, 4, 6, 3)}
    depth = _STANDARD_DEPTHS.get(depths, 50)
    standard = next(layers for layers, d in _STANDARD_DEPTHS.items() if d == depth)
    defaults = {"bn_eps": 1.001e-5, "conv_bias": "unnormalized" if preact else "all",
                "pool_padding": "zeros" if preact else "symmetric", "layers": standard}  # fmt: skip
    return (f"resnet{depth}v2_keras" if preact else f"resnet{depth}_keras"), defaults


def _preprocessing(tutorial: bool, preact: bool, in_chans: int) -> dict[str, Any]:
    """The source's image preparation as our (x/255 - mean) / std on RGB, where it is expressible."""
    if in_chans == 3 and tutorial:  # the tutorial divides the SIGNS images by 255
        return {"image_size": 64, "mean": [0.0] * 3, "std": [1.0] * 3}
    if in_chans == 3 and preact:  # keras.applications' "tf" mode: x / 127.5 - 1
        return {"image_size": 224, "mean": [0.5] * 3, "std": [0.5] * 3}
    return {}  # keras.applications v1's "caffe" mode takes BGR: not expressible without reordering conv1


def read(path: str | Path) -> Imported:
    """A Keras ResNet file as the registered variant (resnet50_keras, resnet50v2_keras,
    resnet50_tutorial, ...) with its depths, widths and numerics, and its weights in our names."""
    path = Path(path)
    layers, attrs = read_layers(path)
    if not layers:
        raise ResNetError(f"{path} holds no layer weights")
    names = [layer.name for layer in layers]
    tutorial = any(_TUTORIAL.match(n) for n in names)
    if not (tutorial or any(_APPS.match(n) for n in names)):
        raise ResNetError(
            f"{path}: layer names match neither keras.applications' (conv2_block1_1_conv) nor the tutorial's "
            f"(res2a_branch2a); first layers: {', '.join(names[:5])}"
        )
    preact = any(n.endswith("_preact_bn") or n == "post_bn" for n in names)
    state, convs = _to_state(layers, preact, path)
    depths, widths = _depths_and_widths(convs, path)

    # The options that decide the numerics: conv biases, and BN eps and the stem pool from the config.
    classes, configs = _model_config(attrs, path)
    by_name = {c.get("name"): c for c in configs}
    epsilons = {float(by_name[n]["epsilon"]) for n in names if "epsilon" in by_name.get(n, {})}
    eps = _single(epsilons, "BatchNormalization epsilon", path)
    pool = _stem_pool(configs, classes) if configs else None
    if pool == "zeros" and not preact:
        pool = "symmetric"  # after the stem's ReLU, a zero pad never wins: the same numbers
    arch, defaults = _arch(tutorial, preact, depths)
    found = {"bn_eps": defaults["bn_eps"] if eps is None else eps, "conv_bias": _conv_bias(convs, preact, path),
             "pool_padding": pool or defaults["pool_padding"], "layers": depths}  # fmt: skip
    options: dict[str, Any] = {k: v for k, v in found.items() if v != defaults[k]}
    if widths != (64, 128, 256, 512):
        options["widths"] = widths

    in_chans = int(convs["conv1"].weights["kernel"].shape[2])
    notes = [f"saved by Keras {attrs.get('keras_version', '3 (.keras)' if 'config' in attrs else '(version not recorded)')}"]
    if tutorial:
        notes.append("the tutorial's 2x2 average pool before its Dense layer equals our global average pool at 64x64 input")
    elif not preact:
        notes.append("keras.applications' ResNet50/101/152 take BGR images minus the ImageNet mean (caffe mode); "
                     "feed them that way (no image_size/mean/std recorded for `resnet predict`)")
    return Imported(
        arch=arch,
        state_dict=state,
        num_classes=int(state["fc.weight"].shape[0]) if "fc.weight" in state else 0,
        in_chans=in_chans,
        options=options,
        class_names=json.loads(attrs["class_names"]) if "class_names" in attrs else None,
        source="keras",
        notes=notes,
        preprocessing=_preprocessing(tutorial, preact, in_chans),
    )


# --- writing Keras' legacy HDF5 weights ------------------------------------------------------------


def _keras_layers(model: nn.Module, tutorial: bool) -> Iterator[tuple[str, str, str]]:
    """(Keras layer name, our module path, kind) in the order Keras builds the layers: within a
    block Keras orders by graph depth, so a projection comes after the 3x3's BN, and equal depths
    by creation (keras.applications makes the projection first, the tutorial last)."""
    preact = getattr(model, "unit", "original") == "full_preact"
    yield ("conv1" if tutorial else "conv1_conv"), "conv1", "conv"
    if not preact:
        yield ("bn_conv1" if tutorial else "conv1_bn"), "bn1", "bn"
    for s, stage_name in enumerate(model.stage_names):
        for b, block in enumerate(getattr(model, stage_name)):
            ours = f"{stage_name}.{b}"
            projection = isinstance(block.downsample, nn.Sequential)
            if tutorial:
                letters = "abcdefghijklmnopqrstuvwxyz"
                block_id = letters[b] if len(getattr(model, stage_name)) <= len(letters) else ("a" if b == 0 else f"b{b}")
                conv, bn = f"res{s + 2}{block_id}_branch", f"bn{s + 2}{block_id}_branch"
                for k, part in enumerate(("2a", "2b"), start=1):
                    yield conv + part, f"{ours}.conv{k}", "conv"
                    yield bn + part, f"{ours}.bn{k}", "bn"
                yield conv + "2c", f"{ours}.conv3", "conv"
                if projection:
                    yield conv + "1", f"{ours}.downsample.0", "conv"
                yield bn + "2c", f"{ours}.bn3", "bn"
                if projection:
                    yield bn + "1", f"{ours}.downsample.1", "bn"
                continue
            name = f"conv{s + 2}_block{b + 1}"
            if preact:
                yield f"{name}_preact_bn", f"{ours}.bn1", "bn"
            for k in (1, 2):
                yield f"{name}_{k}_conv", f"{ours}.conv{k}", "conv"
                yield f"{name}_{k}_bn", f"{ours}.bn{k + 1 if preact else k}", "bn"
            if projection:
                yield f"{name}_0_conv", f"{ours}.downsample.0", "conv"
            yield f"{name}_3_conv", f"{ours}.conv3", "conv"
            if not preact:
                if projection:
                    yield f"{name}_0_bn", f"{ours}.downsample.1", "bn"
                yield f"{name}_3_bn", f"{ours}.bn3", "bn"
    if preact:
        yield "post_bn", "final_norm", "bn"
    if getattr(model, "num_classes", 0):
        yield ("fc" if tutorial else "predictions"), "fc", "dense"


def _keras_weights(state: dict[str, Tensor], ours: str, kind: str) -> list[tuple[str, np.ndarray]]:
    def a(key: str) -> np.ndarray:
        return state[key].detach().to(torch.float32).cpu().numpy()

    if kind == "bn":
        return [("gamma", a(f"{ours}.weight")), ("beta", a(f"{ours}.bias")),
                ("moving_mean", a(f"{ours}.running_mean")), ("moving_variance", a(f"{ours}.running_var"))]  # fmt: skip
    kernel = a(f"{ours}.weight")
    out = [("kernel", kernel.transpose(2, 3, 1, 0) if kind == "conv" else kernel.T)]
    if f"{ours}.bias" in state:
        out.append(("bias", a(f"{ours}.bias")))
    return out


def write(model: nn.Module, path: str | Path, *, class_names: list[str] | None = None) -> Path:
    """Write a Keras-layout model (resnet50_keras, resnet50v2_keras, ... or reduced versions) as the
    legacy HDF5 weights file keras.applications' models load with ``load_weights``."""
    arch = str(getattr(model, "model_name", type(model).__name__))
    tutorial = arch == "resnet50_tutorial"
    if not (tutorial or re.fullmatch(r"resnet\d+(v2)?_keras", arch)) or not all(hasattr(model, a) for a in ("stage_names", "conv1")):
        raise ResNetError(f"--to keras writes Keras' own layouts (resnet50_keras, resnet50v2_keras, ..., resnet50_tutorial); this model is {arch}")
    options = getattr(model, "model_options", {})
    if any(options.get(k, v) != v for k, v in (("conv_bias", "unnormalized" if "v2" in arch else "all"), ("stem", "imagenet"), ("shortcut", "B"))):
        raise ResNetError(f"{arch} was built with options Keras' layers do not have ({options}); only layers and widths may differ")
    state = model.state_dict()
    layers = [(name, _keras_weights(state, ours, kind)) for name, ours, kind in _keras_layers(model, tutorial)]

    def save(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            # Keras 2's weights-only layout (names with ':0'), which Keras 2 and 3 both load by layer order.
            f.attrs["layer_names"] = np.array([n.encode() for n, _ in layers])
            f.attrs["backend"] = b"tensorflow"
            f.attrs["keras_version"] = b"2.15.0"
            if class_names:
                f.attrs["class_names"] = json.dumps(list(class_names)).encode()
            for name, weights in layers:
                group = f.create_group(name)
                group.attrs["weight_names"] = np.array([f"{name}/{w}:0".encode() for w, _ in weights])
                for w, value in weights:
                    group.create_dataset(f"{name}/{w}:0", data=value)

    return atomic_write(path, save)
