"""`resnet train`: train a ResNet; with no arguments, the main job (resnet20 on Fashion-MNIST, a few minutes).

Settings come from, lowest first: defaults < --recipe (``quick`` unless named) < --config FILE <
flags given here. ``--resume RUN`` needs nothing else: the run's config.json says the rest. A
finished run is left as it is; ``--resume RUN --epochs N`` with N larger extends it: the
learning-rate schedule is recomputed for N epochs (as if planned so from the start) and training
continues from the step reached, so one-cycle and cosine pick up on the longer curve (the lr rises
again) and fractional milestones move.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

S = argparse.SUPPRESS  # flags not given stay out of the namespace, so they don't override recipe/config


def _compile_flag(value: str) -> None:
    """`--compile auto`: None, i.e. measured (a bare --compile is True, --no-compile False)."""
    if value != "auto":
        raise argparse.ArgumentTypeError(f"'{value}' is not a choice: give --compile, --compile auto or --no-compile")
    return None


MONITORED = ("val_loss", "val_top1", "val_top5", "train_loss", "train_top1", "test_loss", "test_top1")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (no arguments: resnet20 on Fashion-MNIST)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("what")
    g.add_argument("--model", default=S, help="registered model name (see `resnet models`); default resnet20")
    g.add_argument("--model-option", dest="model_options", action="append", default=S, metavar="KEY=VALUE",
                   help="model option passed to create_model (repeatable; VALUE parsed as JSON when it can be)")
    g.add_argument("--pretrained", default=S, metavar="NAME_OR_FILE",
                   help="start from these weights (fine-tuning): a published weight set (`resnet models --pretrained`; "
                        "its model unless --model says otherwise), a tag of --model, or a weights file")
    g.add_argument("--unsafe-load", dest="unsafe_load", action="store_true", default=S,
                   help="allow full unpickling of a --pretrained file you trust (never needed for safetensors)")
    g.add_argument("--data", default=S, help="fashion-mnist, cifar10, cifar100, an image folder or an .h5 file")
    g.add_argument("--data-dir", default=S, metavar="DIR", help="where the named dataset's files are")
    g.add_argument("--val-size", type=int, default=S, metavar="N", help="hold N training images out for validation")
    g.add_argument("--val-fraction", "--val-split", dest="val_fraction", type=float, default=S, metavar="F",
                   help="hold this fraction out for validation (0: none)")
    g.add_argument("--download", action="store_true", default=S,
                   help="fetch a named dataset with torchvision's downloader if it is not found locally (needs a network)")
    g.add_argument("--strict", action="store_true", default=S, help="stop at the first unreadable image instead of skipping it")
    g = p.add_argument_group("how long, how fast")
    g.add_argument("--recipe", default=S, help="preset: quick (default), paper-cifar, paper-imagenet, fmnist-5min, fmnist-10min, fmnist-30min, fmnist-60min, finetune")
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
    g.add_argument("--test-every", type=int, default=S, metavar="N",
                   help="score the test split every N epochs and after the last (default 1: every epoch)")
    g.add_argument("--crop-padding", type=int, default=S, metavar="PIXELS",
                   help="zero padding before the random crop (the paper's 4; 0 = flip only)")
    g.add_argument("--progressive-sizes", type=int, nargs="+", default=S, metavar="N",
                   help="progressive resizing: split the epochs evenly into phases, train the first ones at these "
                        "square sizes (smallest first) and the last at the data's own size")
    g.add_argument("--no-progressive-sizes", dest="progressive_sizes", action="store_const", const=[], default=S,
                   help="train every epoch at the data's own size (turns off a preset's progressive resizing)")
    g.add_argument("--ema", action=argparse.BooleanOptionalAction, default=S, help="keep an exponential moving average of the weights")
    g.add_argument("--ema-decay", type=float, default=S)
    g = p.add_argument_group("photos (image folders of your own)")
    g.add_argument("--image-size", default=S, metavar="N|HxW",
                   help="train at this input size (default: the data's own, or the --pretrained weights' input size)")
    g.add_argument("--train-crop", choices=("auto", "pad", "resized"), default=S,
                   help="resized: random-resized crop (photos); pad: padded random crop (small images); "
                        "auto (default): resized for images of 64 px or more, or ImageNet weights")
    g.add_argument("--crop-scale", type=float, nargs=2, default=S, metavar=("MIN", "MAX"),
                   help="area fraction range of the random-resized crop (0.08 1.0)")
    g.add_argument("--crop-ratio", type=float, nargs=2, default=S, metavar=("MIN", "MAX"),
                   help="aspect ratio range of the random-resized crop (0.75 1.333)")
    g.add_argument("--auto-augment", choices=("none", "trivial", "rand"), default=S,
                   help="TrivialAugmentWide or RandAugment on photos (default none)")
    g.add_argument("--random-erasing", type=float, default=S, metavar="P", help="erase a random rectangle with probability P")
    g.add_argument("--crop-fraction", type=float, default=S, metavar="F",
                   help="evaluation: shorter side to size/F, then the centre crop (0.875; 1 = plain resize)")
    g.add_argument("--freeze-backbone-epochs", type=int, default=S, metavar="N",
                   help="train only the classifier for the first N epochs, then everything")
    g.add_argument("--backbone-lr-scale", type=float, default=S, metavar="S",
                   help="the backbone's learning rate is --lr x S (the classifier's is --lr)")
    g = p.add_argument_group("practitioners' features")
    g.add_argument("--mixup", type=float, default=S, metavar="ALPHA", help="mixup with Beta(ALPHA, ALPHA) (0.2 is usual; 0: off)")
    g.add_argument("--cutmix", type=float, default=S, metavar="ALPHA",
                   help="cutmix with this alpha (1.0 is usual); with --mixup, one of the two per batch")
    g.add_argument("--class-weights", default=S, metavar="balanced|W1,W2,...",
                   help="weight the loss per class: 'balanced' (n / (classes x count)) or one number per class")
    g.add_argument("--balanced-sampler", action=argparse.BooleanOptionalAction, default=S,
                   help="draw each epoch with replacement so that every class is equally likely (skewed folders)")
    g.add_argument("--accum-steps", type=int, default=S, metavar="K",
                   help="split each batch into K micro-batches, one optimizer step (same result, 1/K of the memory)")
    g.add_argument("--clip-grad", type=float, default=S, metavar="NORM", help="clip the gradients' global L2 norm to NORM")
    g.add_argument("--early-stop", type=int, default=S, metavar="PATIENCE",
                   help="stop when the monitored metric has not improved for PATIENCE epochs")
    g.add_argument("--early-stop-metric", default=S, choices=MONITORED,
                   help="what --early-stop watches (default val_loss; train_loss without validation)")
    g.add_argument("--freeze", type=int, default=S, metavar="STAGES",
                   help="freeze the stem and the first STAGES stages (0: the stem only); says what is frozen")
    g.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=S,
                   help="also log to TensorBoard (RUN/tensorboard; needs the tensorboard extra)")
    g = p.add_argument_group("running")
    g.add_argument("--out", default=None, metavar="DIR", help="run folder (default runs/<model>-<data>-<time>)")
    g.add_argument("--resume", default=None, metavar="RUN",
                   help="continue the run in this folder (a finished one: nothing to do; with a larger --epochs: extend it)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    g.add_argument("--seed", type=int, default=S)
    g.add_argument("--device", default=S, help="cpu, cuda, cuda:1 (default: CUDA when present)")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, default=S,
                   help="mixed precision (default: on a GPU with bf16; on a CPU where bf16 measures faster than fp32)")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=S, help="NHWC layout (default on)")
    g.add_argument("--compile", nargs="?", const=True, type=_compile_flag, default=S, metavar="auto",
                   help="torch.compile the model; `--compile auto` times it against eager in the first steps and keeps "
                        "the faster, remembered per machine (the fmnist-5min/30min presets do)")
    g.add_argument("--no-compile", dest="compile", action="store_false", default=S, help="never torch.compile")
    g.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=S,
                   help="deterministic algorithms (bit-exact on GPUs too; slower)")
    g.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=S, help="synchronize BatchNorm across processes")
    g.add_argument("--skip-nonfinite", action=argparse.BooleanOptionalAction, default=S,
                   help="skip (and count) steps whose loss is NaN/inf instead of stopping")
    g.add_argument("--threads", type=int, default=S, help="CPU threads (default: one per core; fewer on a busy machine)")
    g.add_argument("--num-workers", type=int, default=S, help="image decoding processes for large image folders")
    p.set_defaults(func=run)


CONTROL = {"out", "resume", "overwrite", "config_file", "func", "command", "quiet", "verbose"}
EXTENDING = {"epochs", "max_steps"}  # what --resume accepts: a longer run


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


def _parse_class_weights(text: str) -> str | list[float]:
    from resnet.errors import ResNetError

    if text == "balanced":
        return text
    try:
        return [float(w) for w in text.split(",")]
    except ValueError:
        raise ResNetError(f"--class-weights {text!r}: give 'balanced' or numbers separated by commas") from None


def run(args: argparse.Namespace) -> int:
    from resnet import report
    from resnet.errors import ResNetError
    from dataclasses import replace

    from resnet.train import distributed, resolve_config, resume_config, run_training
    from resnet.train.config import validate

    flags = {k: v for k, v in vars(args).items() if k not in CONTROL}
    if "model_options" in flags:
        flags["model_options"] = _parse_options(flags["model_options"])
    if "pretrained" in flags and "model" not in flags and not getattr(args, "config_file", None):
        from resnet.models.factory import weight_set_arch

        arch = weight_set_arch(flags["pretrained"])
        if arch:
            flags["model"] = arch  # `--pretrained resnet50.tv_in1k` trains a resnet50
    if "class_weights" in flags:
        flags["class_weights"] = _parse_class_weights(flags["class_weights"])
    if args.resume:
        fixed = [k for k in flags if k not in EXTENDING]
        if fixed or getattr(args, "config_file", None) or args.out:
            given = ", ".join("--" + k.replace("_", "-") for k in [*fixed, *(["config"] if getattr(args, "config_file", None) else []),
                                                                    *(["out"] if args.out else [])])
            raise ResNetError(f"--resume takes its settings from the run's config.json; drop {given} "
                              "(only --epochs or --max-steps may be given, to extend the run)")
        config, out, resume = resume_config(args.resume), Path(args.resume), True
        if EXTENDING & flags.keys():
            config = validate(replace(config, **{k: flags[k] for k in EXTENDING & flags.keys()}))
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
    final = summary.get("final") or (result.history[-1] if result.history else {})
    if summary.get("test_top1") is not None:
        report.result(f"test accuracy: {summary['test_top1']:.4f} (top-5 {summary['test_top5']:.4f}, "
                      f"loss {summary['test_loss']:.4f}, {summary['test_size']} images, "
                      f"{summary.get('train_seconds', 0):.0f}s of training)")
    elif final.get("val_top1") is not None:
        report.result(f"validation accuracy: {final['val_top1']:.4f}")
    elif final:
        report.result(f"train accuracy: {final['train_top1']:.4f}")
    return 0
