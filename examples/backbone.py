"""The backbone tutorial: a ResNet as a detector's backbone, with pretrained weights, frozen stages and multi-scale features.

Run: python examples/backbone.py [--weights resnet50.pth | --pretrained] [--frozen-stages 1]

The tutorial's ResNet has `init_weights(pretrained=...)` to load a .pth and `_freeze_stages()` to
stop training the stem and the first stages; its forward returns the outputs of the chosen stages
(C2..C5). Here that is `create_model(..., features_only=True, out_indices=..., frozen_stages=...)`.
"""

from __future__ import annotations

import argparse

import torch

import resnet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--weights", help="a .pth / .safetensors file (e.g. torchvision's resnet50 weights)")
    parser.add_argument("--pretrained", action="store_true", help="the published ImageNet weights (downloaded once, then cached)")
    parser.add_argument("--frozen-stages", type=int, default=1)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    options = {"features_only": True, "out_indices": (1, 2, 3, 4), "frozen_stages": args.frozen_stages}
    if args.pretrained:
        options["pretrained"] = True
    backbone = resnet.create_model(args.model, pretrained_path=args.weights, **options)
    source = args.weights or ("published ImageNet weights" if args.pretrained else "random initialisation")
    print(f"{args.model} backbone from {source}")

    frozen = sum(p.numel() for p in backbone.parameters() if not p.requires_grad)
    total = sum(p.numel() for p in backbone.parameters())
    print(f"frozen stages: stem + {args.frozen_stages}; frozen parameters {frozen:,} of {total:,}")
    backbone.train()  # frozen stages keep their BatchNorm statistics even in train mode
    features = backbone(torch.randn(1, 3, args.size, args.size))
    for info, feature in zip(backbone.feature_info, features):
        print(f"{info['module']}: {tuple(feature.shape)}  stride {info['reduction']}  channels {info['num_chs']}")


if __name__ == "__main__":
    main()
