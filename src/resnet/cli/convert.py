"""`resnet convert SRC -o OUT`: another framework's weights as our checkpoint, or ours back out to Keras/Paddle."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="import Keras / Paddle / TF-slim / torchvision / timm weights, or export ours to Keras / Paddle",
        description="Read SRC (its format detected from the content, or --from) into the registered model that "
        "reproduces the source framework's numerics, and write it as a .safetensors checkpoint whose header "
        "rebuilds the model. With --to, write SRC (any readable file, usually our checkpoint) in that "
        "framework's format instead: --to keras writes the HDF5 weights keras.applications' models load.",
    )
    p.add_argument("src", metavar="SRC", help="the weights file to read")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="file to write (.safetensors, or .h5 / .pdparams with --to)")
    p.add_argument("--from", dest="source", default="auto", choices=("auto", "keras", "paddle", "tf-slim", "torchvision", "timm"),
                   help="the source framework (default: detected from the file)")  # fmt: skip
    p.add_argument("--to", dest="target", default=None, choices=("keras", "paddle"), help="write this framework's format instead of our checkpoint")
    p.add_argument("--model", default=None, metavar="NAME", help="the architecture of a bare torchvision/timm state dict (default: inferred from its tensors)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from resnet import report
    from resnet.convert import export_weights, import_weights
    from resnet.errors import ResNetError
    from resnet.models import save_weights

    src, out = Path(args.src), Path(args.output)
    if out.exists() and out.resolve() == src.resolve():
        raise ResNetError(f"-o {out} is the source file; choose another output path")
    model = import_weights(src, args.source, model=args.model)
    origin = model.converted_from
    described = f"{model.model_name} ({model.num_classes} classes" + "".join(f", {k}={v}" for k, v in model.model_options.items()) + ")"
    for note in origin.get("notes", []):
        report.info(note)
    if args.target:
        export_weights(model, out, args.target, class_names=model.class_names)
        report.result(f"wrote {out}: {described} as {args.target} weights")
        return 0
    metadata = {**model.preprocessing, "converted_from": origin}
    if model.class_names:
        metadata["class_names"] = model.class_names
    save_weights(model, out, metadata=metadata)
    report.result(f"wrote {out}: {described} from {origin['source']} file {src.name}")
    return 0
