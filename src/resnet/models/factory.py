"""Building models: by name (``create_model``), from published weights (``from_pretrained``), from a
checkpoint file (``model_from_checkpoint``). The one module that uses both the registry and the
weights I/O, so neither of those imports the other.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from resnet.errors import ResNetError
from resnet.models import hub
from resnet.models.features import FeatureBackbone
from resnet.models.pretrained import PretrainedCfg
from resnet.models.registry import get_builder, get_pretrained_cfg, is_model, list_pretrained, pretrained_cfgs, split_name
from resnet.models.weights import (
    _load,
    checkpoint_header,
    load_pretrained,
    normalize_state_dict,
    read_state_dict,
)

PathLike = str | os.PathLike[str]
BACKBONE_OPTIONS = ("features_only", "out_indices")
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".tar")


def _option_names() -> set[str]:
    from resnet.models.resnet import ResNet

    params = inspect.signature(ResNet.__init__).parameters
    # ``layers`` (blocks per stage) overrides the builder's depth, e.g. for a reduced net read from a file.
    return {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY} | set(BACKBONE_OPTIONS) | {"layers"}


def _jsonable(value: Any) -> Any:
    """Options as they go into a checkpoint header (tuples become lists)."""
    return json.loads(json.dumps(value, default=lambda v: getattr(v, "__name__", str(v))))


def resolve_pretrained(value: str, arch: str) -> PretrainedCfg | Path:
    """What ``pretrained=value`` means for model ``arch``: a weights file, or a published weight set.

    ``value`` is a file path, a weight-set name (``resnet50.tv_in1k``, or ``resnet50`` for its
    default), or a tag of ``arch`` (``tv_in1k``, or torchvision's ``IMAGENET1K_V1``).
    """
    if Path(value).expanduser().is_file():
        return Path(value).expanduser()
    name_arch, tag = split_name(value)
    if is_model(name_arch) and (tag or pretrained_cfgs(name_arch)):
        cfg = get_pretrained_cfg(value)
        if cfg.arch != arch:
            own = ", ".join(c.name for c in pretrained_cfgs(arch)) or "none published"
            raise ResNetError(f"weight set {cfg.name} is for {cfg.arch}, not {arch}; use --model {cfg.arch}, "
                              f"or a weight set of {arch} ({own})")
        return cfg
    for cfg in pretrained_cfgs(arch):
        if value.lower() in (cfg.tag.lower(), *(a.lower() for a in cfg.aliases)):
            return cfg
    if os.sep in value or "/" in value or value.lower().endswith(_WEIGHT_SUFFIXES):
        raise ResNetError(f"weights file not found: {value}")
    own = ", ".join(c.tag for c in pretrained_cfgs(arch))
    raise ResNetError(f"'{value}' is neither a weights file nor a published weight set of {arch} "
                      f"({'its tags: ' + own if own else 'it has none'}); `resnet models --pretrained` lists them all")


def weight_set_arch(value: str) -> str | None:
    """The model a weight-set name (``resnet50``, ``resnet50.tv_in1k``) is for; None for a file or anything else."""
    if Path(value).expanduser().is_file():
        return None
    arch = split_name(value)[0]
    return arch if is_model(arch) and pretrained_cfgs(arch) else None


def _pretrained_source(pretrained: bool | str, arch: str, tagged: PretrainedCfg | None) -> PretrainedCfg | Path | None:
    if isinstance(pretrained, str):
        return resolve_pretrained(pretrained, arch)
    if pretrained:
        return tagged or get_pretrained_cfg(arch)  # the name's tag, else the model's default weight set
    return None


def _load_published(model: nn.Module, cfg: PretrainedCfg, path: PathLike | None, *, unsafe: bool) -> None:
    file, sha256 = hub.weights_file(cfg, path)
    result = load_pretrained(model, file, unsafe=unsafe)
    model.pretrained_from = {"name": cfg.name, "url": cfg.url, "sha256": sha256}
    model.pretrained_cfg = cfg
    model.pretrained_file = str(file)
    if not result.skipped_keys and getattr(model, "num_classes", None) == cfg.num_classes:
        # The published classifier is intact: its classes and preprocessing still describe the model.
        model.pretrained_metadata = {k: v for k, v in cfg.metadata().items() if k not in ("arch", "num_classes", "in_chans")}


def _load_file(model: nn.Module, path: Path, *, unsafe: bool) -> None:
    load_pretrained(model, path, unsafe=unsafe)
    model.pretrained_from = {"file": str(path), "sha256": hub.file_sha256(path)}
    model.pretrained_file = str(path)


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int = 3,
    pretrained: bool | str = False,
    pretrained_path: PathLike | None = None,
    unsafe: bool = False,
    **options: Any,
) -> nn.Module:
    """Build a registered model; ``num_classes=None`` keeps the family's default (1000, or 10 for CIFAR nets).

    ``name`` may carry a weight-set tag (``"resnet50.tv2_in1k"``, timm's form). ``pretrained=True``
    loads that weight set (the model's default without a tag), from ``pretrained_path`` when given,
    else the cache, else a download, hash-checked; a string names the weights instead (a weight-set
    name, a tag, or a file). ``pretrained_path`` alone loads a file (safetensors or a weights-only
    PyTorch file). Either way a classifier that does not fit ``num_classes`` starts fresh, a first
    conv is adapted to ``in_chans``, and both are reported. ``features_only=True`` (with
    ``out_indices``) returns the backbone wrapper ``FeatureBackbone`` instead of the classifier.
    """
    arch, tag = split_name(name)
    builder = get_builder(arch)
    cfg = get_pretrained_cfg(arch, tag) if tag else None  # an unknown tag fails before anything is built
    allowed = _option_names() - {"num_classes", "in_chans"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ResNetError(f"unknown option(s) {', '.join(unknown)} for {arch}; options are: {', '.join(sorted(allowed))}")
    net_options = {k: v for k, v in options.items() if k not in BACKBONE_OPTIONS}
    features_only, out_indices = bool(options.get("features_only")), options.get("out_indices")
    if out_indices is not None and not features_only:
        raise ResNetError("out_indices only applies with features_only=True")
    source = _pretrained_source(pretrained, arch, cfg)
    if num_classes is None and isinstance(source, PretrainedCfg):
        num_classes = source.num_classes  # the published classifier, unless another size is asked for
    kwargs = dict(net_options, in_chans=in_chans)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = builder(**kwargs)
    if isinstance(source, PretrainedCfg):
        _load_published(model, source, pretrained_path, unsafe=unsafe)
    elif source is not None or pretrained_path is not None:
        _load_file(model, Path(source or pretrained_path), unsafe=unsafe)
    if features_only:
        net, model = model, FeatureBackbone(model, out_indices)
        for provenance in ("pretrained_from", "pretrained_cfg", "pretrained_file"):  # not the classes: no classifier
            if hasattr(net, provenance):
                setattr(model, provenance, getattr(net, provenance))
    model.model_name = arch
    model.model_options = _jsonable(options)
    return model


def from_pretrained(name: str, *, path: PathLike | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A published weight set, ready to use: (model in eval mode, metadata).

    ``name`` is ``arch.tag`` or ``arch`` (its default weight set); ``path`` an explicit file for it.
    The metadata has the keys of a checkpoint header (``arch``, ``num_classes``, ``in_chans``,
    ``class_names``, ``mean``, ``std``, ``image_size``) plus ``resize_size``, ``crop_fraction``,
    ``interpolation`` (the weights' own preprocessing: resize the shorter side, centre-crop),
    ``pretrained``, ``url``, ``sha256``, ``source``, ``license``, ``top1`` and ``file``.
    """
    cfg = get_pretrained_cfg(name)
    model = create_model(cfg.arch, pretrained=cfg.name, pretrained_path=path)
    return model.eval(), {**cfg.metadata(), "model_options": {}, "file": model.pretrained_file}


def _infer_shapes(state: dict[str, Any]) -> dict[str, int]:
    """num_classes and in_chans as a plain state dict's classifier and first conv say."""
    found: dict[str, int] = {}
    if "fc.weight" in state:
        found["num_classes"] = int(state["fc.weight"].shape[0])
    for key in ("conv1.weight", "conv1.0.weight"):
        if key in state:
            found["in_chans"] = int(state[key].shape[1])
            break
    return found


def _published_by_file_name(path: Path, arch: str | None) -> PretrainedCfg | None:
    """The published weight set ``path`` is, recognised by its file name and confirmed by its hash."""
    for name in list_pretrained(f"{arch}.*" if arch else "*"):
        cfg = get_pretrained_cfg(name)
        if cfg.file_name == path.name and cfg.sha256 and hub.file_sha256(path).startswith(cfg.sha256):
            return cfg
    return None


def model_from_checkpoint(
    path: PathLike,
    *,
    unsafe: bool = False,
    model: str | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes and load its weights; returns (model, metadata).

    A resnet checkpoint (safetensors with our header) says everything itself. Any other weights file
    (a torchvision ``.pth``, a run's ``last.state.pt``, a plain safetensors) needs to be told which
    net it is: ``model`` (a registered name), else ``metadata["arch"]`` (e.g. from the run folder's
    config.json); its number of classes and input channels are read from the tensors unless given.
    """
    path = Path(path)
    header = checkpoint_header(path)
    if header is not None:
        if model is not None and split_name(model)[0] != header["arch"]:
            raise ResNetError(f"{path} is a {header['arch']} checkpoint, not a {model}; drop --model (the file says what it is)")
        options = dict(header.get("model_options") or {})
        net = create_model(header["arch"], num_classes=header.get("num_classes"), in_chans=header.get("in_chans") or 3, **options)
        _load(net, normalize_state_dict(read_state_dict(path), source=str(path)), strict=True, source=str(path))
        return net, header
    meta = dict(metadata or {})
    published = _published_by_file_name(path, split_name(model)[0] if model else meta.get("arch"))
    if published is not None:
        # A published file as torch hub names it (e.g. torchvision's own download): its classes and preprocessing.
        meta = {**published.metadata(), **meta}
    if model is not None:
        if split_name(model)[0] != meta.get("arch"):
            meta.pop("model_options", None)  # the run's options belong to another net
        meta["arch"] = split_name(model)[0]
    if not meta.get("arch"):
        raise ResNetError(f"{path} is not a resnet checkpoint (it carries no model metadata); pass --model NAME "
                          "(in Python: model_from_checkpoint(path, model=NAME)) to say which net it is")
    state = normalize_state_dict(read_state_dict(path, unsafe=unsafe), source=str(path))
    shapes = {**_infer_shapes(state), **{k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}}
    meta.update(shapes)
    options = dict(meta.get("model_options") or {})
    net = create_model(meta["arch"], num_classes=meta.get("num_classes"), in_chans=meta.get("in_chans") or 3, **options)
    _load(net, state, strict=True, source=str(path))
    meta.setdefault("num_classes", net.num_classes)
    meta.setdefault("in_chans", net.in_chans)
    meta.setdefault("model_options", options)
    return net, meta
