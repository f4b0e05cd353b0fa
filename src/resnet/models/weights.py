"""Loading and saving weights without ever running code from a file.

Safetensors files are plain tensors. PyTorch files are read with ``torch.load(weights_only=True)``,
whose unpickler only builds tensors and containers; a file that needs more (a pickled model, or a
malicious ``__reduce__``) is refused unless the caller passes ``unsafe=True`` for a file they trust.
A saved checkpoint carries its architecture and data metadata in the safetensors header (key
``"resnet"``, JSON), so ``model_from_checkpoint`` rebuilds the model from the file alone.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from resnet import report
from resnet.errors import ResNetError
from resnet.io import atomic_write
from resnet.models.features import HEAD_KEY_PREFIXES, FeatureBackbone

PathLike = str | os.PathLike[str]
METADATA_KEY = "resnet"
FORMAT_VERSION = 1
# Wrappers that training scripts put around a state dict, outermost first.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "net")
# Prefixes added by DataParallel/DDP ("module."), detection/segmentation frameworks ("backbone.")
# and torch.compile ("_orig_mod.").
_PREFIXES = ("module.", "backbone.", "_orig_mod.")
# Other layouts of the same networks, renamed to ours. timm's resnet*/resnet*c/resnet*d use exactly
# our names; mmpretrain/mmcv ResNetV1c/V1d name the deep stem and head differently; timm's
# pre-activation resnetv2_* (our resnet*_v2) use stem/stages/blocks/norm names and a 1x1-conv head.
_RENAMES = (
    (re.compile(r"^stem\.0\.conv\."), "conv1.0."),
    (re.compile(r"^stem\.0\.bn\."), "conv1.1."),
    (re.compile(r"^stem\.1\.conv\."), "conv1.3."),
    (re.compile(r"^stem\.1\.bn\."), "conv1.4."),
    (re.compile(r"^stem\.2\.conv\."), "conv1.6."),
    (re.compile(r"^stem\.2\.bn\."), "bn1."),
    (re.compile(r"^head\.fc\."), "fc."),
    (re.compile(r"^stem\.conv\."), "conv1."),
    (re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\."), lambda m: f"layer{int(m[1]) + 1}.{m[2]}."),
    (re.compile(r"^(layer\d+\.\d+\.)norm(\d)\."), r"\1bn\2."),
    (re.compile(r"^(layer\d+\.\d+\.)downsample\.conv\."), r"\1downsample.0."),
    (re.compile(r"^norm\."), "final_norm."),
)
_MAX_LISTED = 8


@dataclass
class LoadResult:
    """What a load did: keys the model kept its own values for, keys of the file that were not used."""

    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    skipped_keys: list[str] = field(default_factory=list)  # present in both but deliberately not loaded

    @property
    def exact(self) -> bool:
        return not (self.missing_keys or self.unexpected_keys or self.skipped_keys)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside torch.compile / DataParallel / DDP wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or (model.module if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else None)
        if inner is None:
            return model
        model = inner


def _listed(keys: list[str]) -> str:
    more = f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def is_safetensors(path: PathLike) -> bool:
    """A safetensors file starts with an 8-byte header length and then the JSON header's '{'."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _starts_like_a_pickle(path: Path) -> bool:
    """Legacy (non-zip) torch.save files are a pickle: PROTO opcode 0x80, then the protocol number."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _unpickling_reason(exc: Exception) -> str:
    """The line of torch's weights-only error that names the refused object."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line or "unsupported" in line]
    return (named or lines or ["unsupported object"])[0][:200].rstrip(".")


def read_state_dict(path: PathLike, *, unsafe: bool = False) -> dict[str, Any]:
    """The raw contents of a weights file (safetensors, or a PyTorch file loaded weights-only)."""
    path = Path(path)
    if not path.is_file():
        raise ResNetError(f"weights file not found: {path}")
    if is_safetensors(path):
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ResNetError(f"{path} is not a readable safetensors file ({exc}); re-save or re-download it") from None
    if not (zipfile.is_zipfile(path) or _starts_like_a_pickle(path)):
        raise ResNetError(f"{path} is neither a safetensors nor a PyTorch weights file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not unsafe:
            raise ResNetError(
                f"{path} holds Python objects besides tensors ({_unpickling_reason(exc)}), and loading them "
                "could run code; refused. If you trust its source, load it with unsafe=True (--unsafe-load), "
                "or re-save its weights as safetensors"
            ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise ResNetError(f"{path} is not a readable PyTorch weights file ({str(exc).splitlines()[0][:160]})") from None
    report.warn(f"loading {path} with full unpickling (unsafe=True): only do this for files you trust")
    return torch.load(path, map_location="cpu", weights_only=False)


def normalize_state_dict(obj: Any, *, source: str = "state dict") -> dict[str, Tensor]:
    """Unwrap {"state_dict": ...}-style containers, strip wrapper prefixes, rename known layouts."""
    while True:
        if isinstance(obj, nn.Module):
            obj = obj.state_dict()
        if not isinstance(obj, Mapping):
            raise ResNetError(f"{source} holds a {type(obj).__name__}, not a state dict of tensors")
        if any(isinstance(v, Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], (Mapping, nn.Module))), None)
        if inner is None:
            raise ResNetError(f"{source} has no tensors; found keys {_listed(sorted(map(str, obj)))}")
        obj = inner
    state: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, Tensor):
            continue  # e.g. an epoch counter stored beside the weights
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        for pattern, replacement in _RENAMES:
            key = pattern.sub(replacement, key)
        if key == "fc.weight" and value.ndim == 4 and value.shape[2:] == (1, 1):
            value = value.flatten(1)  # a 1x1-conv classifier (timm resnetv2) is a linear layer
        state[key] = value
    return state


