"""PyTorch checkpoints (torchvision, timm, our own) as an ``Imported`` record.

Files are read the safe way ``resnet.load_weights`` reads them (safetensors, or
``torch.load(weights_only=True)``). A checkpoint of ours names its architecture in its header; a
bare torchvision/timm state dict does not, so the architecture is the first registered model (the
torchvision/timm names before the foreign variants) whose tensors have exactly the file's shapes,
unless ``model`` names it.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import torch
from torch import Tensor

from resnet.convert.base import Imported
from resnet.errors import ResNetError
from resnet.models.weights import METADATA_KEY, _starts_like_a_pickle, is_safetensors, normalize_state_dict, read_metadata, read_state_dict

# Variants whose tensors equal a torchvision/timm model's but whose numerics differ: tried last.
# (Plain nets have no shortcut tensors, just as the CIFAR nets' option A has none.)
_FOREIGN = re.compile(r"(_keras|_slim|_tutorial|_v1)$|^plain")


def detect(path: str | Path) -> bool:
    path = Path(path)
    return path.is_file() and (is_safetensors(path) or zipfile.is_zipfile(path) or _starts_like_a_pickle(path))


def _shapes(state: dict[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items() if not k.endswith("num_batches_tracked")}


def _depths(state: dict[str, Tensor]) -> tuple[int, ...]:
    blocks: dict[int, int] = {}
    for key in state:
        if m := re.match(r"layer(\d+)\.(\d+)\.", key):
            blocks[int(m[1])] = max(blocks.get(int(m[1]), 0), int(m[2]) + 1)
    return tuple(blocks[s] for s in sorted(blocks))


def _matches(name: str, wanted: dict[str, tuple[int, ...]], num_classes: int, in_chans: int, options: dict[str, object]) -> bool:
    from resnet.models import create_model

    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            model = create_model(name, num_classes=num_classes, in_chans=in_chans, **options)
    except ResNetError:
        return False
    return _shapes(model.state_dict()) == wanted


def infer_arch(state: dict[str, Tensor], num_classes: int, in_chans: int) -> tuple[str, dict[str, object]]:
    """The registered model whose tensors have exactly these shapes: first at its own depth, then
    with ``layers`` overridden (a reduced-depth net)."""
    from resnet.models import list_models

    wanted, depths = _shapes(state), _depths(state)
    # A one-block-per-stage probe rules most candidates out cheaply (stem, first blocks, head).
    probe = {k: v for k, v in wanted.items() if not re.match(r"layer\d+\.[1-9]", k)}
    names = [n for n in sorted(list_models(), key=lambda n: bool(_FOREIGN.search(n)))
             if _matches(n, probe, num_classes, in_chans, {"layers": (1,) * len(depths)})]  # fmt: skip
    for options in ({}, {"layers": depths}):
        for name in names:
            if _matches(name, wanted, num_classes, in_chans, options):
                return name, options
    raise ResNetError("no registered model has this checkpoint's tensors; pass --model NAME (see `resnet models`)")


def read(path: str | Path, *, model: str | None = None) -> Imported:
    path = Path(path)
    if is_safetensors(path):
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            ours = METADATA_KEY in (fh.metadata() or {})
        if ours and model is None:
            meta = read_metadata(path)
            state = normalize_state_dict(read_state_dict(path), source=str(path))
            origin = meta.get("converted_from") or {}
            return Imported(
                arch=meta["arch"],
                state_dict=state,
                num_classes=int(meta.get("num_classes") or 0),
                in_chans=int(meta.get("in_chans") or 3),
                options=dict(meta.get("model_options") or {}),
                class_names=meta.get("class_names"),
                source=origin.get("source", "resnet") if isinstance(origin, dict) else "resnet",
                preprocessing={k: meta[k] for k in ("image_size", "mean", "std") if meta.get(k)},
            )
    state = normalize_state_dict(read_state_dict(path), source=str(path))
    fc = state.get("fc.weight")
    num_classes = int(fc.shape[0]) if fc is not None else 0
    first = state.get("conv1.weight", state.get("conv1.0.weight"))
    in_chans = int(first.shape[1]) if first is not None else 3
    if model is None:
        arch, options = infer_arch(state, num_classes, in_chans)
        notes = [f"architecture inferred from the tensors' shapes: {arch}"]
    else:
        arch, options, notes = model, {}, []
    # Files saved without BN's step counters still load strictly.
    for key in [k[: -len("running_mean")] for k in state if k.endswith("running_mean")]:
        state.setdefault(key + "num_batches_tracked", torch.tensor(0))
    return Imported(arch=arch, state_dict=state, num_classes=num_classes, in_chans=in_chans, options=options, source="pytorch", notes=notes)
