"""`resnet export`, `summary` and `diagram` take a run folder or checkpoint file, as eval and predict do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resnet.cli.main import main
from resnet.models import create_model, save_weights

TINY = {"widths": [4, 8, 16]}


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `resnet train` leaves: a 1-channel, 28x28, 7-class net in RUN/checkpoints/best.safetensors."""
    run = tmp_path_factory.mktemp("run")
    model = create_model("resnet20", num_classes=7, in_chans=1, **TINY)
    save_weights(model, run / "checkpoints" / "best.safetensors",
                 metadata={"image_size": [28, 28], "mean": [0.5], "std": [0.25], "dataset": "fashion-mnist"})
    (run / "config.json").write_text(json.dumps({"model": "resnet20", "model_options": TINY}))
    return run


def _resnet(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "resnet", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_export_takes_a_run_folder(run_folder: Path, tmp_path: Path) -> None:
    done = _resnet("export", "--checkpoint", str(run_folder), "-o", "m.pt", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote m.pt" in done.stdout and done.stdout.rstrip().endswith("ok")
    import torch

    module = torch.jit.load(str(tmp_path / "m.pt"))
    assert module(torch.zeros(2, 1, 28, 28)).shape == (2, 7)  # the checkpoint's channels, size and classes


def test_summary_of_a_run_folder_and_of_its_file(run_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = _resnet("summary", str(run_folder), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["input_size"] == [1, 28, 28]
    assert result["layers"][-1]["name"] == "fc" and result["layers"][-1]["output_shape"] == [1, 7]
    assert result["params"] == sum(p.numel() for p in create_model("resnet20", num_classes=7, in_chans=1, **TINY).parameters())
    file = run_folder / "checkpoints" / "best.safetensors"
    assert main(["summary", str(file), "--num-classes", "3"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"resnet: error: --num-classes: only with a registered model name; the checkpoint {file} sets its own"]
    assert main(["summary", str(tmp_path / "missing_run")]) == 2
    assert "missing_run: no such checkpoint file or run folder, nor a registered model name" in capsys.readouterr().err


def test_diagram_of_a_run_folder(run_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("graphviz")
    done = _resnet("diagram", str(run_folder), "-o", "net.dot", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    source = (tmp_path / "net.dot").read_text()
    assert "input 1x28x28" in source and "16 -> 7" in source  # its channels, size and classifier
