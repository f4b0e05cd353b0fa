"""`resnet diagram`: draw a network (graphviz) to .svg, .png, .pdf or .dot."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diagram",
        help="draw a network to .svg/.png/.pdf (graphviz)",
        description="Draw a network's data flow, residual shortcuts included. Needs the graphviz `dot` program.",
    )
    p.add_argument("name", metavar="NAME_OR_CHECKPOINT",
                   help="a registered model name (see `resnet models`), or a checkpoint file or run folder")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="output file: .svg, .png, .pdf or .dot; missing folders are created")
    p.add_argument("--level", choices=("stage", "block", "layer"), default="block", help="one box per stage, block (default) or layer")
    p.add_argument("--input", default=None, metavar="CxHxW", help="input size for the shapes shown (default: a checkpoint's training size, else 3x224x224; 3x32x32 for the CIFAR nets)")
    p.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the model's)")
    p.add_argument("--in-chans", type=int, default=None, help="input channels (default: 3)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet import report
    from resnet.inspect.diagram import render
    from resnet.inspect.summary import inspection_model, parse_input_size

    model, natural_size, _ = inspection_model(args.name, num_classes=args.num_classes, in_chans=args.in_chans)
    size = parse_input_size(args.input) if args.input else natural_size
    path = render(model, args.output, level=args.level, input_size=size[-3:])
    report.info(f"wrote {path} ({args.level} level)")
    return 0
