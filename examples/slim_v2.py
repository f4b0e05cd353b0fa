"""The TF-slim tutorial: `resnet_v2_50` (pre-activation bottlenecks) and its `end_points`.

Run: python examples/slim_v2.py [--checkpoint resnet_v2_50.ckpt] [--size 224]

TF-slim's `resnet_v2_50(inputs, 1000)` returns `(net, end_points)`: the logits and a dict of every
block's output. Here the same network is `create_model("resnet_v2_50_slim")` (the last unit of each
stage strides, TF 'SAME' max-pool, biases where slim has them), the end points are the outputs of
its stages, and a real TF-slim checkpoint (`.index` + `.data-*`, or the old single file) is read
without TensorFlow by `resnet.import_weights`.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import resnet


def end_points(model: nn.Module, x: torch.Tensor, scope: str = "resnet_v2_50") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(logits, end_points) as TF-slim names them, recorded with forward hooks on the stages."""
    points: dict[str, torch.Tensor] = {}
    names = {"conv1": f"{scope}/conv1", "layer1": f"{scope}/block1", "layer2": f"{scope}/block2",
             "layer3": f"{scope}/block3", "layer4": f"{scope}/block4", "final_act": f"{scope}/postnorm"}
    modules = dict(model.named_modules())
    hooks = [modules[m].register_forward_hook(lambda _m, _i, out, n=n: points.__setitem__(n, out))
             for m, n in names.items() if m in modules]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    points[f"{scope}/logits"] = logits
    points["predictions"] = torch.softmax(logits, dim=1)
    return logits, points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a TF-slim resnet_v2 checkpoint (prefix, .index or single file)")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    if args.checkpoint:
        model = resnet.import_weights(args.checkpoint, source="tf-slim")
        print(f"loaded {args.checkpoint}: {getattr(model, 'model_name', type(model).__name__)}, {model.num_classes} classes")
    else:
        model = resnet.create_model("resnet_v2_50_slim", num_classes=1000)
    model.eval()
    logits, points = end_points(model, torch.randn(1, 3, args.size, args.size))
    for name, value in points.items():
        print(f"{name}: {tuple(value.shape)}")
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")


if __name__ == "__main__":
    main()
