"""`resnet models [PATTERN] [--pretrained] [--json]`: the registered architectures with their parameter
counts, or (``--pretrained``) the published weight sets with their source, accuracy and preprocessing."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list the registered architectures (or, --pretrained, the published weights)",
                            description="The registered architectures (every name `create_model` takes), with their "
                            "parameter counts, default number of classes and a one-line description; with --pretrained, "
                            "the published weight sets.")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'resnet*d' (default: all)")
    parser.add_argument("--pretrained", action="store_true",
                        help="list the published weight sets (name.tag, as create_model and --pretrained take them)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.pretrained:
        return _run_pretrained(args)
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


def _run_pretrained(args: argparse.Namespace) -> int:
    from resnet import report
    from resnet.errors import ResNetError
    from resnet.models import get_pretrained_cfg, list_pretrained

    # A plain model name lists its weight sets: 'resnet50' means 'resnet50.*'.
    pattern = args.pattern if any(c in args.pattern for c in "*?[.") else f"{args.pattern}.*"
    names = list_pretrained(pattern)
    if not names:
        raise ResNetError(f"no published weight set matches '{args.pattern}'; run `resnet models --pretrained` to see all")
    cfgs = [get_pretrained_cfg(name) for name in names]
    defaults = {get_pretrained_cfg(cfg.arch).name for cfg in cfgs}
    if args.json:
        report.result_json([{**{k: v for k, v in cfg.metadata().items() if k != "class_names"},
                             "default": cfg.name in defaults, "file_name": cfg.file_name} for cfg in cfgs])
        return 0
    rows = [(cfg.name + (" *" if cfg.name in defaults else ""), cfg.source, "-" if cfg.top1 is None else f"{cfg.top1:.2f}",
             f"{cfg.input_size[1]}x{cfg.input_size[2]}", f"{cfg.crop_fraction:.3f}", cfg.interpolation, cfg.license)
            for cfg in cfgs]
    report.table("* = the default weights of the plain model name (create_model(NAME, pretrained=True))",
                 ["weights", "source", "top-1", "input", "crop", "resize", "licence"], rows)
    return 0