def _shape_mismatches(model: nn.Module, state: Mapping[str, Tensor]) -> list[str]:
    own = model.state_dict()
    return [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]


def _describe_mismatch(model: nn.Module, state: Mapping[str, Tensor], keys: list[str]) -> str:
    own = model.state_dict()
    parts = [f"{k} model {tuple(own[k].shape)} vs checkpoint {tuple(state[k].shape)}" for k in keys]
    return "; ".join(parts)


def _without_head_for_backbone(model: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A backbone has no classifier: a classifier checkpoint's head keys are not meant for it."""
    if not isinstance(model, FeatureBackbone):
        return state
    return {k: v for k, v in state.items() if not k.startswith(HEAD_KEY_PREFIXES)}


def _load(model: nn.Module, state: dict[str, Tensor], *, strict: bool, source: str, allow_missing: set[str] = frozenset()) -> LoadResult:
    model = unwrap_model(model)
    state = _without_head_for_backbone(model, state)
    name = getattr(model, "model_name", type(model).__name__)
    mismatched = _shape_mismatches(model, state)
    if mismatched:
        raise ResNetError(
            f"{source} does not fit {name}: {len(mismatched)} tensor(s) differ in shape: "
            f"{_describe_mismatch(model, state, mismatched)}"
        )
    incompatible = model.load_state_dict(state, strict=False)
    result = LoadResult(
        missing_keys=[k for k in incompatible.missing_keys if k not in allow_missing],
        unexpected_keys=list(incompatible.unexpected_keys),
    )
    if strict and (result.missing_keys or result.unexpected_keys):
        problems = []
        if result.missing_keys:
            problems.append(f"missing {len(result.missing_keys)} key(s): {_listed(result.missing_keys)}")
        if result.unexpected_keys:
            problems.append(f"unexpected {len(result.unexpected_keys)} key(s): {_listed(result.unexpected_keys)}")
        raise ResNetError(f"{source} does not match {name}: {'; '.join(problems)} (is it a checkpoint of another architecture?)")
    return result


def load_weights(
    model: nn.Module,
    path_or_state_dict: PathLike | Mapping[str, Any],
    *,
    strict: bool = True,
    unsafe: bool = False,
) -> LoadResult:
    """Load weights into ``model`` in place.

    Accepts a safetensors or PyTorch file, or an in-memory state dict, possibly wrapped
    ({"state_dict": ...}, {"model": ...}) or prefixed ("module.", "backbone."). Any tensor whose
    shape differs raises one ResNetError naming each such key; with ``strict`` so do missing or
    unexpected keys, which are otherwise returned in the LoadResult.
    """
    if isinstance(path_or_state_dict, Mapping):
        source, raw = "state dict", path_or_state_dict
    else:
        source, raw = str(path_or_state_dict), read_state_dict(path_or_state_dict, unsafe=unsafe)
    return _load(model, normalize_state_dict(raw, source=source), strict=strict, source=source)


def _adapt_input_conv(weight: Tensor, in_chans: int) -> Tensor:
    """Fit first-conv weights trained on RGB to ``in_chans`` channels (timm's adapt_input_conv):
    sum for grayscale, otherwise repeat the channels and rescale so activations keep their size."""
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def load_pretrained(model: nn.Module, path_or_state_dict: PathLike | Mapping[str, Any], *, unsafe: bool = False) -> LoadResult:
    """Load a checkpoint as the starting point for a new task (create_model's ``pretrained_path``).

    Everything must match except the classifier, which stays freshly initialised when its shape
    differs (a new number of classes) or the model has none, and the first conv, which is adapted
    when only its input channels differ. Both are reported.
    """
    model = unwrap_model(model)
    if isinstance(path_or_state_dict, Mapping):
        source, raw = "state dict", path_or_state_dict
    else:
        source, raw = str(path_or_state_dict), read_state_dict(path_or_state_dict, unsafe=unsafe)
    state = _without_head_for_backbone(model, normalize_state_dict(raw, source=source))
    own = model.state_dict()
    skipped: list[str] = []
    head = [k for k in ("fc.weight", "fc.bias") if k in state]
    notes: list[str] = []
    if head and (any(k not in own or own[k].shape != state[k].shape for k in head)):
        theirs = tuple(state["fc.weight"].shape) if "fc.weight" in state else None
        ours = tuple(own["fc.weight"].shape) if "fc.weight" in own else None
        for k in head:
            del state[k]
        skipped += head
        if ours is None:
            why = "the model has no classifier"
        elif theirs is not None and theirs[1:] == ours[1:]:
            why = f"it has {theirs[0]} classes, the model {ours[0]}"
        else:
            why = f"its weight has shape {theirs}, the model's {ours}"
        notes.append(f"classifier not loaded from {source}: {why}; the classifier starts freshly initialised")
    for key in ("conv1.weight", "conv1.0.weight"):
        if key in state and key in own and state[key].shape != own[key].shape and state[key].shape[0] == own[key].shape[0]:
            channels = state[key].shape[1]
            state[key] = _adapt_input_conv(state[key], own[key].shape[1])
            notes.append(f"first conv adapted from {channels} checkpoint channel(s) to in_chans={own[key].shape[1]}")
    result = _load(model, state, strict=True, source=source, allow_missing=set(skipped))
    for note in notes:  # only once the rest has loaded: a refused checkpoint says one thing, the refusal
        report.info(note)
    result.skipped_keys = skipped
    return result


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()  # numpy arrays / tensors of mean, std
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ResNetError(f"checkpoint metadata value of type {type(value).__name__} cannot be stored as JSON")


def save_weights(model: nn.Module, path: PathLike, *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write the weights as safetensors, atomically, with the model's rebuild recipe in the header.

    The header key "resnet" holds JSON with ``arch``, ``num_classes``, ``in_chans``,
    ``model_options`` and whatever ``metadata`` adds (class_names, mean, std, image_size, ...).
    A model started from published or other pretrained weights also records where they came from
    (``pretrained_from``), and one that still has the published classifier their classes and
    preprocessing (``pretrained_metadata``, which ``metadata`` overrides).
    """
    model = unwrap_model(model)
    header = {
        **getattr(model, "pretrained_metadata", {}),
        "format_version": FORMAT_VERSION,
        "arch": getattr(model, "model_name", None),
        "num_classes": getattr(model, "num_classes", None),
        "in_chans": getattr(model, "in_chans", None),
        "model_options": getattr(model, "model_options", {}),
    }
    if getattr(model, "pretrained_from", None):
        header["pretrained_from"] = model.pretrained_from
    header.update(metadata or {})
    text = json.dumps(header, default=_json_default)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={METADATA_KEY: text}))


def checkpoint_header(path: PathLike) -> dict[str, Any] | None:
    """The "resnet" JSON of a safetensors header; None for a file without one (another format, a plain
    state dict). A header that is there but damaged is an error."""
    path = Path(path)
    if not path.is_file():
        raise ResNetError(f"checkpoint not found: {path}")
    if not is_safetensors(path):
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ResNetError(f"{path} is not a readable safetensors file ({exc})") from None
    if METADATA_KEY not in meta:
        return None
    try:
        data = json.loads(meta[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ResNetError(f"{path}: the '{METADATA_KEY}' metadata is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not data.get("arch"):
        raise ResNetError(f"{path}: the '{METADATA_KEY}' metadata names no architecture ('arch'); it cannot rebuild a model")
    return data


def read_metadata(path: PathLike) -> dict[str, Any]:
    """The "resnet" JSON of a checkpoint's safetensors header."""
    data = checkpoint_header(path)
    if data is None:
        if not is_safetensors(path):
            raise ResNetError(f"{path} is not a safetensors file, so it carries no model metadata; use a .safetensors checkpoint saved by resnet")
        raise ResNetError(f"{path} is not a resnet checkpoint (no '{METADATA_KEY}' metadata in its header); build the model with create_model and use load_weights")
    return data
