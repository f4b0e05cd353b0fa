"""`resnet eval`: loss, top-1, top-5, per-class accuracy and a confusion matrix (PNG and CSV) of a checkpoint."""

from __future__ import annotations

import argparse

from resnet.cli.checkpoint_args import add_weights_arguments, checkpoint_source


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: loss, top-1/5, per-class accuracy, confusion matrix",
                       description=__doc__)
    p.add_argument("--checkpoint", default=None, metavar="RUN_OR_FILE",
                   help="a run folder (its best checkpoint), a .safetensors checkpoint, or another weights file with --model")
    add_weights_arguments(p)
    p.add_argument("--data", default=None, help="dataset (default: the one it was trained on)")
    p.add_argument("--data-dir", default=None, metavar="DIR")
    p.add_argument("--download", action="store_true",
                   help="fetch a named dataset (fashion-mnist, cifar10, cifar100) with torchvision when it is not found")
    p.add_argument("--strict", action="store_true", help="an unreadable image file is an error instead of being skipped")
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=None,
                   help="average each image's logits with its mirror image's (default: as the run was trained with --tta)")
    p.add_argument("--image-size", default=None, metavar="N|HxW",
                   help="evaluate at this input size (default: the checkpoint's, prepared as it was validated)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where confusion.csv/png go, created if missing (default: the run folder, else beside the checkpoint)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--fast", action="store_true", help="evaluate through resnet.optimize (the fastest backend here)")
    p.add_argument("--precision", default="auto", help="with --fast: auto, fp32, bf16, int8, ...")
    p.add_argument("--unsafe-load", action="store_true", help="allow full unpickling of a non-safetensors checkpoint you trust")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math
    from pathlib import Path

    from resnet import report
    from resnet.train.inference import evaluate_checkpoint
    from resnet.train.plots import plot_confusion, write_confusion_csv

    result, loaded, data = evaluate_checkpoint(
        checkpoint_source(args), data=args.data, data_dir=args.data_dir, split=args.split, batch_size=args.batch_size,
        device=args.device, fast=args.fast, precision=args.precision, unsafe=args.unsafe_load,
        download=args.download, strict=args.strict, flip_tta=args.tta, image_size=args.image_size,
    )
    ckpt = Path(args.checkpoint) if args.checkpoint else None
    out = Path(args.out) if args.out else Path(".") if args.pretrained else (ckpt if ckpt is not None and ckpt.is_dir() else loaded.path.parent)
    stem = f"confusion-{args.split}"
    csv_path = write_confusion_csv(result.confusion, result.class_names, out / f"{stem}.csv")
    png_path = plot_confusion(result.confusion, result.class_names, out / f"{stem}.png",
                              title=f"{loaded.metadata.get('arch', '')} on {data.name} {args.split}")
    if args.json:
        report.result_json({**result.to_dict(), "checkpoint": str(loaded.path), "data": data.name, "split": args.split,
                            "confusion_csv": str(csv_path), "confusion_png": str(png_path)})
        return 0
    report.table(f"{loaded.path} on {data.name} {args.split} ({result.num_samples} images)",
                 ["metric", "value"],
                 [["loss", f"{result.loss:.4f}"], ["top-1", f"{result.top1:.4f}"], ["top-5", f"{result.top5:.4f}"]])
    report.table("per-class accuracy", ["class", "accuracy", "images"],
                 [[name, "-" if math.isnan(acc) else f"{acc:.4f}", int(total)]
                  for name, acc, total in zip(result.class_names, result.per_class, result.confusion.sum(1).tolist())])
    report.info(f"confusion matrix: {csv_path} and {png_path}")
    return 0
