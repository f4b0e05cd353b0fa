"""`resnet train`: train a ResNet; with no arguments, the main job (resnet20 on Fashion-MNIST, a few minutes).

Settings come from, lowest first: defaults < --recipe (``quick`` unless named) < --config FILE <
flags given here. ``--resume RUN`` needs nothing else: the run's config.json says the rest.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

S = argparse.SUPPRESS  # flags not given stay out of the namespace, so they don't override recipe/config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (no arguments: resnet20 on Fashion-MNIST)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what")
    g.add_argument("--model", default=S, help="registered model name (see `resnet models`); default resnet20")
    g.add_argument("--model-option", dest="model_options", action="append", default=S, metavar="KEY=VALUE",
                   help="model option passed to create_model (repeatable; VALUE parsed as JSON when it can be)")
    g.add_argument("--pretrained", default=S, metavar="FILE", help="start from these weights (fine-tuning)")
    g.add_argument("--data", default=S, help="fashion-mnist, cifar10, cifar100, an image folder or an .h5 file")
    g.add_argument("--data-dir", default=S, metavar="DIR", help="where the named dataset's files are")
    g.add_argument("--val-size", type=int, default=S, metavar="N", help="hold N training images out for validation")
    g.add_argument("--val-fraction", "--val-split", dest="val_fraction", type=float, default=S, metavar="F",
                   help="hold this fraction out for validation (0: none)")
    g.add_argument("--download", action="store_true", default=S,
                   help="fetch a named dataset with torchvision's downloader if it is not found locally (needs a network)")
    g.add_argument("--strict", action="store_true", default=S, help="stop at the first unreadable image instead of skipping it")
    g = p.add_argument_group("how long, how fast")
    g.add_argument("--recipe", default=S, help="preset: quick (default), paper-cifar, paper-imagenet, fmnist-10min, fmnist-60min")
    g.add_argument("--config", dest="config_file", default=S, metavar="FILE", help="YAML or JSON file of settings")
    g.add_argument("--epochs", type=int, default=S)
    g.add_argument("--max-steps", type=int, default=S, metavar="N", help="stop after N optimizer steps")
    g.add_argument("--batch-size", type=int, default=S, help="global batch size")
    g.add_argument("--eval-batch-size", type=int, default=S)
    g.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default=S)
    g.add_argument("--lr", type=float, default=S)
    g.add_argument("--momentum", type=float, default=S)
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=S)
    g.add_argument("--weight-decay", type=float, default=S)
    g.add_argument("--schedule", choices=("step", "cosine", "onecycle", "constant"), default=S)
    g.add_argument("--milestones", type=float, nargs="+", default=S,
                   help="step schedule: where to divide the lr (fractions of training if <= 1, else epochs)")
    g.add_argument("--lr-gamma", type=float, default=S, help="step schedule: the divisor's inverse (0.1)")
    g.add_argument("--warmup-epochs", type=float, default=S)
    g.add_argument("--label-smoothing", type=float, default=S)
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=S, help="random crop + horizontal flip")
    g.add_argument("--tta", action=argparse.BooleanOptionalAction, default=S,
                   help="score val/test on each image and its mirror image, averaged (flip test-time augmentation)")
    g.add_argument("--crop-padding", type=int, default=S, metavar="PIXELS",
                   help="zero padding before the random crop (the paper's 4; 0 = flip only)")
    g.add_argument("--ema", action=argparse.BooleanOptionalAction, default=S, help="keep an exponential moving average of the weights")
    g.add_argument("--ema-decay", type=float, default=S)
    g = p.add_argument_group("running")
    g.add_argument("--out", default=None, metavar="DIR", help="run folder (default runs/<model>-<data>-<time>)")
    g.add_argument("--resume", default=None, metavar="RUN", help="continue the run in this folder")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    g.add_argument("--seed", type=int, default=S)
    g.add_argument("--device", default=S, help="cpu, cuda, cuda:1 (default: CUDA when present)")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=S,
                   help="mixed precision (default: on where the device has native bf16)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=S, help="NHWC layout (default on)")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=S, help="torch.compile the model")
    g.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=S,
                   help="deterministic algorithms (bit-exact on GPUs too; slower)")
    g.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=S, help="synchronize BatchNorm across processes")
    g.add_argument("--skip-nonfinite", action=argparse.BooleanOptionalAction, default=S,
                   help="skip (and count) steps whose loss is NaN/inf instead of stopping")
    g.add_argument("--threads", type=int, default=S, help="CPU threads (default: one per core; fewer on a busy machine)")
    g.add_argument("--num-workers", type=int, default=S, help="image decoding processes for large image folders")
    p.set_defaults(func=run)


CONTROL = {"out", "resume", "overwrite", "config_file", "func", "command", "quiet", "verbose"}


def _parse_options(items: list[str]) -> dict[str, object]:
    import json

    from resnet.errors import ResNetError

    options: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ResNetError(f"--model-option {item!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def run(args: argparse.Namespace) -> int:
    from resnet import report
    from resnet.errors import ResNetError
    from resnet.train import distributed, resolve_config, resume_config, run_training

    flags = {k: v for k, v in vars(args).items() if k not in CONTROL}
    if "model_options" in flags:
        flags["model_options"] = _parse_options(flags["model_options"])
    if args.resume:
        if flags or getattr(args, "config_file", None) or args.out:
            given = ", ".join("--" + k.replace("_", "-") for k in [*flags, *(["config"] if getattr(args, "config_file", None) else []),
                                                                    *(["out"] if args.out else [])])
            raise ResNetError(f"--resume takes its settings from the run's config.json; drop {given}")
        config, out, resume = resume_config(args.resume), Path(args.resume), True
    else:
        config = resolve_config(flags, config_file=getattr(args, "config_file", None))
        out = Path(args.out) if args.out else Path("runs") / f"{config.model}-{Path(config.data).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        resume = False
    ctx = distributed.setup(config.device)
    if not ctx.is_main:
        report.configure(quiet=True)  # rank 0 alone speaks
    try:
        result = run_training(config, out=out, resume=resume, overwrite=args.overwrite)
    finally:
        distributed.cleanup()
    if not ctx.is_main:
        return 0
    summary = result.summary
    report.info(f"run folder: {out}")
    if result.test is not None:
        report.result(f"test accuracy: {result.test.top1:.4f} (top-5 {result.test.top5:.4f}, loss {result.test.loss:.4f}, "
                      f"{result.test.num_samples} images, {summary['train_seconds']:.0f}s of training)")
    elif summary.get("final") and summary["final"].get("val_top1") is not None:
        report.result(f"validation accuracy: {summary['final']['val_top1']:.4f}")
    else:
        report.result(f"train accuracy: {summary['final']['train_top1']:.4f}")
    return 0
