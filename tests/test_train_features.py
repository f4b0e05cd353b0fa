"""The practitioners' training features: accumulation, clipping, class weights, balanced sampling, mixup/cutmix,
early stopping, freezing, TensorBoard, fit on torch data with callbacks, and resume of finished or extended runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from conftest import fake_fashion_mnist
from resnet import create_model, report
from resnet.errors import ResNetError
from resnet.train import Callback, evaluate, fit, resolve_config
from resnet.train.checkpoint import load_state
from resnet.train.schedule import lr_factor_fn
from resnet.train.step import make_mix, make_train_step
from resnet.train.trainer import Trainer, balanced_indices, open_data

TINY = {"widths": [4, 8, 16]}
TINY_FLAGS = ["--model-option", "widths=[4,8,16]"]

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(num_classes: int = 10, in_chans: int = 1, seed: int = 0, **options: Any) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("resnet20", num_classes=num_classes, in_chans=in_chans, **TINY, **options)


def tensor_data(n: int = 64, classes: int = 4, seed: int = 0, skew: bool = False) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    if skew:
        y[: n * 3 // 4] = 0  # three quarters of one class
    x = torch.randn(n, 1, 12, 12, generator=g) + y.view(-1, 1, 1, 1).float()
    return TensorDataset(x, y)


def config(**values: Any):
    return resolve_config({"epochs": 2, "batch_size": 16, "amp": False, "lr": 0.05, "schedule": "cosine", **values})


# -- one step: accumulation, clipping, class weights, mixup/cutmix -------------------------------------------


def test_accumulation_gives_the_larger_batchs_update(fmnist: Path) -> None:
    """Two micro-batches of 16 and one batch of 32 make the same optimizer step (GroupNorm: no batch statistics)."""
    base = {"data_dir": str(fmnist), "model_options": {**TINY, "norm_layer": "groupnorm"}, "epochs": 1,
            "batch_size": 32, "val_size": 32, "amp": False, "augment": True, "momentum": 0.0, "weight_decay": 0.0}
    cfg1 = resolve_config(base)
    _, data = open_data(cfg1)
    results = []
    for accum in (1, 2):
        model = tiny(norm_layer="groupnorm")
        results.append(fit(model, data.train, None, resolve_config({**base, "accum_steps": accum}), verbose=0))
    start = tiny(norm_layer="groupnorm").state_dict()
    a, b = results[0].model.state_dict(), results[1].model.state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a)  # it trained
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=key)
    assert results[0].history[0]["train_loss"] == pytest.approx(results[1].history[0]["train_loss"], rel=1e-5)


def test_clip_grad_caps_the_update() -> None:
    x, y = tensor_data(16)[:]
    updates = {}
    for clip in (None, 1e-3):
        model = tiny(num_classes=4)
        before = [p.detach().clone() for p in model.parameters()]
        opt = torch.optim.SGD(model.parameters(), lr=1.0)  # the update is then minus the gradient
        step = make_train_step(model, opt, device="cpu", amp_dtype=None, channels_last=False, clip_grad=clip)
        step(x, y)
        updates[clip] = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)]).norm()
        if clip is not None:
            assert float(step.grad_norm) > clip  # the gradient was larger than the cap...
    assert float(updates[1e-3]) == pytest.approx(1e-3, rel=1e-3)  # ...and the step was cut to it
    assert float(updates[None]) > 10 * 1e-3


def test_class_weights_weight_the_loss_and_balanced_draws_even_classes() -> None:
    data = tensor_data(64, skew=True)
    trainer = Trainer(tiny(num_classes=4), data, None, config(class_weights="balanced"), verbose=0)
    counts = torch.bincount(data.tensors[1], minlength=4).double()
    expected = (64 / (4 * counts)).float()
    torch.testing.assert_close(trainer.step.class_weights, expected)
    x, y = data[:16]
    model = trainer.model
    model.train()
    with torch.no_grad():
        torch.manual_seed(1)
        wanted = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y, weight=expected)
    torch.manual_seed(1)
    assert float(trainer.step(x, y)) == pytest.approx(float(wanted), rel=1e-5)
    with torch.no_grad():
        assert float(wanted) != pytest.approx(float(F.cross_entropy(model(x), y)), rel=1e-3)  # the weights matter here

    draws = balanced_indices(data.tensors[1], 4, torch.Generator().manual_seed(0))
    labels = data.tensors[1]
    many = torch.cat([balanced_indices(labels, 4, torch.Generator().manual_seed(s)) for s in range(20)])
    share = torch.bincount(labels[many], minlength=4).double() / len(many)
    assert torch.allclose(share, torch.full((4,), 0.25, dtype=torch.float64), atol=0.03)  # not 3/4 of class 0
    assert torch.equal(draws, balanced_indices(data.tensors[1], 4, torch.Generator().manual_seed(0)))  # seeded
    with pytest.raises(Exception, match="class-weights has 3 numbers but the data has 4 classes"):
        Trainer(tiny(num_classes=4), data, None, config(class_weights=[1.0, 2.0, 3.0]), verbose=0)


def test_mixup_and_cutmix_targets() -> None:
    x = torch.rand(8, 1, 12, 12)
    y = torch.arange(8) % 4
    torch.manual_seed(0)
    mixed, target = make_mix(0.4, 0.0, 4)(x, y)
    assert target.shape == (8, 4) and torch.allclose(target.sum(1), torch.ones(8))
    lam = float(target[0, y[0]]) if y[0] != y.roll(1)[0] else None
    assert lam is not None and 0 < lam < 1
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x.roll(1, 0))
    torch.testing.assert_close(target, lam * F.one_hot(y, 4) + (1 - lam) * F.one_hot(y.roll(1), 4))

    torch.manual_seed(1)
    cut, target = make_mix(0.0, 1.0, 4)(x, y)
    from_other = (cut != x).float().mean((1, 2, 3))  # where the pasted box comes from the rolled image
    assert torch.allclose(target.sum(1), torch.ones(8))
    rolled_weight = 1 - target[torch.arange(8), y]
    torch.testing.assert_close(from_other, rolled_weight, atol=1e-6, rtol=0)
    assert float(from_other.max()) > 0  # a box was cut

    # The step's loss is the soft-target cross-entropy.
    model = tiny(num_classes=4).eval()  # eval: the same logits for the check below
    step = make_train_step(model, torch.optim.SGD(model.parameters(), lr=0.0), device="cpu", amp_dtype=None,
                           channels_last=False, mix=make_mix(0.4, 0.0, 4))
    torch.manual_seed(0)
    mixed, target = make_mix(0.4, 0.0, 4)(x, y)
    with torch.no_grad():
        wanted = -(target * F.log_softmax(model(mixed), 1)).sum(1).mean()
    torch.manual_seed(0)
    assert float(step(x, y)) == pytest.approx(float(wanted), rel=1e-5)


# -- the data, opened once ---------------------------------------------------------------------------------


def test_a_run_opens_its_image_folder_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet.data import folder, testing

    root = testing.write_image_folder(tmp_path / "pets", per_class=6, size=(8, 8), splits=("train", "val", "test"))
    opened = []

    class Counted(folder.ImageFolder):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            opened.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(folder, "ImageFolder", Counted)
    config, splits = open_data(resolve_config({"data": str(root)}))
    assert len(opened) == 1  # once for train, val and test (it was up to five times)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 18, 18) and splits.own_val
    assert splits.val.mean == splits.test.mean == splits.train.mean  # one set of training statistics
    assert config.val_fraction is None  # the recipe's carve gave way to the folder's own val/


# -- fit: torch data, callbacks, early stopping, TensorBoard ------------------------------------------------


class Recorder(Callback):
    def __init__(self) -> None:
        self.epochs: list[int] = []
        self.steps = 0
        self.started = self.ended = 0

    def on_train_start(self, trainer: Trainer) -> None:
        self.started += 1

    def on_step_end(self, trainer: Trainer, logs: Any) -> None:
        self.steps += 1

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self.epochs.append(row["epoch"])

    def on_train_end(self, trainer: Trainer, result: Any) -> None:
        self.ended += 1


def test_fit_on_a_tensor_dataset_and_a_dataloader_with_a_callback_seeing_every_epoch() -> None:
    data = tensor_data(64)
    recorder = Recorder()
    model = tiny(num_classes=4, in_chans=1)
    before = evaluate(model, data).loss
    result = fit(model, data, data, config(epochs=3, lr=0.05), callbacks=[recorder], verbose=0)
    assert recorder.epochs == [1, 2, 3] and recorder.steps == 3 * 4 and (recorder.started, recorder.ended) == (1, 1)
    assert [row["epoch"] for row in result.history] == [1, 2, 3] and result.history[-1]["val_top1"] is not None
    after = evaluate(result.model, data)
    assert after.num_samples == 64 and after.loss < before  # it learned from plain tensors

    loader = DataLoader(data, batch_size=8, shuffle=True)
    recorder = Recorder()
    result = fit(tiny(num_classes=4), loader, None, config(epochs=2), callbacks=[recorder], verbose=0)
    assert recorder.epochs == [1, 2] and recorder.steps == 2 * len(loader)  # the loader's own batches
    assert evaluate(result.model, loader).num_samples == 64


def test_fit_shows_progress_by_default_and_verbose_0_is_silent(tmp_path: Path) -> None:
    script = (
        "import sys, torch\n"
        "from torch.utils.data import TensorDataset\n"
        "from resnet import create_model\nfrom resnet.train import fit\n"
        "torch.set_num_threads(1)\n"
        "d = TensorDataset(torch.randn(32, 1, 8, 8), torch.arange(32) % 2)\n"
        "cfg = {'epochs': 2, 'batch_size': 16, 'amp': False}\n"
        "fit(create_model('resnet20', num_classes=2, in_chans=1, widths=[4, 8, 16]), d, None, cfg)\n"
        "print('---', file=sys.stderr)\n"
        "fit(create_model('resnet20', num_classes=2, in_chans=1, widths=[4, 8, 16]), d, None, cfg, verbose=0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    loud, quiet = done.stderr.split("---\n")
    assert "epoch 1/2" in loud and "epoch 2/2" in loud and "training resnet20" in loud
    assert quiet.strip() == ""


class _FlatValLoss(Callback):
    """Makes the monitored val_loss stop improving after the first epoch."""

    def on_validation_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        row["val_loss"] = 1.0


def test_early_stopping_ends_the_run_and_resume_says_it_is_finished(tmp_path: Path) -> None:
    data = tensor_data(64)
    out = tmp_path / "run"
    result = fit(tiny(num_classes=4), data, data, config(epochs=8, early_stop=2), out=out,
                 callbacks=[_FlatValLoss()], verbose=0)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]  # best at 1, then 2 epochs without improvement
    assert "early stopping: val_loss has not improved" in result.summary["stopped"]
    assert load_state(out / "checkpoints" / "last.state.pt")["stop_reason"] == result.summary["stopped"]
    again = fit(tiny(num_classes=4), data, data, config(epochs=8, early_stop=2), out=out, resume=True, verbose=0)
    assert again.already_finished and len(again.history) == 3

    improving = fit(tiny(num_classes=4), data, data, config(epochs=3, early_stop=1, early_stop_metric="epoch_count"),
                    verbose=0, callbacks=[_Counter()])
    assert len(improving.history) == 3 and "stopped" not in improving.summary  # it kept improving


class _Counter(Callback):
    def on_validation_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        row["epoch_count"] = float(row["epoch"])  # rises every epoch ("max" mode: always an improvement)


def test_tensorboard_event_files_hold_every_epoch(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = tensor_data(32)
    result = fit(tiny(num_classes=4), data, data, config(epochs=2, tensorboard=True), out=tmp_path / "run", verbose=0)
    logs = tmp_path / "run" / "tensorboard"
    assert list(logs.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(logs))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [1, 2]
    assert [e.value for e in losses] == pytest.approx([row["train_loss"] for row in result.history])
    assert [e.step for e in events.Scalars("val/top1")] == [1, 2]


# -- the command line: --freeze, SIGKILL with every feature on, finished and extended runs ---------------------


def _train(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "resnet", "train", *args], env=env, capture_output=True, text=True,
                          timeout=300, **kwargs)


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from resnet.cli.main import main

    code = main(["train", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_freeze_from_the_cli_says_what_is_frozen_and_keeps_it(fmnist: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code, _, stderr = _main(["--data-dir", str(fmnist), *TINY_FLAGS, "--epochs", "1", "--batch-size", "32",
                             "--val-size", "32", "--no-amp", "--freeze", "1", "--out", str(out)], capsys)
    assert code == 0, stderr
    assert "frozen: stem, layer1 (" in stderr and "training: layer2, layer3" in stderr
    trained = load_file(out / "checkpoints" / "last.safetensors")
    initial = tiny().state_dict()  # the run's seed 0 builds the same initial weights
    for key in ("conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.2.bn2.running_var"):
        assert torch.equal(trained[key], initial[key]), key
    assert not torch.equal(trained["layer2.0.conv1.weight"], initial["layer2.0.conv1.weight"])
    code, _, stderr = _main(["--data-dir", str(fmnist), *TINY_FLAGS, "--freeze", "4", "--out", str(tmp_path / "r2")], capsys)
    assert code == 2 and stderr.startswith("resnet: error: --freeze 4: this model has 3 stages")
    code, _, stderr = _main(["--data-dir", str(fmnist), "--class-weights", "1,x", "--out", str(tmp_path / "r3")], capsys)
    assert code == 2 and stderr.startswith("resnet: error: --class-weights '1,x': give 'balanced' or numbers")


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical_with_mixup_accumulation_ema_and_sampler(tmp_path: Path) -> None:
    data = fake_fashion_mnist(tmp_path / "data", n_train=352, n_test=32)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "resnet", "train", "--data-dir", str(data), *TINY_FLAGS, "--epochs", "5",
            "--batch-size", "32", "--val-size", "32", "--seed", "3", "--ema", "--mixup", "0.4", "--cutmix", "1.0",
            "--accum-steps", "2", "--balanced-sampler", "--clip-grad", "2.0", "--class-weights", "balanced",
            "--model-option", "drop_path_rate=0.1"]
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

    resumed = _train(["--resume", str(tmp_path / "killed")])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    for name in ("last", "best"):
        a = load_file(tmp_path / "straight" / "checkpoints" / f"{name}.safetensors")
        b = load_file(tmp_path / "killed" / "checkpoints" / f"{name}.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    rows = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


def test_resume_of_a_finished_run_changes_nothing_and_epochs_extends_it(fmnist: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    code, _, stderr = _main(["--data-dir", str(fmnist), *TINY_FLAGS, "--epochs", "2", "--batch-size", "32",
                             "--val-size", "32", "--no-amp", "--schedule", "onecycle", "--out", str(out)], capsys)
    assert code == 0, stderr
    before = _snapshot(out)

    again = _train(["--resume", str(out)])
    assert again.returncode == 0, again.stderr
    assert f"{out} is finished: 2 of 2 epochs trained" in again.stderr and "--epochs N" in again.stderr
    assert "resuming" not in again.stderr and again.stdout.startswith("test accuracy: ")
    assert _snapshot(out) == before  # no file rewritten: same bytes, same modification times

    code, _, stderr = _main(["--resume", str(out), "--epochs", "1"], capsys)
    assert code == 2 and "can only extend it" in stderr and len(stderr.splitlines()) == 1
    assert _snapshot(out) == before

    longer = _train(["--resume", str(out), "--epochs", "4"])
    assert longer.returncode == 0, longer.stderr
    assert "extending" in longer.stderr and "recomputed for 4 epochs" in longer.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert json.loads((out / "config.json").read_text())["epochs"] == 4
    # The schedule was recomputed for 4 epochs: epoch 3 ends where the 4-epoch one-cycle curve is at its step.
    config = resolve_config({"epochs": 4, "schedule": "onecycle", "lr": json.loads((out / "config.json").read_text())["lr"]})
    factor = lr_factor_fn(config, steps_per_epoch=4, total_steps=16)
    assert rows[2]["lr"] == pytest.approx(config.lr * factor(12), rel=1e-6)
    assert rows[2]["lr"] > 100 * rows[1]["lr"]  # the 2-epoch curve had annealed to almost nothing
    assert json.loads((out / "summary.json").read_text())["epochs"] == 4


# -- the package's names (issue 13, items 8 and 9) ------------------------------------------------------


def test_train_names_are_the_functions_whatever_the_import_order() -> None:
    """No submodule shares a name with a function, so ``from resnet.train import fit`` is the function in any order."""
    import importlib.util
    import inspect

    import resnet.train as package
    import resnet.train.evaluation  # noqa: F401  (importing submodules must not rebind the package's names)
    import resnet.train.trainer  # noqa: F401
    from resnet.train import distributed, run_training
    from resnet.train.step import TrainStep

    assert inspect.isfunction(package.fit) and inspect.isfunction(package.evaluate) and inspect.isfunction(run_training)
    assert importlib.util.find_spec("resnet.train.fit") is None and importlib.util.find_spec("resnet.train.evaluate") is None
    # Dead code gone (issue 13 item 9).
    assert "extra_config" not in inspect.signature(fit).parameters
    assert not hasattr(distributed, "unwrap") and "check_finite" not in inspect.signature(TrainStep).parameters


class _TermAt(Callback):
    """Sends this process SIGTERM after step ``index`` of ``epoch`` (the trainer then saves and stops)."""

    def __init__(self, epoch: int, index: int) -> None:
        self.epoch, self.index = epoch, index

    def on_step_end(self, trainer: Trainer, logs: Any) -> None:
        if (logs.epoch, logs.index) == (self.epoch, self.index):
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("kind", ["dataset", "dataloader", "files"])
def test_stop_mid_epoch_and_resume_is_bit_identical_on_any_data(kind: str, tmp_path: Path) -> None:
    """Mixup, accumulation, EMA (and the balanced sampler where labels are known) on a Dataset, a shuffling
    DataLoader, and a DataSplit decoded from files: a mid-epoch stop and resume ends where a straight run does."""
    from resnet.data import load, testing

    data: Any = tensor_data(64)
    train: Any = DataLoader(data, batch_size=8, shuffle=True) if kind == "dataloader" else data
    if kind == "files":
        root = testing.write_image_folder(tmp_path / "pets", classes=("a", "b", "c", "d"), per_class=16,
                                          size=(12, 12), splits=(), mode="L")
        train = data = load(root, "train", in_memory=False)
    extra = {} if kind == "dataloader" else {"balanced_sampler": True}
    cfg = config(epochs=3, ema=True, mixup=0.4, cutmix=1.0, accum_steps=2, **extra)
    straight = fit(tiny(num_classes=4), train, data, cfg, out=tmp_path / "straight", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(num_classes=4), train, data, cfg, out=tmp_path / "stopped", callbacks=[_TermAt(1, 1)], verbose=0)
    assert load_state(tmp_path / "stopped" / "checkpoints" / "last.state.pt")["batch"] == 2  # mid-epoch 2
    resumed = fit(tiny(num_classes=4, seed=7), train, data, cfg, out=tmp_path / "stopped", resume=True, verbose=0)
    for (key, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), key
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in straight.history]


def test_progressive_resizing_trains_the_early_phases_small_and_says_so(fmnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--progressive-sizes 12 20 over 3 epochs: epoch 1 sees 12x12 batches, epoch 2 20x20, epoch 3 the data's 28x28."""
    seen: list[tuple[int, int]] = []

    class Sizes(Callback):
        def on_step_end(self, trainer: Trainer, logs: Any) -> None:
            seen.append((logs.epoch, shapes[-1]))

    shapes: list[int] = []
    said: list[str] = []
    monkeypatch.setattr(report, "info", said.append)
    model = tiny()
    model.register_forward_pre_hook(lambda module, args: shapes.append(args[0].shape[-1]) if module.training else None)
    cfg = resolve_config({"data_dir": str(fmnist), "model_options": TINY, "epochs": 3, "batch_size": 32, "val_size": 32,
                          "amp": False, "progressive_sizes": [12, 20]})
    _, data = open_data(cfg)
    result = fit(model, data.train, data.val, cfg, callbacks=[Sizes()], verbose=1)
    assert set(seen) == {(0, 12), (1, 20), (2, 28)}
    assert len(result.history) == 3 and all(row["val_top1"] is not None for row in result.history)
    assert "progressive resizing: epoch 1 at 12 px, epoch 2 at 20 px, epoch 3 at 28x28 (the data's own)" in said
    # --compile auto would time the first size only and compile again at every later one: it stays eager.
    auto = Trainer(tiny(), data.train, data.val, resolve_config({**cfg.to_dict(), "compile": None}), verbose=0)
    assert auto.step.compile_choice is None and auto.step.forward is auto.step.model
    assert auto.compile_reason is not None and "progressive resizing" in auto.compile_reason
    # Fewer epochs than phases: the last epoch still trains at the size the model is scored at.
    short = SimpleNamespace(config=resolve_config({"epochs": 2, "progressive_sizes": [12, 16, 20]}), num_epochs=2)
    assert [Trainer.epoch_image_size(short, epoch) for epoch in range(2)] == [12, None]  # type: ignore[arg-type]
    with pytest.raises(ResNetError, match="--progressive-sizes: must be a list of whole numbers >= 4"):
        resolve_config({"progressive_sizes": [2]})
    from resnet.cli.main import build_parser

    assert build_parser().parse_args(["train", "--progressive-sizes", "20", "24"]).progressive_sizes == [20, 24]
