"""Figures of a run: error curves like the paper's (train and test error vs epoch) and confusion matrices."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from resnet.io import atomic_write, atomic_write_text


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Top-1 error (%) against epoch: thin line for training, bold for test (dashed: validation), as in He et al. Fig. 4."""
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(epochs, [100 * (1 - row["train_top1"]) for row in history], "-", lw=1, color="tab:blue", label="train error")
    for key, style, label in (("val_top1", "--", "val error"), ("test_top1", "-", "test error")):
        points = [(row["epoch"], 100 * (1 - row[key])) for row in history if row.get(key) is not None]
        if points:
            ax.plot(*zip(*points), style, lw=2.5, color="tab:orange" if key == "test_top1" else "tab:green", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def write_confusion_csv(confusion: torch.Tensor, class_names: Sequence[str], path: str | Path) -> Path:
    """Rows are the true class, columns the predicted class; counts."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["true \\ predicted", *class_names])
    for name, row in zip(class_names, confusion.tolist()):
        writer.writerow([name, *row])
    return atomic_write_text(path, buf.getvalue())


def plot_confusion(confusion: torch.Tensor, class_names: Sequence[str], path: str | Path, *, title: str = "") -> Path:
    """Row-normalized confusion matrix (each true class sums to 1), with counts written in the cells when few."""
    plt = _pyplot()
    counts = confusion.double()
    norm = counts / counts.sum(1, keepdim=True).clamp_min(1)
    n = len(class_names)
    size = min(max(4.0, 0.5 * n + 2), 16)
    fig, ax = plt.subplots(figsize=(size, size), dpi=120)
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), class_names, fontsize=8)
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=6,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
