"""Candidate for the time-budget presets: a whitened, frozen stem (airbench's first layer) on a recipe.

    .venv/bin/python benchmarks/bench_whitened_stem.py --out RUN [--recipe fmnist-5min] [--epochs N] [--threads 1]

The stem's filters are set to the top eigenvectors of the covariance of the input's patches (10,000
normalized training images), each as itself and negated, scaled by 1/sqrt(eigenvalue + 0.01), and not
trained. Then the recipe trains as ``resnet train`` would (run folder, metrics.jsonl, test accuracy).
Compare its per-epoch train loss and test accuracy with the recipe's own run. Not adopted
(benchmarks/train.md): the first epoch was no faster.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch


def whiten(conv: torch.nn.Conv2d, images: torch.Tensor, eps: float = 1e-2) -> None:
    """Set ``conv``'s filters to the +- whitening filters of ``images``' patches and freeze them."""
    k = conv.kernel_size[0]
    patches = torch.nn.functional.unfold(images, k).transpose(1, 2).reshape(-1, images.shape[1] * k * k)
    patches = patches - patches.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))  # ascending
    n = conv.out_channels // 2
    eigenvalues, eigenvectors = eigenvalues.flip(0)[:n], eigenvectors.flip(1)[:, :n]
    filters = (eigenvectors / (eigenvalues + eps).sqrt()).T.reshape(n, images.shape[1], k, k)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([filters, -filters]))
    conv.weight.requires_grad_(False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--recipe", default="fmnist-5min")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    from resnet.models import create_model
    from resnet.train.config import resolve_config
    from resnet.train.trainer import fit, open_data

    config = resolve_config(recipe=args.recipe)
    config = replace(config, compile=False, threads=args.threads, epochs=args.epochs or config.epochs)
    config, data = open_data(config)
    torch.manual_seed(config.seed)
    model = create_model(config.model, num_classes=data.train.num_classes, in_chans=data.train.in_chans)
    mean = torch.tensor(data.train.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.train.std).view(1, -1, 1, 1)
    whiten(model.conv1, (data.train.images[:10000].float() / 255 - mean) / std)
    fit(model, data, None, config, out=args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
