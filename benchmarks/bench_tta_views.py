"""Test accuracy of a trained run under several sets of test-time views: the image, its mirror, +-1 pixel shifts.

    .venv/bin/python benchmarks/bench_tta_views.py RUN

``resnet train --tta`` averages the logits of each test image and its mirror image. This asks whether more
views pay: each image shifted by one pixel left/right (x) or up/down (y), with and without the flip
(zero padding, as training's random crops). Prints one line per view set and the CPU line.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F


def shifted(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    if dx == dy == 0:
        return x
    h, w = x.shape[2:]
    return F.pad(x, (1, 1, 1, 1))[:, :, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder or checkpoint (trained on Fashion-MNIST)")
    args = parser.parse_args()

    from resnet.data import load
    from resnet.device import describe
    from resnet.train.inference import load_checkpoint

    loaded = load_checkpoint(args.run, device="cpu")
    test = load("fashion-mnist", "test").with_normalization(loaded.metadata["mean"], loaded.metadata["std"])
    views = {"image": (0, 0, False), "mirror": (0, 0, True)}
    for dx, dy in [(1, 0), (-1, 0), (0, 1), (0, -1)]:
        views[f"shift{dx:+d}{dy:+d}"] = (dx, dy, False)
        views[f"mirror shift{dx:+d}{dy:+d}"] = (dx, dy, True)
    logits: dict[str, list[torch.Tensor]] = {name: [] for name in views}
    labels = []
    model = loaded.model.eval()
    with torch.no_grad():
        for x, y in test.batches(500, device="cpu"):
            labels.append(y)
            for name, (dx, dy, mirror) in views.items():
                logits[name].append(model(shifted(x.flip(3) if mirror else x, dx, dy)))
    y = torch.cat(labels)
    joined = {name: torch.cat(parts) for name, parts in logits.items()}

    def accuracy(names: list[str]) -> float:
        return float((sum(joined[n] for n in names).argmax(1) == y).float().mean())

    x_shifts = [n for n in views if n.endswith(("+1+0", "-1+0"))]
    y_shifts = [n for n in views if n.endswith(("+0+1", "+0-1"))]
    print(f"image alone (1 view)         {accuracy(['image']):.4f}")
    print(f"image + mirror (2, --tta)    {accuracy(['image', 'mirror']):.4f}")
    print(f"+ x shifts (6)               {accuracy(['image', 'mirror', *x_shifts]):.4f}")
    print(f"+ y shifts (6)               {accuracy(['image', 'mirror', *y_shifts]):.4f}")
    print(f"all (10)                     {accuracy(list(views)):.4f}")
    print(describe("cpu"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
