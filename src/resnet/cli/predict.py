"""`resnet predict`: the top-k classes, with probabilities, of image files and folders under a trained checkpoint.

Folders are read recursively (sorted by path). Images stream through: decoded in worker threads
while the previous batch is inferred, in bounded memory, so any number of files works; with
--output the rows go to a CSV or JSON-lines file as they come. An unreadable file is skipped and
reported (its row carries the error), never fatal.
"""

from __future__ import annotations

import argparse

from resnet.cli.checkpoint_args import add_weights_arguments, checkpoint_source


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="classify image files or folders with a checkpoint or published weights",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files (PNG, JPEG, WebP, BMP) or folders of them")
    p.add_argument("--checkpoint", default=None, metavar="RUN_OR_FILE",
                   help="a run folder (its best checkpoint), a .safetensors checkpoint, or another weights file with --model")
    add_weights_arguments(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--image-size", default=None, metavar="N|HxW",
                   help="prepare images at this input size (default: the checkpoint's)")
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="write one row per image to FILE as they come: .csv or .jsonl (missing folders are created)")
    p.add_argument("--batch-size", type=int, default=64, help="images per inference batch (default 64)")
    p.add_argument("--workers", type=int, default=None, help="image decoding threads (default: up to 4, one per core)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    p.add_argument("--fast", action="store_true", help="predict through resnet.optimize (the fastest backend here)")
    p.add_argument("--precision", default="auto", help="with --fast: auto, fp32, bf16, int8, ...")
    p.add_argument("--unsafe-load", action="store_true", help="allow full unpickling of a non-safetensors checkpoint you trust")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet import report
    from resnet.errors import ResNetError
    from resnet.train.inference import prediction_format, predict_stream, write_predictions

    if args.top_k < 1:
        raise ResNetError(f"--top-k must be at least 1, got {args.top_k}")
    if args.output and prediction_format(args.output) != "jsonl" and args.json:  # a wrong suffix fails here, before any work
        raise ResNetError(f"--json with --output {args.output}: the file's format follows its name; use a .jsonl file")
    stream = predict_stream(checkpoint_source(args), args.images, top_k=args.top_k, device=args.device, fast=args.fast,
                            precision=args.precision, unsafe=args.unsafe_load, batch_size=args.batch_size,
                            workers=args.workers, image_size=args.image_size)
    if args.output:
        path, rows, errors = write_predictions(stream, args.output)
        field = "column" if path.suffix.lower() == ".csv" else "field"
        report.result(f"wrote {path}: {rows} images" + (f", {errors} unreadable (see their error {field})" if errors else ""))
        return 0
    predictions = list(stream)
    if args.json:
        report.result_json([p.to_dict() for p in predictions])
        return 0
    rows: list[list[object]] = []
    for p in predictions:
        if p.error is not None:
            rows.append([p.image, "-", f"unreadable ({p.error})", ""])
        rows += [[p.image if rank == 1 else "", rank, name, f"{prob:.4f}"] for rank, (name, _, prob) in enumerate(p.top, start=1)]
    report.table(None, ["image", "rank", "class", "probability"], rows)
    return 0
