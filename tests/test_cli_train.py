"""The `resnet train`, `resnet eval` and `resnet predict` commands, and surviving SIGKILL."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import fake_fashion_mnist, run_resnet_in_subprocess
from resnet.cli.main import main

TINY = ["--model-option", "widths=[4,8,16]"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained_run(fmnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    torch.set_num_threads(1)
    code = main(["train", "--data-dir", str(fmnist), *TINY, "--epochs", "2", "--batch-size", "32", "--val-size", "32",
                 "--no-amp", "--out", str(out)])
    assert code == 0
    return out


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- train ------------------------------------------------------------------------------------


def test_train_prints_test_accuracy_last_and_writes_the_run(fmnist: Path, tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "settings.yaml"
    cfg.write_text("epochs: 1\nbatch-size: 32\nlr: 0.05\n")
    out = tmp_path / "run"
    code, stdout, stderr = run_cli(["train", "--data-dir", str(fmnist), *TINY, "--config", str(cfg), "--lr", "0.03",
                                    "--val-size", "32", "--no-amp", "--out", str(out)], capsys)
    assert code == 0, stderr
    assert stdout.strip().splitlines()[-1].startswith("test accuracy: ")
    assert "epoch 1/1" in stderr  # plain per-epoch lines when not on a terminal
    config = json.loads((out / "config.json").read_text())
    assert (config["epochs"], config["batch_size"], config["lr"], config["recipe"]) == (1, 32, 0.03, "quick")
    assert config["amp"] is False and config["channels_last"] is True


def test_train_with_no_arguments_is_the_main_job(monkeypatch, capsys) -> None:
    """No flags: the quick recipe (resnet20, real Fashion-MNIST) into a fresh timestamped run folder."""
    import resnet.train

    seen = {}

    def fake_run_training(config, *, out, resume, overwrite):
        seen.update(config=config, out=out)
        raise SystemExit(0)

    monkeypatch.setattr(resnet.train, "run_training", fake_run_training)
    with pytest.raises(SystemExit):
        main(["train"])
    config = seen["config"]
    assert (config.model, config.data, config.recipe, config.schedule) == ("resnet20", "fashion-mnist", "quick", "onecycle")
    assert config.amp is None  # decided by the hardware: on where bf16 is native
    assert seen["out"].parent == Path("runs") and seen["out"].name.startswith("resnet20-fashion-mnist-")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet21"], "unknown model 'resnet21'; did you mean"),
        (["--schedule", "cosine", "--warmup-epochs", "5", "--epochs", "2"], "--warmup-epochs"),
        (["--config", "/nonexistent/c.yaml"], "cannot read config file /nonexistent/c.yaml"),
        (["--recipe", "paper-cifr"], "unknown recipe 'paper-cifr'; did you mean paper-cifar"),
    ],
)
def test_train_errors_are_one_line(args: list[str], message: str, fmnist: Path, tmp_path: Path, capsys) -> None:
    code, stdout, stderr = run_cli(["train", "--data-dir", str(fmnist), "--val-size", "32", *args, "--out", str(tmp_path / "r")], capsys)
    assert code == 2
    assert stderr.startswith("resnet: error: ") and message in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_training_never_imports_torchvision(fmnist: Path, tmp_path: Path) -> None:
    """Importing torchvision takes a second or more at start; training on a dataset of tensors does not need it
    (config.json still records its version, from the package metadata)."""
    out = tmp_path / "run"
    stdout = run_resnet_in_subprocess(["train", "--data-dir", str(fmnist), *TINY, "--epochs", "1", "--batch-size", "32",
                                       "--val-size", "32", "--no-amp", "--out", str(out)])
    assert "torchvision loaded: False" in stdout
    assert json.loads((out / "config.json").read_text())["versions"]["torchvision"] == importlib.metadata.version("torchvision")


def test_existing_run_folder_unwritable_out_and_resume_misuse(trained_run: Path, tmp_path: Path, capsys) -> None:
    before = (trained_run / "checkpoints" / "last.safetensors").read_bytes()
    code, _, stderr = run_cli(["train", "--out", str(trained_run)], capsys)
    assert code == 2 and "already holds a run" in stderr and f"--resume {trained_run}" in stderr
    assert (trained_run / "checkpoints" / "last.safetensors").read_bytes() == before
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, stderr = run_cli(["train", "--out", str(blocker / "run")], capsys)
    assert code == 2 and ("is a file" in stderr or "cannot write" in stderr), stderr
    code, _, stderr = run_cli(["train", "--resume", str(trained_run), "--lr", "0.5"], capsys)
    assert code == 2 and "--resume takes its settings from the run's config.json; drop --lr" in stderr
    code, _, stderr = run_cli(["train", "--resume", str(tmp_path / "missing")], capsys)
    assert code == 2 and "cannot resume" in stderr


def test_run_files_get_the_umask_mode(trained_run: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    files = [p for p in trained_run.rglob("*") if p.is_file()]
    assert {"best.safetensors", "last.safetensors", "last.state.pt", "config.json"} <= {p.name for p in files}
    # Checkpoints too (the safetensors writer used to leave them 0600 while the rest were 0644).
    assert {p.name: p.stat().st_mode & 0o777 for p in files} == {p.name: 0o666 & ~umask for p in files}


def test_checkpoint_of_another_architecture_is_refused(trained_run: Path, fmnist: Path, tmp_path: Path, capsys) -> None:
    code, _, stderr = run_cli(["train", "--data-dir", str(fmnist), "--model", "resnet50", "--pretrained",
                               str(trained_run / "checkpoints" / "last.safetensors"), "--out", str(tmp_path / "r")], capsys)
    assert code == 2 and stderr.startswith("resnet: error: ") and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_resume_after_sigkill_is_bit_identical(tmp_path: Path) -> None:
    data = fake_fashion_mnist(tmp_path / "data", n_train=352, n_test=32)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "resnet", "train", "--data-dir", str(data), *TINY, "--epochs", "6", "--batch-size", "32",
            "--val-size", "32", "--ema", "--seed", "3"]
    straight = subprocess.Popen([*args, "--out", str(tmp_path / "straight")], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    victim = subprocess.Popen([*args, "--out", str(tmp_path / "killed")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "checkpoints" / "last.state.pt"
    deadline = time.monotonic() + 240
    while not state.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.15)  # somewhere in the next epoch, or in its save
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "summary.json").exists(), "the run finished before it could be killed"

    resumed = subprocess.run([sys.executable, "-m", "resnet", "train", "--resume", str(tmp_path / "killed")], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and resumed.stdout.strip().startswith("test accuracy: ")
    assert straight.wait(timeout=300) == 0, straight.stderr.read()

    for name in ("last", "best"):
        a = load_file(tmp_path / "straight" / "checkpoints" / f"{name}.safetensors")
        b = load_file(tmp_path / "killed" / "checkpoints" / f"{name}.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    epochs = [line.split(",")[0] for line in (tmp_path / "killed" / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == [str(e) for e in range(1, 7)]
    assert len((tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()) == 6
    final = [json.loads((tmp_path / run / "summary.json").read_text())["test_top1"] for run in ("straight", "killed")]
    assert final[0] == final[1]


# -- eval and predict ---------------------------------------------------------------------------


def test_eval_reports_metrics_and_confusion(trained_run: Path, fmnist: Path, tmp_path: Path, capsys) -> None:
    code, stdout, stderr = run_cli(["eval", "--checkpoint", str(trained_run), "--data-dir", str(fmnist),
                                    "--out", str(tmp_path)], capsys)
    assert code == 0, stderr
    for word in ("loss", "top-1", "top-5", "per-class accuracy", "T-shirt/top", "Ankle boot"):
        assert word in stdout
    rows = (tmp_path / "confusion-test.csv").read_text().splitlines()
    assert rows[0].split(",")[1] == "T-shirt/top" and len(rows) == 11
    counts = [[int(v) for v in row.split(",")[1:]] for row in rows[1:]]
    assert sum(map(sum, counts)) == 40
    assert (tmp_path / "confusion-test.png").read_bytes()[:4] == b"\x89PNG"

    code, stdout, _ = run_cli(["eval", "--checkpoint", str(trained_run / "checkpoints" / "last.safetensors"),
                               "--data-dir", str(fmnist), "--out", str(tmp_path), "--json"], capsys)
    result = json.loads(stdout)
    assert code == 0 and result["num_samples"] == 40 and 0 <= result["top1"] <= result["top5"] <= 1
    assert sum(map(sum, result["confusion"])) == 40 and set(result["per_class"]) == set(result["class_names"])
    # The same numbers as the run's own final test evaluation (same weights: the last epoch).
    summary = json.loads((trained_run / "summary.json").read_text())
    assert result["top1"] == pytest.approx(summary["test_top1"]) and result["loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    code, stdout, _ = run_cli(["eval", "--checkpoint", str(trained_run / "checkpoints" / "last.safetensors"),
                               "--data-dir", str(fmnist), "--out", str(tmp_path), "--json", "--tta"], capsys)
    assert code == 0 and json.loads(stdout)["loss"] != pytest.approx(summary["test_loss"], rel=1e-5)  # mirrored too


def test_eval_refuses_a_foreign_file(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "model.safetensors"
    bogus.write_bytes(b"not a checkpoint at all")
    code, _, stderr = run_cli(["eval", "--checkpoint", str(bogus)], capsys)
    assert code == 2 and stderr.startswith("resnet: error: ") and len(stderr.strip().splitlines()) == 1


def test_eval_strict_names_an_unreadable_image(trained_run: Path, tmp_path: Path, capsys) -> None:
    from resnet.data import testing as fixtures

    classes = [f"c{i}" for i in range(10)]
    root = fixtures.write_image_folder(tmp_path / "set", classes=classes, per_class=1, size=(28, 28), splits=("train", "test"), mode="L")
    (root / "test" / "c3" / "broken.png").write_bytes(b"\x89PNG not really")
    code, _, stderr = run_cli(["eval", "--checkpoint", str(trained_run), "--data", str(root), "--strict"], capsys)
    assert code == 2 and "broken.png" in stderr and len(stderr.strip().splitlines()) == 1
    code, stdout, stderr = run_cli(["eval", "--checkpoint", str(trained_run), "--data", str(root), "--json"], capsys)
    assert code == 0, stderr
    assert json.loads(stdout)["num_samples"] == 10  # skipped, not fatal, without --strict


def test_predict_table_and_json(trained_run: Path, fmnist: Path, tmp_path: Path, capsys) -> None:
    from resnet.data.idx import IMAGES_MAGIC, read_idx

    images = read_idx(fmnist / "t10k-images-idx3-ubyte", IMAGES_MAGIC)
    paths = []
    for i in range(3):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(images[i]).save(path)
        paths.append(str(path))
    code, stdout, stderr = run_cli(["predict", "--checkpoint", str(trained_run), *paths, "--top-k", "3"], capsys)
    assert code == 0, stderr
    assert all(p in stdout for p in paths) and "probability" in stdout
    code, stdout, _ = run_cli(["predict", "--checkpoint", str(trained_run), *paths, "--top-k", "3", "--json"], capsys)
    predictions = json.loads(stdout)
    assert [p["image"] for p in predictions] == paths
    for p in predictions:
        probs = [c["probability"] for c in p["predictions"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    # The top class agrees with the model run directly on the same pixels.
    from resnet.models import model_from_checkpoint

    model, meta = model_from_checkpoint(trained_run / "checkpoints" / "best.safetensors")
    x = (torch.from_numpy(images[:3].copy()).float().div(255).unsqueeze(1) - meta["mean"][0]) / meta["std"][0]
    with torch.no_grad():
        top = model.eval()(x).argmax(1).tolist()
    assert [p["predictions"][0]["index"] for p in predictions] == top
    code, _, stderr = run_cli(["predict", "--checkpoint", str(trained_run), str(tmp_path / "missing.png")], capsys)
    assert code == 2 and "image not found" in stderr


def test_fast_eval_calibrates_on_training_images_not_the_evaluated_ones(trained_run: Path, monkeypatch, capsys) -> None:
    import resnet
    from resnet.data import load

    seen: dict[str, object] = {}

    def fake_optimize(model, example, *, precision, calibration, **options):
        seen["calibration"], seen["precision"] = list(calibration), precision
        return model  # the fp32 model stands in: what is checked here is what optimize is given

    monkeypatch.setattr(resnet, "optimize", fake_optimize)
    monkeypatch.setattr("resnet.train.inference.PLAIN_JOB_S", 0.0)  # the tiny test split would otherwise stay plain
    code, out, _ = run_cli(["eval", "--checkpoint", str(trained_run), "--fast", "--precision", "int8", "--json"], capsys)
    assert code == 0 and json.loads(out)["top1"] >= 0
    batches = seen["calibration"]
    assert seen["precision"] == "int8" and batches and all(b.shape[1:] == (1, 28, 28) for b in batches)
    config = json.loads((trained_run / "config.json").read_text())
    from resnet.models import read_metadata

    meta = read_metadata(trained_run / "checkpoints" / "best.safetensors")
    train = load("fashion-mnist", "train", data_dir=config["data_dir"]).with_normalization(meta["mean"], meta["std"])
    test = load("fashion-mnist", "test", data_dir=config["data_dir"]).with_normalization(meta["mean"], meta["std"])
    train_x = torch.cat([x for x, _ in train.batches(256)])
    test_x = torch.cat([x for x, _ in test.batches(256)])

    def among(image: torch.Tensor, pool: torch.Tensor) -> bool:
        return bool((pool - image).abs().flatten(1).amax(1).lt(1e-5).any())

    # Prepared with the checkpoint's statistics, every calibration image is a training image.
    calib = torch.cat(batches)
    assert all(among(img, train_x) for img in calib)
    assert not any(among(img, test_x) for img in calib)


def test_compile_flag_forms() -> None:
    """--compile forces it on, --no-compile off, --compile auto measures (None, as the time-budget presets)."""
    from resnet.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["train", "--compile"]).compile is True
    assert parser.parse_args(["train", "--no-compile"]).compile is False
    assert parser.parse_args(["train", "--compile", "auto"]).compile is None
    assert not hasattr(parser.parse_args(["train"]), "compile")  # not given: the recipe decides
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--compile", "sometimes"])
