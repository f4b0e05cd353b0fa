"""`resnet predict`: the top-k classes, with probabilities, of image files under a trained checkpoint."""

from __future__ import annotations

import argparse

from resnet.cli.checkpoint_args import add_weights_arguments, checkpoint_source


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files with a checkpoint", description=__doc__)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--checkpoint", default=None, metavar="RUN_OR_FILE",
                   help="a run folder (its best checkpoint), a .safetensors checkpoint, or another weights file with --model")
    add_weights_arguments(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    p.add_argument("--fast", action="store_true", help="predict through resnet.optimize (the fastest backend here)")
    p.add_argument("--precision", default="auto", help="with --fast: auto, fp32, bf16, int8, ...")
    p.add_argument("--unsafe-load", action="store_true", help="allow full unpickling of a non-safetensors checkpoint you trust")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet import report
    from resnet.errors import ResNetError
    from resnet.train.inference import predict_files

    if args.top_k < 1:
        raise ResNetError(f"--top-k must be at least 1, got {args.top_k}")
    predictions = predict_files(checkpoint_source(args), args.images, top_k=args.top_k, device=args.device, fast=args.fast,
                                precision=args.precision, unsafe=args.unsafe_load)
    if args.json:
        report.result_json([{"image": p.image, "predictions": [{"class": name, "index": index, "probability": prob}
                                                                for name, index, prob in p.top]} for p in predictions])
        return 0
    rows = [[p.image if rank == 1 else "", rank, name, f"{prob:.4f}"]
            for p in predictions for rank, (name, _, prob) in enumerate(p.top, start=1)]
    report.table(None, ["image", "rank", "class", "probability"], rows)
    return 0
