"""`resnet export`: write ONNX / TorchScript / ExportedProgram, then run the file and compare with PyTorch."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write ONNX / TorchScript / torch.export files, checked against PyTorch",
        description="Export a model, then run the written file on a batch (onnxruntime for ONNX) and compare "
        "with PyTorch. Exits 1 when the max abs difference of the logits is above 1e-4 (for int8: when "
        "top-1 agrees with fp32 on fewer than 90% of real images).",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="RUN_OR_FILE",
                        help="a run folder (its best checkpoint) or a .safetensors checkpoint saved by resnet")
    source.add_argument("--model", metavar="NAME", help="a registered model with fresh (random) weights")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="file to write (.onnx, .pt, .pt2); missing folders are created")
    p.add_argument("--format", choices=("onnx", "torchscript", "exported-program"), default=None,
                   help="file format (default: from the file name: .onnx, .pt/.ts, .pt2)")
    p.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True,
                   help="let the file take any batch size (default; --no-dynamic-batch fixes it to --batch-size)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--batch-size", type=int, default=2, help="batch used to trace the model (default 2)")
    p.add_argument("--input", default=None, metavar="CxHxW", help="input size with --model (default 3x224x224, 3x32x32 for CIFAR nets)")
    p.add_argument("--num-classes", type=int, default=None, help="with --model: classifier outputs")
    p.add_argument("--in-chans", type=int, default=None, help="with --model: input channels")
    p.add_argument("--precision", choices=("fp32", "int8"), default="fp32", help="int8: statically quantized ONNX (calibrated on --data)")
    p.add_argument("--data", default=None, help="int8 calibration dataset (default: the checkpoint's own dataset)")
    p.add_argument("--data-dir", default=None, help="where the dataset's files are")
    p.add_argument("--calibration-batches", type=int, default=8, help="int8: batches of 32 training images to calibrate on (default 8)")
    p.add_argument("--unsafe-load", action="store_true", help="allow pickled (non-safetensors) checkpoints; only for files you trust")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from resnet import report
    from resnet.errors import ResNetError
    from resnet.export import check_parity, export_file, format_for, load_exported

    fmt = format_for(args.output, args.format)
    if args.precision == "int8" and fmt != "onnx":
        raise ResNetError(f"--precision int8 is for ONNX files only, not {fmt}; use --format onnx")
    if args.batch_size < 1:
        raise ResNetError(f"--batch-size must be 1 or more, got {args.batch_size}")
    model, meta = _load_model(args)
    size = _input_size(args, model, meta)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn((args.batch_size, *size), generator=generator)

    if args.precision == "int8":
        return _export_int8(args, model, meta, example)

    path = export_file(model, example, args.output, fmt, dynamic_batch=args.dynamic_batch, opset=args.opset)
    # With a dynamic batch, check sizes other than the traced one: that is what could break.
    sizes = (3, 1) if args.dynamic_batch else (args.batch_size,)
    inputs = [torch.randn((n, *size), generator=generator) for n in sizes]
    result = check_parity(model, load_exported(path, fmt), inputs)
    report.result(
        f"wrote {path} ({fmt}, {path.stat().st_size / 1e6:.1f} MB, {'dynamic' if args.dynamic_batch else 'fixed'} batch); "
        f"checked batches of {', '.join(map(str, result.batch_sizes))}: {result.criterion}: {'ok' if result.passed else 'FAILED'}"
    )
    return 0 if result.passed else 1


def _load_model(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from resnet import report
    from resnet.models import create_model
    from resnet.train.inference import load_checkpoint

    if args.checkpoint:
        loaded = load_checkpoint(args.checkpoint, device="cpu", unsafe=args.unsafe_load)  # a run folder or a file
        return loaded.model.eval(), loaded.metadata
    options = {k: v for k, v in (("num_classes", args.num_classes), ("in_chans", args.in_chans)) if v is not None}
    report.info(f"exporting {args.model} with fresh random weights, seed 0 (use --checkpoint for trained ones)")
    import torch

    torch.manual_seed(0)  # the same file, and the same parity figure, on every run
    return create_model(args.model, **options).eval(), {}


def _input_size(args: argparse.Namespace, model: Any, meta: dict[str, Any]) -> tuple[int, int, int]:
    from resnet.inspect.summary import default_input_size, parse_input_size

    in_chans = int(meta.get("in_chans") or getattr(model, "in_chans", 3))
    if args.input:
        size = parse_input_size(args.input)
        return (size[-3], size[-2], size[-1])
    image_size = meta.get("image_size")
    if image_size:
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        return (in_chans, int(h), int(w))
    return default_input_size(args.model or str(meta.get("arch", "")), in_chans)


def _export_int8(args: argparse.Namespace, model: Any, meta: dict[str, Any], example: Any) -> int:
    import itertools
    import tempfile
    from pathlib import Path

    from resnet import report
    from resnet.data import load
    from resnet.errors import ResNetError
    from resnet.export import check_parity, export_onnx, load_exported

    spec = args.data or meta.get("dataset")
    if not spec:
        raise ResNetError("--precision int8 needs real images to calibrate on: pass --data (e.g. fashion-mnist, or an image folder)")
    image_size = tuple(example.shape[2:])
    train = load(spec, "train", data_dir=args.data_dir, image_size=image_size)
    if train.in_chans != example.shape[1]:
        raise ResNetError(f"--data {spec} has {train.in_chans}-channel images but the model takes {example.shape[1]}")
    calibration = [x for x, _ in itertools.islice(train.batches(32, shuffle=True, seed=0), args.calibration_batches)]
    try:
        held_out = load(spec, "test", data_dir=args.data_dir, image_size=image_size)
    except ResNetError:
        held_out = load(spec, "val", data_dir=args.data_dir, image_size=image_size)
    checks = [x for x, _ in itertools.islice(held_out.batches(64), 4)]

    from resnet.io import ensure_parent
    from resnet.speed import quantize_onnx_int8

    output = ensure_parent(args.output)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".resnet-export-") as tmp:
        fp32 = export_onnx(model, example, Path(tmp) / "fp32.onnx", dynamic_batch=args.dynamic_batch, opset=args.opset)
        path = quantize_onnx_int8(fp32, output, calibration)
    result = check_parity(model, load_exported(path, "onnx"), checks, int8=True)
    report.result(
        f"wrote {path} (onnx int8, {path.stat().st_size / 1e6:.1f} MB, calibrated on {sum(len(c) for c in calibration)} {spec} images); "
        f"{result.criterion}; max abs diff {result.max_abs_diff:.3g}: {'ok' if result.passed else 'FAILED'}"
    )
    return 0 if result.passed else 1
