"""Drawings of a network (graphviz), the counterpart of Keras' ``plot_model``.

The graph is the model's real data flow, traced with ``torch.fx``: the residual shortcuts appear
as the edges into each ``add`` node. ``level`` sets what counts as one box — a whole stage, a
residual block, or every layer (conv, BatchNorm, ReLU, ...).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from resnet.errors import ResNetError
from resnet.inspect.table1 import _SHORTCUT_NAMES, _main_path_convs, stage_names
from resnet.io import atomic_write_bytes, atomic_write_text

LEVELS = ("stage", "block", "layer")
FORMATS = ("svg", "png", "pdf", "dot")
_FILL = {"Conv2d": "#cfe2f3", "Linear": "#f4cccc", "add": "#d9ead3", "BatchNorm2d": "#fff2cc", "container": "#e6dcf2"}


class _LevelTracer(fx.Tracer):
    """Treats every module named in ``units``, and every module without sub-modules, as one box."""

    def __init__(self, units: set[str]) -> None:
        super().__init__()
        self.units = units

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        # A module without sub-modules is one layer, even when it is not torch's (a zero-pad shortcut).
        childless = next(m.children(), None) is None
        return module_qualified_name in self.units or childless or super().is_leaf_module(m, module_qualified_name)


def _units(model: nn.Module, level: str) -> set[str]:
    if level == "layer":
        return set()
    stages = stage_names(model)
    top = {name for name, _ in model.named_children()}
    if level == "stage":
        return top
    blocks = {f"{stage}.{name}" for stage in stages for name, _ in model.get_submodule(stage).named_children()}
    return (top - set(stages)) | blocks


def trace(model: nn.Module, level: str = "block", input_size: tuple[int, ...] = (3, 224, 224)) -> fx.GraphModule:
    """The model's graph at ``level``, with output shapes attached (``node.meta['tensor_meta']``)."""
    if level not in LEVELS:
        raise ResNetError(f"--level {level!r} is not one of {', '.join(LEVELS)}")
    was_training = model.training
    model.eval()
    try:
        graph = _LevelTracer(_units(model, level)).trace(model)
        module = fx.GraphModule(model, graph)
        device = next(iter(model.parameters()), torch.zeros(())).device
        with torch.no_grad():
            ShapeProp(module).propagate(torch.zeros((1, *input_size), device=device))
    except ResNetError:
        raise
    except Exception as exc:  # fx raises many kinds for code it cannot trace
        raise ResNetError(f"cannot trace {type(model).__name__} into a graph ({str(exc).splitlines()[0]})") from exc
    finally:
        model.train(was_training)
    return module


def _shape(node: fx.Node) -> str:
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return "x".join(map(str, tuple(shape)[1:])) if shape is not None else ""


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        text = f"{module.kernel_size[0]}x{module.kernel_size[1]}, {module.out_channels}"
        if module.stride[0] > 1:
            text += f", /{module.stride[0]}"
        if module.groups > 1:
            text += f", g{module.groups}"
        return text
    if isinstance(module, nn.Linear):
        return f"{module.in_features} -> {module.out_features}"
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        k = module.kernel_size if isinstance(module.kernel_size, int) else module.kernel_size[0]
        s = module.stride if isinstance(module.stride, int) else module.stride[0]
        return f"{k}x{k}, /{s}"
    if isinstance(module, nn.Sequential):  # a stage
        return f"{len(module)} blocks"
    convs = _main_path_convs(module)
    if convs:  # a residual block: its main path, and whether its shortcut is a projection
        text = "[" + "; ".join(f"{c.kernel_size[0]}x{c.kernel_size[1]}, {c.out_channels}" for c in convs) + "]"
        stride = max(c.stride[0] for c in convs)
        if stride > 1:
            text += f" /{stride}"
        shortcut = _shortcut_module(module)
        if shortcut is not None:
            projected = any(isinstance(m, nn.Conv2d) for m in shortcut.modules())
            text += "\n+ projection shortcut" if projected else f"\n+ {type(shortcut).__name__}"
        return text
    return ""


def _shortcut_module(block: nn.Module) -> nn.Module | None:
    return next((m for n, m in block.named_children() if n in _SHORTCUT_NAMES and not isinstance(m, nn.Identity)), None)


def _is_residual_block(module: nn.Module) -> bool:
    """A block whose output adds a shortcut (a plain net's blocks have ``has_shortcut`` False)."""
    return bool(_main_path_convs(module)) and bool(getattr(module, "has_shortcut", True))


