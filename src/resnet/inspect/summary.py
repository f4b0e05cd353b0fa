"""Per-layer summary of a model: output shapes, parameters and multiply-adds, from one forward pass.

Multiply-adds (MACs) are counted the way the ResNet paper and torchvision's published figures count
them: a convolution costs Cout*Hout*Wout * Cin*kh*kw/groups, a linear layer in*out (biases are not
counted). Everything else — BatchNorm, activations, pooling and the residual additions — is cheap
next to that; it is counted separately (as elements processed) and left out of the headline figure.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from resnet.errors import ResNetError

# Element-wise work reported beside the headline, per kind of module.
_OTHER_KINDS: tuple[tuple[str, tuple[type[nn.Module], ...]], ...] = (
    ("batchnorm", (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)),
    ("activation", (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Hardswish, nn.Tanh)),
    ("pool", (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)),
)


@dataclass(frozen=True)
class LayerInfo:
    """One module of the model as the forward pass saw it (MACs include its sub-modules')."""

    name: str
    type: str
    depth: int
    output_shape: tuple[int, ...] | None
    params: int
    trainable: int
    macs: int


@dataclass(frozen=True)
class Summary:
    """What ``summary`` measured; ``params``, ``trainable_params`` and ``macs`` are plain ints."""

    model: str
    input_size: tuple[int, ...]
    layers: list[LayerInfo]
    params: int
    trainable_params: int
    macs: int
    # Elements processed by the cheap operations that the headline leaves out.
    other_ops: dict[str, int] = field(default_factory=dict)

    def rows(self, depth: int | None = None) -> list[LayerInfo]:
        """The layers down to ``depth`` levels of nesting (all of them when None)."""
        return [layer for layer in self.layers if depth is None or layer.depth <= depth]

    def to_dict(self, depth: int | None = None) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_size": list(self.input_size),
            "params": self.params,
            "trainable_params": self.trainable_params,
            "macs": self.macs,
            "other_ops": dict(self.other_ops),
            "layers": [
                {**asdict(layer), "output_shape": list(layer.output_shape) if layer.output_shape else None}
                for layer in self.rows(depth)
            ],
        }

    def table(self, depth: int | None = 2) -> tuple[str, list[str], list[list[str]]]:
        """(title, columns, rows) of the per-layer table, names indented by nesting, as `resnet summary` shows it."""
        rows = [
            ["  " * (layer.depth - 1) + layer.name, layer.type,
             "x".join(map(str, layer.output_shape[1:])) if layer.output_shape else "",
             f"{layer.params:,}", f"{layer.trainable:,}", f"{layer.macs:,}"]
            for layer in self.rows(depth)
        ]
        title = f"{self.model} at {'x'.join(map(str, self.input_size))}"
        return title, ["layer", "type", "output", "params", "trainable", "MACs"], rows

    def totals(self) -> str:
        """The lines under the table: parameters, the headline MACs, and the cheap work left out of it."""
        other = ", ".join(f"{k} {human(v)}" for k, v in self.other_ops.items())
        return (f"total params: {self.params:,} ({self.trainable_params:,} trainable)\n"
                f"MACs (conv + linear): {self.macs:,} = {human(self.macs)}\n"
                f"not in the headline, elements processed by: {other}")

    def __str__(self) -> str:
        """The table `resnet summary` prints (stages and blocks), so ``print(summary(model))`` reads like Keras'."""
        from resnet.report import format_table

        return format_table(*self.table()) + "\n" + self.totals()

    def to_csv(self, depth: int | None = None) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["name", "type", "depth", "output_shape", "params", "trainable", "macs"])
        for layer in self.rows(depth):
            shape = "x".join(map(str, layer.output_shape)) if layer.output_shape else ""
            writer.writerow([layer.name, layer.type, layer.depth, shape, layer.params, layer.trainable, layer.macs])
        writer.writerow(["total", "", 0, "", self.params, self.trainable_params, self.macs])
        return buffer.getvalue()


