"""The block tutorial: one residual block, and the check that F(x) + x keeps the shape.

Run: python examples/residual_block.py
"""

from __future__ import annotations

import torch

from resnet.models import BasicBlock, Bottleneck
from resnet.models.resnet import make_shortcut


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 64, 56, 56)

    # Identity shortcut: F(x) has x's shape, so the sum F(x) + x needs no projection.
    block = BasicBlock(64, 64).eval()
    y = block(x)
    print(f"basic block, identity shortcut: input {tuple(x.shape)} -> output {tuple(y.shape)}")
    assert y.shape == x.shape, "F(x) + x must keep the shape"
    with torch.no_grad():  # the block really adds its input: zero the branch and the output is relu(x)
        block.bn2.weight.zero_()
        block.bn2.bias.zero_()
        print(f"branch zeroed, output == relu(x): {torch.allclose(block(x), torch.relu(x))}")

    # Projection shortcut (option B): stride 2 and twice the channels, so the shortcut is a 1x1 conv.
    shortcut = make_shortcut("B", 64, 128, 2, torch.nn.BatchNorm2d, preact=False)
    down = BasicBlock(64, 128, stride=2, shortcut=shortcut).eval()
    print(f"basic block, projection shortcut: input {tuple(x.shape)} -> output {tuple(down(x).shape)}")

    # Bottleneck: 1x1 reduce, 3x3, 1x1 expand by 4 (ResNet-50 and deeper).
    wide = torch.randn(2, 256, 56, 56)
    bottleneck = Bottleneck(256, 64).eval()
    print(f"bottleneck block: input {tuple(wide.shape)} -> output {tuple(bottleneck(wide).shape)}")
    print(f"parameters: basic {sum(p.numel() for p in block.parameters()):,}, "
          f"bottleneck {sum(p.numel() for p in bottleneck.parameters()):,}")


if __name__ == "__main__":
    main()
