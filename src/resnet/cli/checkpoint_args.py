"""Flags that say which weights `eval`, `predict` and `export` load (a helper module, not a sub-command)."""

from __future__ import annotations

import argparse
from typing import Any


def add_weights_arguments(parser: argparse.ArgumentParser, *, model_flags: bool = True) -> None:
    """``--pretrained NAME``, and (``model_flags``) ``--model/--num-classes/--in-chans`` for plain state dicts."""
    parser.add_argument("--pretrained", metavar="NAME", default=None,
                        help="a published weight set (`resnet models --pretrained`), e.g. resnet50 or resnet50.tv_in1k, "
                             "with its classes and preprocessing; with --checkpoint FILE, that file is used for it")
    if model_flags:
        parser.add_argument("--model", metavar="NAME", default=None,
                            help="which registered net a weights file without resnet metadata is (a torchvision .pth, "
                                 "a state dict); not needed for resnet checkpoints or run folders")
        parser.add_argument("--num-classes", type=int, default=None, help="with --model: classifier outputs (default: from the file)")
        parser.add_argument("--in-chans", type=int, default=None, help="with --model: input channels (default: from the file)")


def checkpoint_source(args: argparse.Namespace) -> Any:  # resnet.train.inference.CheckpointSource
    from resnet.errors import ResNetError
    from resnet.train.inference import CheckpointSource

    if not (args.checkpoint or args.pretrained):
        raise ResNetError("no weights given: pass --checkpoint RUN_OR_FILE or --pretrained NAME")
    if args.pretrained and args.model:
        raise ResNetError("--pretrained names its own model; drop --model")
    return CheckpointSource(path=args.checkpoint, pretrained=args.pretrained, model=args.model,
                            num_classes=args.num_classes, in_chans=args.in_chans)