def layer_macs(module: nn.Module, inputs: Sequence[Any], output: Any) -> int:
    """Multiply-adds of one convolution or linear layer for this call (0 for anything else)."""
    if not isinstance(output, torch.Tensor):
        return 0
    if isinstance(module, nn.modules.conv._ConvNd):
        # Each output element is a dot product over Cin/groups input channels and the kernel window.
        kernel = 1
        for k in module.kernel_size:
            kernel *= k
        return output.numel() * (module.in_channels // module.groups) * kernel
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def _other_kind(module: nn.Module) -> str | None:
    for kind, types in _OTHER_KINDS:
        if isinstance(module, types):
            return kind
    return None


def _other_elements(module: nn.Module, inputs: Sequence[Any], output: torch.Tensor) -> int:
    if isinstance(module, (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)):
        return inputs[0].numel() if inputs and isinstance(inputs[0], torch.Tensor) else output.numel()
    if isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
        window = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * (output.dim() - 2)
        size = 1
        for k in window:
            size *= k
        return output.numel() * size
    return output.numel()


class _CountAdds(TorchDispatchMode):
    """Counts elements produced by tensor + tensor additions (the residual shortcuts)."""

    _ADDS = {torch.ops.aten.add.Tensor, torch.ops.aten.add_.Tensor}

    def __init__(self) -> None:
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        if func in self._ADDS and len(args) >= 2 and all(isinstance(a, torch.Tensor) and a.dim() > 0 for a in args[:2]):
            self.elements += out.numel()
        return out


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    if isinstance(value, dict):
        return _first_tensor(list(value.values()))
    return None


def parse_input_size(text: str) -> tuple[int, ...]:
    """``"3x224x224"`` -> ``(3, 224, 224)``; also accepts ``"224"`` (3 channels, square)."""
    try:
        parts = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        parts = ()
    if len(parts) == 1:
        parts = (3, parts[0], parts[0])
    if len(parts) not in (3, 4) or min(parts) < 1:
        raise ResNetError(f"--input {text!r} is not an image size; write CxHxW, e.g. 3x224x224")
    return parts


def summary(model: nn.Module, input_size: Sequence[int] = (3, 224, 224), *, device: str | torch.device | None = None) -> Summary:
    """Run one forward pass (eval mode, no gradients) on zeros of ``input_size`` and measure each layer.

    ``input_size`` is (C, H, W) for one image — the usual way to quote MACs — or (N, C, H, W), in
    which case the figures are for the whole batch.
    """
    size = tuple(int(s) for s in input_size)
    if len(size) == 3:
        size = (1, *size)
    if len(size) != 4 or min(size) < 1:
        raise ResNetError(f"input size must be (C, H, W) or (N, C, H, W), got {tuple(input_size)}")
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    expected = getattr(model, "in_chans", None)
    if isinstance(expected, int) and expected != size[1]:
        raise ResNetError(f"the model takes {expected}-channel images but the input size has {size[1]}; use --input {expected}x{size[2]}x{size[3]}")

    names = {module: name for name, module in model.named_modules() if name}
    order: list[str] = []
    shapes: dict[str, tuple[int, ...] | None] = {}
    own_macs: dict[str, int] = {}
    other = {kind: 0 for kind, _ in _OTHER_KINDS}

    def pre_hook(module: nn.Module, inputs: Any) -> None:
        name = names[module]
        if name not in shapes:
            order.append(name)
            shapes[name] = None

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        name = names[module]
        tensor = _first_tensor(output)
        shapes[name] = tuple(tensor.shape) if tensor is not None else None
        if next(module.children(), None) is None:  # leaves only: a parent's cost is its children's
            own_macs[name] = own_macs.get(name, 0) + layer_macs(module, inputs, output)
            kind = _other_kind(module)
            if kind is not None and tensor is not None:
                other[kind] += _other_elements(module, inputs, tensor)

    handles = [m.register_forward_pre_hook(pre_hook) for m in names] + [m.register_forward_hook(hook) for m in names]
    was_training = model.training
    model.eval()
    adds = _CountAdds()
    try:
        with torch.no_grad(), adds:
            model(torch.zeros(size, device=device))
    except RuntimeError as exc:
        raise ResNetError(f"the model cannot take input of size {'x'.join(map(str, size[1:]))} ({str(exc).splitlines()[0]})") from exc
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    other["add"] = adds.elements

    layers = []
    for name in order:
        module = model.get_submodule(name)
        if isinstance(module, nn.Identity):  # placeholders (e.g. no max-pool in a CIFAR net)
            continue
        prefix = name + "."
        macs = sum(v for k, v in own_macs.items() if k == name or k.startswith(prefix))
        params = list(module.parameters())
        layers.append(LayerInfo(
            name=name,
            type=type(module).__name__,
            depth=name.count(".") + 1,
            output_shape=shapes[name],
            params=sum(p.numel() for p in params),
            trainable=sum(p.numel() for p in params if p.requires_grad),
            macs=macs,
        ))
    all_params = list(model.parameters())
    return Summary(
        model=str(getattr(model, "model_name", type(model).__name__)),
        input_size=size[1:] if size[0] == 1 else size,
        layers=layers,
        params=sum(p.numel() for p in all_params),
        trainable_params=sum(p.numel() for p in all_params if p.requires_grad),
        macs=sum(own_macs.values()),
        other_ops=other,
    )


def default_input_size(name: str, in_chans: int = 3) -> tuple[int, int, int]:
    """The image size a registered model is meant for: 32x32 for the CIFAR nets, else 224x224."""
    # The registry's CIFAR nets: resnet20/32/44/56/110/1202, plain20.., preact_resnet110/164/1001.
    cifar = re.fullmatch(r"(resnet|plain|preact_resnet)(20|32|44|56|110|164|1001|1202)", name)
    side = 32 if cifar else 224
    return (in_chans, side, side)


def meta_model(name: str, **options: Any) -> nn.Module:
    """Build a registered model on the meta device: shapes and parameter counts, no memory, no init time.

    Enough for ``summary``, ``table1`` and diagrams, which need shapes, never values.
    """
    from resnet.models import create_model

    with torch.device("meta"):
        return create_model(name, **options)


def _looks_like_a_path(source: str) -> bool:
    # Registered names are bare words (resnet50, resnext50_32x4d): a separator or a suffix means a file.
    return Path(source).exists() or os.sep in source or "/" in source or Path(source).suffix != ""


def inspection_model(
    source: str, *, num_classes: int | None = None, in_chans: int | None = None
) -> tuple[nn.Module, tuple[int, int, int], str]:
    """The meta-device model ``source`` names, its natural input size (C, H, W), and a label for titles.

    ``source`` is a registered name (``num_classes``/``in_chans`` apply), or a checkpoint file or run
    folder: then the model is the one its header describes (classes, channels, options), its input
    size the one it was trained at, as Keras' ``model.summary()`` describes the model one trained.
    """
    if not _looks_like_a_path(source):
        options = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None}
        model = meta_model(source, **options)
        return model, default_input_size(source, int(getattr(model, "in_chans", 3))), source
    from resnet.models import read_metadata
    from resnet.train.inference import resolve_checkpoint, run_config_of

    given = [flag for flag, value in (("--num-classes", num_classes), ("--in-chans", in_chans)) if value is not None]
    if given:
        raise ResNetError(f"{' and '.join(given)}: only with a registered model name; the checkpoint {source} sets its own")
    if not Path(source).exists():
        raise ResNetError(f"{source}: no such checkpoint file or run folder, nor a registered model name (`resnet models` lists them)")
    file = resolve_checkpoint(source)
    meta = read_metadata(file)
    model = meta_model(str(meta["arch"]), num_classes=meta.get("num_classes"), in_chans=meta.get("in_chans") or 3,
                       **dict(meta.get("model_options") or {}))
    channels = int(getattr(model, "in_chans", 3))
    image_size = meta.get("image_size") or run_config_of(file).get("dataset", {}).get("image_size")
    if image_size:
        height, width = (image_size, image_size) if isinstance(image_size, int) else (image_size[0], image_size[-1])
        size = (channels, int(height), int(width))
    else:
        size = default_input_size(str(meta["arch"]), channels)
    return model, size, f"{meta['arch']} ({file})"


def human(n: int | float, unit: str = "") -> str:
    """1814073344 -> '1.814 G' (three decimals, as the figures are quoted)."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3f} {suffix}{unit}"
    return f"{n:g} {unit}".rstrip()
