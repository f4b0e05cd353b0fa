"""`resnet models [PATTERN] [--json]`: the registered architectures with their parameter counts."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list the registered architectures and their parameter counts",
                            description="The registered architectures (every name `create_model` takes), with their "
                            "parameter counts, default number of classes and a one-line description.")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'resnet*d' (default: all)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from resnet import report
    from resnet.errors import ResNetError
    from resnet.models import create_model, list_models, model_description

    names = list_models(args.pattern)
    if not names:
        raise ResNetError(f"no model matches '{args.pattern}'; run `resnet models` to see all")
    rows = []
    for name in names:
        # Built on the meta device: shapes only, no memory and no initialisation cost.
        with torch.device("meta"):
            model = create_model(name)
        params = sum(p.numel() for p in model.parameters())
        rows.append({"name": name, "params": params, "num_classes": model.num_classes, "description": model_description(name)})
    if args.json:
        report.result_json(rows)
    else:
        table_rows = [(r["name"], f"{r['params']:,}", r["num_classes"], r["description"]) for r in rows]
        report.table(None, ["model", "params", "classes", "description"], table_rows)
    return 0
