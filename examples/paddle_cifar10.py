"""The Paddle tutorial's 14-line CIFAR-10 training (paddle.Model + prepare + fit), on `resnet`.

Run: python examples/paddle_cifar10.py [--data-dir DIR] [--model resnet50] [--epochs 50]

CIFAR-10 is read from local files (`cifar-10-batches-py/` under --data-dir, $RESNET_DATA or the
usual places); when it is absent the example says so and uses Fashion-MNIST instead, so it runs
anywhere. As in the tutorial: Momentum(lr 0.01, momentum 0.9, L2 1e-4), cross-entropy,
Accuracy(topk=(1, 5)), batch 64, checkpoints in ./output.
"""

from __future__ import annotations

import argparse

import torch

import resnet
from resnet.data import load
from resnet.errors import ResNetError


def datasets(data_dir: str | None, limit: int | None) -> tuple[object, object]:
    try:
        train_dataset, val_dataset = load("cifar10", "train", data_dir=data_dir), load("cifar10", "test", data_dir=data_dir)
    except ResNetError as exc:
        print(f"CIFAR-10 not found ({exc}); using Fashion-MNIST instead")
        train_dataset, val_dataset = load("fashion-mnist", "train", data_dir=data_dir), load("fashion-mnist", "test", data_dir=data_dir)
    if limit:
        train_dataset, val_dataset = train_dataset.subset(slice(0, limit)), val_dataset.subset(slice(0, limit))
    return train_dataset, val_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--model", default="resnet50", help="resnet50 as in the tutorial; resnet20 trains far faster on a CPU")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--save-dir", default="./output")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--limit", type=int, help="use only the first N images of each split (a quick try)")
    args = parser.parse_args()

    train_dataset, val_dataset = datasets(args.data_dir, args.limit)
    network = resnet.create_model(args.model, num_classes=10, in_chans=train_dataset.in_chans)  # resnet50(num_classes=10)
    model = resnet.Model(network)  # paddle.Model(...)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)  # Momentum + L2Decay
    model.prepare(optimizer, torch.nn.CrossEntropyLoss(), ["accuracy", "top5"])  # Accuracy(topk=(1, 5))
    model.fit(train_dataset, val_dataset, epochs=args.epochs, batch_size=args.batch_size, save_dir=args.save_dir,
              num_workers=args.num_workers)
    result = model.evaluate(val_dataset, return_dict=True)
    print(f"eval: loss {result['loss']:.4f}  acc_top1 {result['accuracy']:.4f}  acc_top5 {result['top5']:.4f}")


if __name__ == "__main__":
    main()
