"""What a reader sees: block diagrams with their shortcuts, whole-epoch ticks, legible confusion counts,
and a summary that prints as the table `resnet summary` shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

import resnet
from resnet.cli.main import main
from resnet.inspect.diagram import build
from resnet.inspect.summary import meta_model
from resnet.train.plots import confusion_figure, curves_figure


def _shortcut_labels(source: str) -> list[str]:
    return re.findall(r'-> \w+_add \[label=(identity|"[^"]+")', source)


def test_block_diagram_draws_every_shortcut_labelled() -> None:
    r20 = build(meta_model("resnet20"), level="block", input_size=(3, 32, 32)).source
    labels = _shortcut_labels(r20)
    # 9 blocks: 7 identities and the 2 option-A (zero-padding) shortcuts where the stage halves the size.
    assert sorted(labels) == ['"zero-pad, /2"'] * 2 + ["identity"] * 7
    assert "layer1_0 -> layer1_0_add" in r20 and "relu -> layer1_0_add" in r20  # main path and shortcut meet
    assert "layer1_0_add -> layer1_1" in r20  # the next block reads the sum
    r18 = _shortcut_labels(build(meta_model("resnet18"), level="block").source)
    assert r18.count("identity") == 5 and '"projection 1x1, 128, /2"' in r18 and len(r18) == 8
    assert _shortcut_labels(build(meta_model("plain20"), level="block", input_size=(3, 32, 32)).source) == []


def test_curves_ticks_only_at_whole_epochs() -> None:
    history = [{"epoch": e, "train_top1": 0.5 + 0.1 * e, "test_top1": 0.4 + 0.1 * e} for e in (1, 2, 3)]
    fig = curves_figure(history)
    try:
        ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
        assert ticks == [1, 2, 3]
        assert all(float(t).is_integer() for t in fig.axes[0].get_xticks())
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_confusion_counts_are_legible_on_ten_classes() -> None:
    counts = torch.full((10, 10), 7)
    counts.fill_diagonal_(1000)  # Fashion-MNIST's 1,000 test images per class: the widest count
    fig = confusion_figure(counts, [f"class {i}" for i in range(10)])
    try:
        ax = fig.axes[0]
        texts = ax.texts
        assert len(texts) == 100 and min(t.get_fontsize() for t in texts) >= 10  # was 6 pt
        renderer = fig.canvas.get_renderer()
        cell = ax.get_window_extent(renderer).width / 10
        assert max(t.get_window_extent(renderer).width for t in texts) < cell  # "1000" fits in its cell
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_printing_a_summary_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    code = "import resnet; print(resnet.inspect.summary(resnet.create_model('resnet20'), (3, 64, 64)))"  # as in the issue
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert main(["summary", "resnet20", "--input", "3x64x64"]) == 0
    assert done.stdout == capsys.readouterr().out  # the same table the command shows
    assert done.stdout.startswith("resnet20 at 3x64x64\nlayer") and "total params: 269,722" in done.stdout
    s = resnet.inspect.summary(meta_model("resnet20"), (3, 64, 64))
    assert s.params == 269_722 and s.layers[0].name == "conv1"  # still a dataclass for data access
