"""A finished Fashion-MNIST run trained with --ema: test top-1 of its raw and averaged weights as saved, then of the
averaged weights after their BatchNorm statistics are recomputed at the data's own size.

    .venv/bin/python benchmarks/bench_ema_batchnorm.py RUN

Under progressive resizing the average (weights and BatchNorm buffers alike) still carries steps taken at the smaller
sizes when a short last phase ends; this separates what the statistics explain from what the weights do. The
statistics are the cumulative average over one pass of the training set with the training augmentation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="run folder of `resnet train --ema` on Fashion-MNIST")
    args = parser.parse_args()

    from resnet.device import describe
    from resnet.models import create_model
    from resnet.train.evaluation import evaluate, recompute_batchnorm
    from resnet.train.rundir import resume_config
    from resnet.train.trainer import open_data

    state = torch.load(args.run / "checkpoints" / "last.state.pt", weights_only=True, map_location="cpu")
    if state.get("ema") is None:
        raise SystemExit(f"error: {args.run} was trained without --ema")
    config = resume_config(args.run)
    _, data = open_data(config)

    def build(weights: dict[str, torch.Tensor]) -> nn.Module:
        model = create_model(config.model, num_classes=data.train.num_classes, in_chans=data.train.in_chans)
        model.load_state_dict(weights)
        return model.eval()

    print(describe("cpu"))
    raw = build(state["model"])
    averaged = build({k.removeprefix("module."): v for k, v in state["ema"].items() if k != "n_averaged"})
    for name, model in [("raw weights", raw), ("averaged weights (EMA)", averaged)]:
        print(f"{name}, as saved: test top-1 {evaluate(model, data.test, flip_tta=config.tta).top1:.4f}", flush=True)
    averaged.train()
    recompute_batchnorm([averaged], data.train.batches(256, shuffle=True, augment=config.augment,
                                                       padding=config.crop_padding))
    averaged.eval()
    top1 = evaluate(averaged, data.test, flip_tta=config.tta).top1
    print(f"averaged weights, BatchNorm statistics recomputed at the data's own size: test top-1 {top1:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
