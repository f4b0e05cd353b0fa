"""Issue 13 item 1 through the real command: --unsafe-load works on train, and eval/predict/export take
checkpoints without a resnet header (a run's last.state.pt, a torchvision-style .pth with --model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet.cli.main import main
from resnet.models import create_model

# Each test starts the real command a few times (about 3 s of CPU each).
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def resnet(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "resnet", *args], capture_output=True, text=True, timeout=timeout, env=env)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("resnet: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def run_folder(fmnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    torch.set_num_threads(1)
    assert main(["train", "--data-dir", str(fmnist), "--model-option", "widths=[4,8,16]", "--epochs", "1",
                 "--max-steps", "2", "--batch-size", "32", "--val-size", "32", "--no-amp", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "shirt.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)).save(path)
    return path


def test_predict_with_a_runs_own_state_file(run_folder: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", "--checkpoint", str(run_folder / "checkpoints" / "last.safetensors"), "--json", str(image)]) == 0
    expected = capsys.readouterr()
    result = resnet("predict", "--checkpoint", str(run_folder / "checkpoints" / "last.state.pt"), "--json", str(image))
    assert result.returncode == 0, result.stderr
    # Class names, input size and mean/std come from the run's config.json; the raw (non-EMA) weights
    # of the state file equal the .safetensors ones here, so the predictions agree.
    ours, theirs = json.loads(result.stdout)[0]["predictions"], json.loads(expected.out)[0]["predictions"]
    assert [p["class"] for p in ours] == [p["class"] for p in theirs] and ours[0]["class"] in {"T-shirt/top", "Bag", "Sneaker",
        "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Ankle boot"}  # fmt: skip
    assert ours[0]["probability"] == pytest.approx(theirs[0]["probability"], abs=1e-5)


def test_eval_a_plain_state_dict_needs_model(fmnist: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    state = tmp_path / "resnet20_fmnist.pth"  # as torchvision/timm users save them: a bare state dict
    torch.save(create_model("resnet20", in_chans=1).state_dict(), state)
    common = ["--data", "fashion-mnist", "--data-dir", str(fmnist), "--out", str(tmp_path / "eval")]
    line = one_line_error(resnet("eval", "--checkpoint", str(state), *common))
    assert "not a resnet checkpoint" in line and "--model NAME" in line
    result = resnet("eval", "--checkpoint", str(state), "--model", "resnet20", *common, "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["checkpoint"] == str(state) and 0.0 <= scores["top1"] <= 1.0 and scores["num_samples"] == 40


def test_unsafe_load_is_accepted_by_train_and_export(fmnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pickled = tmp_path / "mal.pt"
    torch.save(create_model("resnet20", in_chans=1), pickled)  # a whole pickled module: loading it runs code
    train = ["train", "--data-dir", str(fmnist), "--model", "resnet20", "--pretrained", str(pickled), "--epochs", "1",
             "--max-steps", "1", "--batch-size", "32", "--val-size", "32", "--no-amp"]
    line = one_line_error(resnet(*train, "--out", str(tmp_path / "refused")))
    assert "refused" in line and "--unsafe-load" in line and not (tmp_path / "refused" / "checkpoints").exists()
    result = resnet(*train, "--unsafe-load", "--out", str(tmp_path / "run"))
    assert result.returncode == 0 and "full unpickling" in result.stderr, result.stderr
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").is_file()
    onnx = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(pickled), "--model", "resnet20", "-o", str(onnx)]) == 2
    assert "--unsafe-load" in capsys.readouterr().err and not onnx.exists()
    result = resnet("export", "--checkpoint", str(pickled), "--model", "resnet20", "--unsafe-load", "-o", str(onnx))
    assert result.returncode == 0 and onnx.is_file() and ": ok" in result.stdout, result.stderr
