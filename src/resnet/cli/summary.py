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
    p.add_argument("name", nargs="?", metavar="NAME_OR_CHECKPOINT",
                   help="a registered model name (see `resnet models`), or a checkpoint file or run folder "
                        "(the model it holds: its classes, channels and input size)")
    p.add_argument("--input", default=None, metavar="CxHxW",
                   help="input size, e.g. 3x224x224 (default: a checkpoint's training size, else 3x224x224, 3x32x32 for the CIFAR nets)")
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
        raise ResNetError("give a model name (e.g. `resnet summary resnet50`), a checkpoint or run folder, or --table1; "
                          "`resnet models` lists the names")
    if args.depth < 1:
        raise ResNetError(f"--depth must be 1 or more, got {args.depth}")

    from resnet.inspect.summary import inspection_model, parse_input_size, summary

    model, natural_size, _ = inspection_model(args.name, num_classes=args.num_classes, in_chans=args.in_chans)
    s = summary(model, parse_input_size(args.input) if args.input else natural_size)
    if args.json:
        report.result_json(s.to_dict(args.depth))
        return 0
    if args.csv:
        report.result(s.to_csv(args.depth))
        return 0
    report.table(*s.table(args.depth))
    report.result(s.totals())
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
