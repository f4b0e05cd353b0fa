"""`resnet summary`: per-layer table (shapes, parameters, multiply-adds) or the paper's Table 1."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="per-layer table: output shapes, parameters, multiply-adds",
        description="Per-layer summary of a model from one forward pass. MACs count convolutions "
        "(Cout*Hout*Wout*Cin*k*k/groups) and linear layers (in*out), as the paper and torchvision do; "
        "BatchNorm, activations, pooling and residual additions are listed separately.",
    )
    p.add_argument("name", nargs="?", help="model name (see `resnet models`)")
    p.add_argument("--input", default=None, metavar="CxHxW", help="input size, e.g. 3x224x224 (default: 3x224x224, 3x32x32 for the CIFAR nets)")
    p.add_argument("--depth", type=int, default=2, help="levels of nesting to list (default 2: stages and blocks)")
    p.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the model's)")
    p.add_argument("--in-chans", type=int, default=None, help="input channels (default: 3)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="machine-readable output (totals as plain numbers)")
    fmt.add_argument("--csv", action="store_true", help="one CSV row per layer, then a total row")
    p.add_argument("--table1", action="store_true", help="Table 1 of the paper (resnet18/34/50/101/152), from the code")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet import report
    from resnet.errors import ResNetError

    if args.table1:
        if args.name:
            raise ResNetError("--table1 covers resnet18/34/50/101/152 itself; give no model name with it")
        return _table1(args)
    if not args.name:
        raise ResNetError("give a model name (e.g. `resnet summary resnet50`) or --table1; `resnet models` lists the names")
    if args.depth < 1:
        raise ResNetError(f"--depth must be 1 or more, got {args.depth}")

    from resnet.inspect.summary import default_input_size, human, meta_model, parse_input_size, summary

    options = {}
    if args.num_classes is not None:
        options["num_classes"] = args.num_classes
    if args.in_chans is not None:
        options["in_chans"] = args.in_chans
    model = meta_model(args.name, **options)
    size = parse_input_size(args.input) if args.input else default_input_size(args.name, getattr(model, "in_chans", 3))
    s = summary(model, size)
    if args.json:
        report.result_json(s.to_dict(args.depth))
        return 0
    if args.csv:
        report.result(s.to_csv(args.depth))
        return 0
    rows = [
        ["  " * (layer.depth - 1) + layer.name, layer.type, "x".join(map(str, layer.output_shape[1:])) if layer.output_shape else "",
         f"{layer.params:,}", f"{layer.trainable:,}", f"{layer.macs:,}"]
        for layer in s.rows(args.depth)
    ]
    report.table(f"{s.model} at {'x'.join(map(str, s.input_size))}", ["layer", "type", "output", "params", "trainable", "MACs"], rows)
    other = ", ".join(f"{k} {human(v)}" for k, v in s.other_ops.items())
    report.result(
        f"total params: {s.params:,} ({s.trainable_params:,} trainable)\n"
        f"MACs (conv + linear): {s.macs:,} = {human(s.macs)}\n"
        f"not in the headline, elements processed by: {other}"
    )
    return 0


def _table1(args: argparse.Namespace) -> int:
    from resnet import report
    from resnet.inspect.table1 import table1

    from resnet.inspect.summary import parse_input_size

    side = parse_input_size(args.input)[-1] if args.input else 224
    t = table1(image_size=side)
    if args.json:
        report.result_json(t.to_dict())
    elif args.csv:
        import csv
        import io

        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([t.columns, *t.rows])
        report.result(buffer.getvalue())
    else:
        report.table(f"Table 1 (He et al. 2015) at {side}x{side}, from the code", t.columns, t.rows)
    return 0
