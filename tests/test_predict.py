"""`resnet predict` on folders: streamed in batches with threads decoding ahead, bounded memory, unreadable
files reported and skipped, CSV / JSON-lines output, the same numbers as predicting each image alone."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import randomize_norms, run_resnet_in_subprocess
from resnet.cli.main import main
from resnet.models import create_model, save_weights
from resnet.train import inference
from resnet.train.inference import predict_files, predict_stream

pytestmark = pytest.mark.usefixtures("one_thread")
CLASSES = ["cat", "dog", "eel", "fox", "gnu"]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder whose checkpoint takes 1x20x20 images and tells 5 classes apart (random weights)."""
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    model = randomize_norms(create_model("resnet20", num_classes=5, in_chans=1, widths=[4, 8, 16]))
    save_weights(model, run / "checkpoints" / "best.safetensors",
                 metadata={"image_size": [20, 20], "mean": [0.4], "std": [0.3], "class_names": CLASSES})
    return run


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """13 images of different sizes at two depths, a broken one, and a file that is not an image."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(13):
        where = root / ("a" if i < 5 else "b/deeper" if i < 9 else "")
        where.mkdir(parents=True, exist_ok=True)
        side = int(rng.integers(16, 40))
        Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(where / f"img{i:02d}.{'png' if i % 2 else 'jpg'}")
    (root / "b" / "broken.png").write_bytes(b"\x89PNG not really an image")
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_is_predicted_recursively_sorted_and_equal_to_per_image(run_folder: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "resnet", "predict", "--checkpoint", str(run_folder), str(folder),
                           "--batch-size", "4", "--top-k", "2", "--output", str(out)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = sorted(p for p in folder.rglob("*") if p.suffix in (".png", ".jpg"))
    rows = list(csv.DictReader(out.open()))
    assert [r["image"] for r in rows] == [str(p) for p in expected]  # every image, recursively, sorted; no notes.txt
    assert list(rows[0]) == ["image", "class_1", "index_1", "probability_1", "class_2", "index_2", "probability_2", "error"]
    broken = [r for r in rows if r["error"]]
    assert [r["image"] for r in broken] == [str(folder / "b" / "broken.png")] and broken[0]["class_1"] == ""
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "1 of 14 files could not be read" in warnings[0] and "broken.png" in warnings[0]
    assert "wrote" in done.stdout and "14 images, 1 unreadable" in done.stdout
    # The same classes and probabilities as predicting each image alone (batch of one).
    for row in rows:
        if row["error"]:
            continue
        [alone] = predict_files(run_folder, [row["image"]], top_k=2)
        assert [row["class_1"], row["class_2"]] == [alone.top[0][0], alone.top[1][0]]
        assert [int(row["index_1"]), int(row["index_2"])] == [alone.top[0][1], alone.top[1][1]]
        assert float(row["probability_1"]) == pytest.approx(alone.top[0][2], rel=1e-5)


def test_json_and_jsonl_outputs_agree(run_folder: Path, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--checkpoint", str(run_folder), str(folder / "a"), str(folder / "b" / "broken.png"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [Path(p["image"]).name for p in printed] == ["img00.jpg", "img01.png", "img02.jpg", "img03.png", "img04.jpg", "broken.png"]
    assert printed[-1]["error"] and printed[-1]["predictions"] == [] and printed[0]["error"] is None
    assert len(printed[0]["predictions"]) == 5 and {c["class"] for c in printed[0]["predictions"]} == set(CLASSES)
    out = tmp_path / "p.jsonl"
    assert main(["predict", "--checkpoint", str(run_folder), str(folder / "a"), str(folder / "b" / "broken.png"), "-o", str(out)]) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == printed


def test_predict_errors_are_one_line(run_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    for args, message in [
        ([str(tmp_path / "empty")], f"no image files (.jpg, .jpeg, .png, .webp, .bmp) in folder {tmp_path / 'empty'}"),
        ([str(tmp_path / "missing.png")], f"image not found: {tmp_path / 'missing.png'}"),
        ([str(tmp_path), "-o", str(tmp_path / "p.txt")], f"--output {tmp_path / 'p.txt'}: the file must end in .csv or .jsonl"),
        ([str(tmp_path), "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ]:
        assert main(["predict", "--checkpoint", str(run_folder), *args]) == 2
        assert capsys.readouterr().err == f"resnet: error: {message}\n"


def test_streaming_keeps_memory_bounded(run_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """However many files, at most (depth + 1) batches are decoded and not yet predicted."""
    many = tmp_path / "many"
    many.mkdir()
    for i in range(2000):
        (many / f"{i:05d}.png").touch()
    lock, state = threading.Lock(), {"decoded": 0, "yielded": 0, "peak": 0}

    def fake_decode(path: Path, in_chans: int, size: tuple[int, int], *preparation: object):  # decoding is not what is measured here
        with lock:
            state["decoded"] += 1
            state["peak"] = max(state["peak"], state["decoded"] - state["yielded"])
        return torch.zeros((in_chans, *size), dtype=torch.uint8), None

    monkeypatch.setattr(inference, "_decode_one", fake_decode)
    batch = 16
    stream = predict_stream(run_folder, [many], batch_size=batch, workers=2, top_k=1)
    assert stream.total == 2000
    for n, prediction in enumerate(stream):
        with lock:
            state["yielded"] += 1
        assert prediction.image == str(many / f"{n:05d}.png")
    assert state["yielded"] == 2000 and stream.failures == 0
    assert batch < state["peak"] <= 3 * batch  # decoding ran ahead of inference, by at most the window


def test_fast_predict_builds_its_engine_once_on_the_first_batch(run_folder: Path, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, ...]] = []

    def fake_fast_callable(model, example, *, precision, calibration, job_images=None):
        seen.append(tuple(example.shape))
        assert job_images == 5  # the engine is sized to the whole job, not to the first batch
        return lambda x: model(x) * 2  # a different engine: its logits, not the eager model's, must be used

    monkeypatch.setattr(inference, "fast_callable", fake_fast_callable)
    plain = predict_files(run_folder, [folder / "a"], top_k=5, batch_size=2)
    fast = predict_files(run_folder, [folder / "a"], top_k=5, batch_size=2, fast=True)
    assert seen == [(2, 1, 20, 20)]  # chosen once, on the first real batch (5 images in batches of 2)
    assert [p.image for p in fast] == [p.image for p in plain]
    assert all(f.top[0][2] > p.top[0][2] for f, p in zip(fast, plain))  # sharper: the logits were doubled


def test_predicting_never_imports_torchvision(run_folder: Path, folder: Path, tmp_path: Path) -> None:
    """Importing torchvision takes seconds (its ops load torch._dynamo): half of a one-image `resnet predict`.
    The plain path does not need it, so the command must not load it; weight-set lookups still find its sets."""
    stdout = run_resnet_in_subprocess(
        ["predict", "--checkpoint", str(run_folder), str(folder / "a"), "--output", str(tmp_path / "p.csv")],
        then="from resnet.models import list_pretrained\nprint('torchvision sets:', len(list_pretrained('resnet50.tv*')))\n")
    assert "torchvision loaded: False" in stdout
    assert "torchvision sets: 2" in stdout  # IMAGENET1K_V1 and V2, read off torchvision's enum on first lookup
    assert len((tmp_path / "p.csv").read_text().splitlines()) > 1
