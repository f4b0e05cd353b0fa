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
    return _save(curves_figure(history, title=title), path)


def _save(fig: Any, path: str | Path) -> Path:
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        _pyplot().close(fig)


def curves_figure(history: Sequence[dict[str, Any]], *, title: str = "") -> Any:
    """The figure ``plot_curves`` saves (a matplotlib Figure; the caller closes it)."""
    from matplotlib.ticker import MaxNLocator

    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(epochs, [100 * (1 - row["train_top1"]) for row in history], "-", lw=1, color="tab:blue", label="train error")
    for key, style, label in (("val_top1", "--", "val error"), ("test_top1", "-", "test error")):
        points = [(row["epoch"], 100 * (1 - row[key])) for row in history if row.get(key) is not None]
        if points:
            ax.plot(*zip(*points), style, lw=2.5, color="tab:orange" if key == "test_top1" else "tab:green", label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no ticks at 1.25
    ax.set_ylabel("error (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


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
    return _save(confusion_figure(confusion, class_names, title=title), path)


def confusion_figure(confusion: torch.Tensor, class_names: Sequence[str], *, title: str = "") -> Any:
    """The figure ``plot_confusion`` saves (a matplotlib Figure; the caller closes it)."""
    plt = _pyplot()
    counts = confusion.double()
    norm = counts / counts.sum(1, keepdim=True).clamp_min(1)
    n = len(class_names)
    size = min(max(4.0, 0.5 * n + 2), 16)
    fig, ax = plt.subplots(figsize=(size, size), dpi=120)
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=9)
        ax.set_yticks(range(n), class_names, fontsize=9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    if n <= 30:
        fontsize = _count_fontsize(fig, ax, n, digits=len(str(int(counts.max().item()))))
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=fontsize,
                            color="white" if norm[i, j] > 0.5 else "black")
    return fig


def _count_fontsize(fig: Any, ax: Any, n: int, *, digits: int) -> float:
    """The largest font (points) whose widest count still fits in a cell, so the counts stay legible."""
    box = ax.get_position()  # the axes after layout, in figure fractions
    width, height = fig.get_size_inches()
    cell = 72 * min(box.width * width, box.height * height) / n  # points per cell
    # A digit is about 0.6 em wide: leave a margin either side, keep the line well inside the cell; 12 pt is plenty.
    return float(max(4.0, min(0.8 * cell / (0.6 * max(digits, 1)), 0.4 * cell, 12.0)))