def _shortcut_label(block: nn.Module) -> str:
    """What the shortcut edge of a block carries: identity, option A's zero-padding, or a projection."""
    shortcut = _shortcut_module(block)
    if shortcut is None:
        return "identity"
    convs = [m for m in shortcut.modules() if isinstance(m, nn.Conv2d)]
    if not convs:  # option A: strided subsampling, new channels zero
        stride = getattr(shortcut, "stride", 1)
        return "zero-pad" + (f", /{stride}" if stride > 1 else "")
    conv = convs[0]
    # ResNet-D subsamples with an average pool before a stride-1 projection.
    pool = next((m for m in shortcut.modules() if isinstance(m, nn.AvgPool2d)), None)
    pool_stride = 1 if pool is None else (pool.stride if isinstance(pool.stride, int) else pool.stride[0])
    stride = conv.stride[0] * pool_stride
    text = f"projection {conv.kernel_size[0]}x{conv.kernel_size[1]}, {conv.out_channels}"
    return text + (f", /{stride}" if stride > 1 else "") + (" after avg-pool" if pool is not None else "")


def build(model: nn.Module, *, level: str = "block", input_size: tuple[int, ...] = (3, 224, 224), title: str | None = None) -> Any:  # graphviz.Digraph
    """A ``graphviz.Digraph`` of ``model`` at ``level`` (boxes labelled name, type, output shape)."""
    try:
        import graphviz
    except ImportError as exc:
        raise ResNetError("diagrams need the graphviz Python package; install it with: pip install 'resnet[diagram]'") from exc
    module = trace(model, level, input_size)
    name = title or str(getattr(model, "model_name", type(model).__name__))
    dot = graphviz.Digraph(name=name, graph_attr={"rankdir": "TB", "label": f"{name} ({level} level, input {'x'.join(map(str, input_size))})",
                                                   "labelloc": "t", "fontname": "Helvetica"},
                           node_attr={"shape": "box", "style": "rounded,filled", "fillcolor": "white", "fontname": "Helvetica", "fontsize": "10"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "8"})
    # Identity placeholders (no max-pool in a CIFAR net, no final norm) are drawn as the edge they are.
    skip = {node for node in module.graph.nodes if node.op == "call_module" and isinstance(module.get_submodule(node.target), nn.Identity)}

    # At block level a residual block is one box; its addition and shortcut are drawn beside it,
    # so the graph shows what the block computes: main path (the box) + shortcut (a labelled edge).
    added: dict[fx.Node, str] = {}  # block node -> its addition node, which is what the next layer reads
    stages = set(stage_names(model))

    def source(node: fx.Node) -> str:
        while node in skip:
            node = node.all_input_nodes[0]
        return added.get(node, node.name)

    for node in module.graph.nodes:
        if node in skip:
            continue
        if node.op == "placeholder":
            dot.node(node.name, f"input\n{'x'.join(map(str, input_size))}", shape="oval")
        elif node.op == "output":
            continue
        elif node.op == "call_module":
            sub = module.get_submodule(node.target)
            kind = type(sub).__name__
            detail = _describe(sub)
            label = f"{node.target}\n{kind}{': ' + detail if detail else ''}\n{_shape(node)}"
            fill = _FILL.get(kind, _FILL["container"] if next(sub.children(), None) is not None else "white")
            dot.node(node.name, label, fillcolor=fill)
            if level == "block" and node.target.rpartition(".")[0] in stages and _is_residual_block(sub) and node.all_input_nodes:
                add = f"{node.name}_add"
                dot.node(add, f"add\n{_shape(node)}", shape="ellipse", fillcolor=_FILL["add"])
                dot.edge(node.name, add)
                label = _shortcut_label(sub)
                dot.edge(source(node.all_input_nodes[0]), add, label=label, style="dashed" if label == "identity" else "bold",
                         color="#38761d", fontcolor="#38761d")
                added[node] = add
        elif node.op in ("call_function", "call_method"):
            fn = getattr(node.target, "__name__", str(node.target)).strip("_")
            dot.node(node.name, f"{fn}\n{_shape(node)}", shape="ellipse" if fn in ("add", "iadd") else "box",
                     fillcolor=_FILL["add"] if fn in ("add", "iadd") else "white")
        else:  # get_attr: a constant tensor; not worth a box
            continue
        for arg in node.all_input_nodes:
            if arg.op != "get_attr":
                dot.edge(source(arg), node.name)
    return dot


def render(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    level: str = "block",
    input_size: tuple[int, ...] = (3, 224, 224),
) -> Path:
    """Draw ``model`` into ``path``; the format follows the suffix (.svg, .png, .pdf, or .dot source)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ResNetError(f"cannot draw to {path.name!r}: the file must end in {', '.join('.' + f for f in FORMATS)}")
    dot = build(model, level=level, input_size=input_size)
    if fmt == "dot":
        return atomic_write_text(path, dot.source)
    import graphviz

    try:
        data = dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound as exc:
        raise ResNetError("the graphviz `dot` program is not installed; install it with: apt-get install graphviz (Debian/Ubuntu) or brew install graphviz") from exc
    return atomic_write_bytes(path, data)
