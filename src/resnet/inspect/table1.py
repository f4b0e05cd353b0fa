"""Table 1 of He et al. (2015), generated from the code: stage output sizes, block shapes, MACs.

Nothing here is typed in from the paper: each cell is read off a built model (its convolutions'
kernel sizes, widths and strides) and one forward pass (output sizes, multiply-adds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import nn

from resnet.inspect.summary import Summary, human, meta_model, summary

TABLE1_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# The paper's bottleneck nets stride in the first 1x1 conv; the registry's default (torchvision's
# "v1.5") strides in the 3x3, which costs more. The table shows both MAC figures.
PAPER_VARIANTS = {"resnet50": "resnet50_v1", "resnet101": "resnet101_v1", "resnet152": "resnet152_v1"}
# Names a block's shortcut branch goes by (torchvision/timm: downsample; others: shortcut).
_SHORTCUT_NAMES = ("downsample", "shortcut", "skip", "proj")


@dataclass(frozen=True)
class Table1:
    columns: list[str]
    rows: list[list[str]]
    macs: dict[str, int]
    params: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return {"columns": self.columns, "rows": self.rows, "macs": self.macs, "params": self.params}


def stage_names(model: nn.Module) -> list[str]:
    """The residual stages, in order: the containers whose children are the blocks."""
    declared = getattr(model, "stage_names", None)  # resnet.models.ResNet lists them
    if declared:
        return list(declared)
    info = getattr(model, "feature_info", None)
    names: list[str] = []
    if info:
        for entry in info:
            name = entry.get("module") if isinstance(entry, Mapping) else None
            if name and _is_stage(model.get_submodule(name)):
                names.append(name)
    if not names:  # torchvision's models have no feature_info
        names = [n for n in ("layer1", "layer2", "layer3", "layer4") if hasattr(model, n)]
    return names


def _is_stage(module: nn.Module) -> bool:
    children = list(module.children())
    return bool(children) and all(any(isinstance(m, nn.Conv2d) for m in c.modules()) for c in children)


def _main_path_convs(block: nn.Module) -> list[nn.Conv2d]:
    convs = []
    for name, module in block.named_modules():
        if isinstance(module, nn.Conv2d) and not any(part in _SHORTCUT_NAMES for part in name.split(".")):
            convs.append(module)
    return convs


def _conv_text(conv: nn.Conv2d, *, stride: bool = False) -> str:
    kh, kw = conv.kernel_size
    text = f"{kh}x{kw}, {conv.out_channels}"
    if conv.groups > 1:
        text += f", groups {conv.groups}"
    if stride and conv.stride[0] > 1:
        text += f", stride {conv.stride[0]}"
    return text


def block_text(stage: nn.Module) -> str:
    """'[3x3, 64; 3x3, 64] x2' for a stage: its first block's main-path convs and the block count."""
    blocks = list(stage.children())
    convs = _main_path_convs(blocks[0])
    return "[" + "; ".join(_conv_text(c) for c in convs) + f"] x{len(blocks)}"


def _stem(model: nn.Module, first_stage: str) -> tuple[list[nn.Conv2d], nn.Module | None]:
    """The convolutions and the max-pool that run before the first stage."""
    convs: list[nn.Conv2d] = []
    pool = None
    for name, module in model.named_modules():
        if name == first_stage or name.startswith(first_stage + "."):
            break
        if isinstance(module, nn.Conv2d):
            convs.append(module)
        elif isinstance(module, nn.MaxPool2d):
            pool = module
    return convs, pool


def _size(s: Summary, name: str) -> str:
    for layer in s.layers:
        if layer.name == name and layer.output_shape and len(layer.output_shape) == 4:
            return f"{layer.output_shape[2]}x{layer.output_shape[3]}"
    return "?"


def table1(
    models: Sequence[str] | Mapping[str, nn.Module] = TABLE1_MODELS,
    *,
    image_size: int = 224,
    paper_variants: Mapping[str, nn.Module] | None = None,
) -> Table1:
    """Build the table for ``models`` (registry names, or already built models by column name).

    ``paper_variants`` maps a column to the paper's own variant of that model (stride in the 1x1);
    given registry names, these are looked up in ``PAPER_VARIANTS`` when registered.
    """
    if not isinstance(models, Mapping):
        from resnet.models import list_models

        known = set(list_models())
        paper_variants = {n: meta_model(PAPER_VARIANTS[n]) for n in models if PAPER_VARIANTS.get(n) in known}
        models = {name: meta_model(name) for name in models}
    paper_variants = paper_variants or {}
    columns = ["layer name", "output size"] + [f"{name}" for name in models]
    cells: dict[str, dict[str, str]] = {}
    sizes: dict[str, str] = {}
    macs: dict[str, int] = {}
    params: dict[str, int] = {}
    row_names: list[str] = []
    for column, model in models.items():
        s = summary(model, (getattr(model, "in_chans", 3), image_size, image_size))
        macs[column], params[column] = s.macs, s.params
        stages = stage_names(model)
        convs, pool = _stem(model, stages[0])
        stem_name = next(n for n, m in model.named_modules() if m is convs[0])
        entries = [("conv1", _size(s, stem_name), "; ".join(_conv_text(c, stride=True) for c in convs))]
        for i, stage in enumerate(stages):
            text = block_text(model.get_submodule(stage))
            if i == 0 and pool is not None:
                k = pool.kernel_size if isinstance(pool.kernel_size, int) else pool.kernel_size[0]
                st = pool.stride if isinstance(pool.stride, int) else pool.stride[0]
                text = f"{k}x{k} max pool, stride {st}; {text}"
            entries.append((f"conv{i + 2}_x", _size(s, stage), text))
        classes = getattr(model, "num_classes", None) or s.layers[-1].output_shape[-1]
        entries.append(("", "1x1", f"average pool, {classes}-d fc, softmax"))
        for row, size, text in entries:
            if row not in cells:
                cells[row] = {}
                row_names.append(row)
            cells[row][column] = text
            sizes.setdefault(row, size)
    rows = [[row, sizes[row]] + [cells[row].get(c, "") for c in models] for row in row_names]
    rows.append(["MACs", ""] + [human(macs[c]) for c in models])
    if paper_variants:
        for column, model in paper_variants.items():
            macs[f"{column} (v1)"] = summary(model, (getattr(model, "in_chans", 3), image_size, image_size)).macs
        # Basic-block nets have no 1x1 to stride in: the paper's and the registry's are one model.
        rows.append(["MACs (paper's v1)", ""] + [human(macs.get(f"{c} (v1)", macs[c])) for c in models])
    rows.append(["params", ""] + [f"{params[c] / 1e6:.2f} M" for c in models])
    return Table1(columns=columns, rows=rows, macs=macs, params=params)
