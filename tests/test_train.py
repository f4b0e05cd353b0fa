"""resnet.train: configuration precedence, schedules, fit's run folder, exact resume, NaN handling, DDP."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import fake_cpu_flags, randomize_norms
from resnet import create_model
from resnet.data import load
from resnet.errors import ResNetError
from resnet.train import TrainConfig, evaluate, fit, resolve_config
from resnet.train.checkpoint import load_state
from resnet.train.schedule import lr_factor_fn
from resnet.train.step import amp_dtype_for

TINY = {"widths": [4, 8, 16]}  # resnet20's layout at a quarter of the width: fast, still residual


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(data_dir: Path, **overrides: object) -> TrainConfig:
    values = dict(data_dir=str(data_dir), model_options=TINY, epochs=3, batch_size=32, val_size=32, lr=0.1,
                  schedule="cosine", amp=False, num_workers=0)
    values.update(overrides)
    return resolve_config(values)


def splits(config: TrainConfig):
    from resnet.train.trainer import open_data

    return open_data(config)[1]


def tiny_model(train_data, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("resnet20", num_classes=train_data.num_classes, in_chans=train_data.in_chans, **TINY)


# -- configuration ----------------------------------------------------------------------------


def test_validation_size_and_fraction_replace_each_other_across_layers() -> None:
    quick = resolve_config({})
    assert (quick.val_fraction, quick.val_size) == (1 / 12, None)  # 5,000 of Fashion-MNIST's 60,000
    assert (resolve_config({"val_size": 100}).val_size, resolve_config({"val_size": 100}).val_fraction) == (100, None)
    by_fraction = resolve_config({"val_fraction": 0.2}, recipe="paper-cifar")
    assert (by_fraction.val_fraction, by_fraction.val_size) == (0.2, None)
    off = resolve_config({"val_fraction": 0})
    assert (off.val_fraction, off.val_size) == (None, None)


def test_a_folders_own_val_split_wins_over_the_recipes_carve(tmp_path: Path) -> None:
    from resnet.data import testing as fixtures
    from resnet.train.trainer import open_data

    root = fixtures.write_image_folder(tmp_path / "pets", per_class=6, size=(8, 8), splits=("train", "val"))
    config, (train, val, _) = open_data(resolve_config({"data": str(root)}))  # quick recipe: carve 1/12 where no val/
    assert (len(train), len(val)) == (18, 18)
    assert config.val_fraction is None  # what config.json records
    carved = resolve_config({"data": str(root), "val_fraction": 0.5})  # an explicit flag carves anyway
    assert carved.own_val_first is False
    _, (train, val, _) = open_data(carved)
    assert (len(train), len(val)) == (9, 9)


def test_train_flags_reach_the_config() -> None:
    from resnet.cli.main import build_parser
    from resnet.cli.train import CONTROL

    args = build_parser().parse_args(["train", "--val-split", "0.1", "--download", "--strict"])
    flags = {k: v for k, v in vars(args).items() if k not in CONTROL}
    config = resolve_config(flags)
    assert (config.val_fraction, config.val_size, config.download, config.strict) == (0.1, None, True, True)


def test_precedence_defaults_recipe_file_flags(tmp_path: Path) -> None:
    assert TrainConfig().epochs == 30
    quick = resolve_config({})
    assert (quick.model, quick.data, quick.recipe) == ("resnet20", "fashion-mnist", "quick")
    paper = resolve_config({}, recipe="paper-cifar")
    assert (paper.lr, paper.momentum, paper.weight_decay, paper.batch_size) == (0.1, 0.9, 1e-4, 128)
    assert (paper.milestone_steps, paper.max_steps, paper.val_size, paper.augment) == ([32000, 48000], 64000, 5000, True)
    imagenet = resolve_config({"recipe": "paper-imagenet"})
    assert (imagenet.batch_size, imagenet.step_every) == (256, 30)

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("recipe: paper-cifar\nlr: 0.05\nweight-decay: 0.0005\n")
    config = resolve_config({"lr": 0.2}, config_file=cfg_file)
    assert config.recipe == "paper-cifar" and config.max_steps == 64000  # the file's recipe applies
    assert config.weight_decay == 5e-4  # file beats recipe
    assert config.lr == 0.2  # flag beats file
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"epochs": 7}))
    assert resolve_config({}, config_file=json_file).epochs == 7


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ResNetError, match="unknown training setting 'weight-decy'.*did you mean weight_decay"):
        resolve_config({"weight-decy": 0.1})
    with pytest.raises(ResNetError, match="unknown recipe 'paper-cifr'.*paper-cifar"):
        resolve_config({}, recipe="paper-cifr")
    with pytest.raises(ResNetError, match="--schedule"):
        resolve_config({"schedule": "linear"})
    with pytest.raises(ResNetError, match="--batch-size"):
        resolve_config({"batch_size": 0})


def test_schedules() -> None:
    paper = resolve_config({}, recipe="paper-cifar")
    f = lr_factor_fn(paper, steps_per_epoch=352, total_steps=64000)
    assert [f(s) for s in (0, 31999, 32000, 47999, 48000, 63999)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    imagenet = resolve_config({}, recipe="paper-imagenet")
    g = lr_factor_fn(imagenet, steps_per_epoch=10, total_steps=900)
    assert [g(s) for s in (0, 299, 300, 600, 899)] == pytest.approx([1, 1, 0.1, 0.01, 0.01])
    warm = lr_factor_fn(resolve_config({"schedule": "cosine", "warmup_epochs": 2}), 10, 100)
    assert [warm(s) for s in (0, 9, 19)] == pytest.approx([0.05, 0.5, 1.0])
    assert warm(99) < 0.01 and warm(20) > warm(60) > warm(99)
    one = lr_factor_fn(resolve_config({"schedule": "onecycle"}), 10, 100)
    assert one(0) == pytest.approx(1 / 25) and one(30) == pytest.approx(1.0) and one(99) < 1e-3


# -- fit and evaluate ---------------------------------------------------------------------------


def test_fit_writes_a_complete_run_folder(fmnist: Path, tmp_path: Path) -> None:
    config = tiny_config(fmnist, epochs=2, ema=True)
    train, val, test = splits(config)
    assert len(train) == 128 and len(val) == 32
    out = tmp_path / "run"
    result = fit(tiny_model(train), train, val, config, out=out, test_data=test)

    resolved = json.loads((out / "config.json").read_text())
    assert resolved["model"] == "resnet20" and resolved["versions"]["torch"] == torch.__version__
    assert resolved["dataset"]["mean"] == list(train.mean) and resolved["dataset"]["train_size"] == 128
    assert "CPU" in resolved["hardware"]
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0].split(",")[:5] == ["epoch", "train_loss", "train_top1", "val_loss", "val_top1"]
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["images_per_s"] > 0 for r in rows)
    assert rows[0]["lr"] > rows[1]["lr"] >= 0  # cosine, logged at each epoch's end
    for name in ("last.safetensors", "last.state.pt", "best.safetensors"):
        assert (out / "checkpoints" / name).is_file()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_top1"] == pytest.approx(result.test.top1) and summary["test_size"] == 40
    assert summary["compiled"] is False  # what --compile resolved to (tiny_config trains eager)
    assert all(r["test_top1"] is not None for r in rows) and rows[-1]["test_top1"] == summary["test_top1"]

    from resnet.models import model_from_checkpoint, read_metadata

    meta = read_metadata(out / "checkpoints" / "last.safetensors")
    assert meta["class_names"] == train.class_names and meta["mean"] == list(train.mean)
    assert meta["image_size"] == [28, 28] and meta["dataset"] == "fashion-mnist" and meta["epoch"] == 2
    # The weights file holds the model fit() hands back (the EMA model here), exactly.
    reloaded, _ = model_from_checkpoint(out / "checkpoints" / "last.safetensors")
    for (k, a), b in zip(result.model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(a.cpu(), b), k


def test_test_every_scores_the_test_split_on_those_epochs_and_after_the_last(fmnist: Path, tmp_path: Path) -> None:
    config = tiny_config(fmnist, epochs=3, test_every=2, val_size=None)
    train, val, test = splits(config)
    result = fit(tiny_model(train), train, val, config, out=tmp_path / "run", test_data=test)
    scored = [row.get("test_top1") is not None for row in result.history]
    assert scored == [False, True, True]  # epoch 2, and epoch 3 because it is the last
    assert result.summary["test_top1"] == result.history[-1]["test_top1"]
    with pytest.raises(ResNetError, match="--test-every"):
        tiny_config(fmnist, test_every=0)


def test_flip_tta_averages_each_image_with_its_mirror(fmnist: Path) -> None:
    config = tiny_config(fmnist)
    train, _, test = splits(config)
    model = randomize_norms(tiny_model(train)).eval()
    x, y = next(test.batches(40))
    with torch.no_grad():
        logits = (model(x) + model(x.flip(3))) / 2
    result = evaluate(model, test, batch_size=16, flip_tta=True)
    assert result.loss == pytest.approx(float(nn.functional.cross_entropy(logits, y)), rel=1e-5)
    assert result.top1 == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert result.loss != pytest.approx(evaluate(model, test, batch_size=16).loss, rel=1e-5)  # it did something


def test_evaluate_counts(fmnist: Path) -> None:
    config = tiny_config(fmnist)
    train, _, test = splits(config)
    model = tiny_model(train)
    result = evaluate(model, test, batch_size=16)
    assert result.num_samples == 40 and int(result.confusion.sum()) == 40
    assert result.confusion.shape == (10, 10) and result.top1 <= result.top5 <= 1.0
    assert result.top1 == pytest.approx(float(result.confusion.diag().sum()) / 40)
    # Against a direct computation.
    model.eval()
    x, y = next(test.batches(40))
    with torch.no_grad():
        logits = model(x)
    assert result.top1 == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert result.loss == pytest.approx(float(nn.functional.cross_entropy(logits, y)), rel=1e-5)
    counts = result.confusion.sum(1)
    for c in range(10):
        if counts[c]:
            assert result.per_class[c] == pytest.approx(float(result.confusion[c, c] / counts[c]))
        else:
            assert math.isnan(result.per_class[c])


def test_fit_learns(fmnist: Path) -> None:
    config = tiny_config(fmnist, epochs=6, batch_size=16, lr=0.05, schedule="onecycle", val_size=None)
    train, _, test = splits(config)
    before = evaluate(tiny_model(train), test).loss
    result = fit(tiny_model(train), train, None, config, test_data=test)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.test.loss < before


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class _SignalAfter:
    """A DataSplit stand-in whose batches() sends this process a SIGTERM after ``n`` batches of epoch ``epoch``."""

    def __init__(self, data, epoch: int, n: int) -> None:
        self.data, self.epoch, self.n = data, epoch, n

    def __getattr__(self, name: str):
        return getattr(self.data, name)

    def __len__(self) -> int:
        return len(self.data)

    def batches(self, *args, **kwargs):
        for i, batch in enumerate(self.data.batches(*args, **kwargs)):
            if kwargs.get("epoch") == self.epoch and i == self.n:
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch


def test_sigterm_mid_epoch_saves_and_resume_is_bit_identical(fmnist: Path, tmp_path: Path) -> None:
    config = tiny_config(fmnist, epochs=3, ema=True, augment=True, model_options={**TINY, "drop_path_rate": 0.1})
    train, val, _ = splits(config)
    reference = fit(tiny_model(train), train, val, config, out=tmp_path / "straight")

    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_model(train), _SignalAfter(train, epoch=1, n=2), val, config, out=out)
    state = load_state(out / "checkpoints" / "last.state.pt")
    assert (state["epoch"], state["batch"]) == (1, 3)  # mid-epoch: epoch 2, after the step in flight
    # Resume with freshly initialized (different) weights: everything must come from the checkpoint.
    resumed = fit(tiny_model(train, seed=123), train, val, config, out=out, resume=True)
    for (k, a), b in zip(_weights(reference.model).items(), _weights(resumed.model).values()):
        assert torch.equal(a, b), k
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[0] for r in rows] == ["1", "2", "3"]
    straight = json.loads((tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()[-1])
    assert straight["val_loss"] == json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["val_loss"]


class _NaNAfter(nn.Module):
    """Wraps a model; its training forward returns NaN logits from call ``n`` on (``once``: only call n)."""

    def __init__(self, model: nn.Module, n: int, once: bool = False) -> None:
        super().__init__()
        self.model, self.n, self.once, self.calls = model, n, once, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        if self.training:
            self.calls += 1
            if self.calls == self.n or (self.calls > self.n and not self.once):
                return out * float("nan")
        return out


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(fmnist: Path, tmp_path: Path) -> None:
    config = tiny_config(fmnist, epochs=3)
    train, val, _ = splits(config)  # 4 steps per epoch
    out = tmp_path / "nan"
    with pytest.raises(ResNetError, match=r"loss is nan at epoch 2, step 3 of 4.*last good checkpoint.*epoch 1"):
        fit(_NaNAfter(tiny_model(train), n=7), train, val, config, out=out)
    state = load_state(out / "checkpoints" / "last.state.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())

    config = tiny_config(fmnist, epochs=2, skip_nonfinite=True)
    model = _NaNAfter(tiny_model(train), n=3, once=True)
    result = fit(model, train, val, config)
    assert result.summary["nonfinite_steps"] == 1 and result.history[-1]["nonfinite_steps"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_run_folder_errors_and_nothing_overwritten(fmnist: Path, tmp_path: Path) -> None:
    config = tiny_config(fmnist, epochs=1)
    train, val, _ = splits(config)
    out = tmp_path / "run"
    fit(tiny_model(train), train, val, config, out=out)
    before = (out / "checkpoints" / "last.safetensors").read_bytes()
    with pytest.raises(ResNetError, match="already holds a run.*--resume.*--overwrite"):
        fit(tiny_model(train), train, val, config, out=out)
    assert (out / "checkpoints" / "last.safetensors").read_bytes() == before
    with pytest.raises(ResNetError, match="cannot write to run folder"):
        blocker = tmp_path / "a-file"
        blocker.write_text("x")
        fit(tiny_model(train), train, val, config, out=blocker / "run")
    with pytest.raises(ResNetError, match="holds a resnet20 run but the model is resnet32"):
        torch.manual_seed(0)
        other = create_model("resnet32", num_classes=10, in_chans=1, **TINY)
        fit(other, train, val, config, out=out, resume=True)
    with pytest.raises(ResNetError, match="cannot resume .*does not exist"):
        fit(tiny_model(train), train, val, config, out=tmp_path / "nowhere", resume=True)


def test_disk_full_during_save_keeps_the_previous_checkpoint(fmnist: Path, tmp_path: Path, monkeypatch) -> None:
    import errno

    config = tiny_config(fmnist, epochs=1)
    train, val, _ = splits(config)
    out = tmp_path / "run"
    fit(tiny_model(train), train, val, config, out=out)
    good_state = (out / "checkpoints" / "last.state.pt").read_bytes()

    def full(obj: object, tmp: Path, *args, **kwargs) -> None:
        Path(tmp).write_bytes(b"partial")  # the write gets half-way, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    config2 = tiny_config(fmnist, epochs=2)
    with pytest.raises(ResNetError, match="could not save checkpoint .*last.state.pt: No space left on device; the previous checkpoint is intact"):
        fit(tiny_model(train), train, val, config2, out=tmp_path / "run2")
    monkeypatch.undo()
    assert (out / "checkpoints" / "last.state.pt").read_bytes() == good_state
    assert not [p for p in (tmp_path / "run2" / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def test_recompute_batchnorm_averages_over_the_pass_and_leaves_frozen_layers_and_modes_alone():
    from resnet.train.evaluation import recompute_batchnorm

    torch.manual_seed(0)
    conv, dropout, norm, frozen = nn.Conv2d(3, 4, 1), nn.Dropout(0.9), nn.BatchNorm2d(4), nn.BatchNorm2d(4)
    model = nn.Sequential(conv, dropout, norm, frozen).train()
    frozen.eval()  # a frozen stage: its statistics must stay
    frozen.running_mean.fill_(3.0)
    batches = [(torch.randn(8, 3, 5, 5) * 2 + 1, None) for _ in range(4)]
    recompute_batchnorm([model], batches)

    with torch.no_grad():  # what precise BN means: the plain average of the batches' statistics, dropout off
        outputs = [conv(x) for x, _ in batches]
    expected_mean = torch.stack([y.mean((0, 2, 3)) for y in outputs]).mean(0)
    expected_var = torch.stack([y.transpose(0, 1).flatten(1).var(1) for y in outputs]).mean(0)
    assert torch.allclose(norm.running_mean, expected_mean, atol=1e-5)
    assert torch.allclose(norm.running_var, expected_var, rtol=1e-4)
    assert torch.equal(frozen.running_mean, torch.full((4,), 3.0))
    assert norm.momentum == 0.1 and model.training and dropout.training and norm.training and not frozen.training


# -- distributed -----------------------------------------------------------------------------------


def test_ddp_two_gloo_processes_match_one_process(fmnist: Path, tmp_path: Path) -> None:
    common = ["--data-dir", str(fmnist), "--model-option", "widths=[4,8,16]", "--epochs", "2", "--batch-size", "32",
              "--val-size", "32", "--no-amp", "--no-augment", "--sync-bn", "--lr", "0.02", "--device", "cpu"]
    # --standalone: a free port of its own; TMPDIR: torchrun's log folder goes with the test's files
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    two = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "resnet", "train", *common, "--out", str(tmp_path / "two")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    from resnet.cli.main import main

    assert main(["train", *common, "--out", str(tmp_path / "one")]) == 0  # meanwhile, one process (one thread)
    stdout, stderr = two.communicate(timeout=300)
    assert two.returncode == 0, stderr[-3000:]
    rows = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("one", "two")}
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
    # The first steps agree to float rounding; later ones drift apart only as rounding compounds
    # (batches of 16 vs 32 take different conv kernels; gradients are averaged in another order).
    assert rows["two"][0]["train_loss"] == pytest.approx(rows["one"][0]["train_loss"], rel=1e-5)
    for a, b in zip(rows["one"], rows["two"], strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=5e-3)
    from safetensors.torch import load_file

    w1, w2 = (load_file(tmp_path / name / "checkpoints" / "last.safetensors") for name in ("one", "two"))
    assert w1.keys() == w2.keys()
    # BatchNorm's running statistics are recomputed from the final weights after these short epochs
    # (trainer.BN_RECALIBRATE_BELOW), which amplifies the weights' rounding differences: a looser bound.
    for running, bound in ((False, 1e-3), (True, 1e-2)):
        floats = [k for k in w1 if w1[k].is_floating_point() and ("running" in k) == running]
        flat1, flat2 = (torch.cat([w[k].double().flatten() for k in floats]) for w in (w1, w2))
        assert float((flat1 - flat2).norm() / flat1.norm()) < bound, running
    assert stdout.count("test accuracy") == 1  # rank 0 alone reports


# -- precision follows the hardware --------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "fma"}, None),  # a Zen 3: bf16 is emulated there (measured ~7x slower): train in fp32
        ({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}, torch.bfloat16),  # a Zen 5: native bf16
    ],
)
def test_default_amp_follows_the_cpu(flags: set[str], expected: torch.dtype | None, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cpu_flags(monkeypatch, flags)
    assert amp_dtype_for("cpu", None) is expected  # --amp not given
    assert amp_dtype_for("cpu", True) is torch.bfloat16 and amp_dtype_for("cpu", False) is None  # flags win


def test_a_failing_compile_falls_back_to_eager_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    from resnet.train.step import make_train_step

    def broken_compile(model: nn.Module, **_: object) -> object:
        def run(x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("InductorError: no working C++ compiler found\nmore detail")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=3, in_chans=1, widths=[4, 8, 16])
    before = [p.detach().clone() for p in model.parameters()]
    step = make_train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), device="cpu", amp_dtype=None,
                           channels_last=False, compile=True)
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 0])
    assert torch.isfinite(step(x, y)) and torch.isfinite(step(x, y))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    lines = [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert lines == ["warning: --compile: torch.compile failed (RuntimeError: InductorError: no working C++ compiler "
                     "found); training without it"]


class _SleepyNet(nn.Module):
    """A net whose forward takes ``delay`` seconds: the fake compiler below scales that delay."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.delay = 0.01

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.delay)
        return self.fc(x.flatten(1))


def _fake_compile(factor: float, made: list[nn.Module]):
    def compile_model(model: nn.Module, **_: object):
        made.append(model)

        def forward(x: torch.Tensor) -> torch.Tensor:  # the same math, factor x the time
            saved, model.delay = model.delay, model.delay * factor
            try:
                return model(x)
            finally:
                model.delay = saved
        return forward
    return compile_model


@pytest.mark.parametrize("factor, keeps", [(0.3, True), (3.0, False)])
def test_measured_compile_keeps_the_faster_forward_and_remembers_it(
    factor: float, keeps: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    from resnet.train import compiling
    from resnet.train.step import make_train_step

    monkeypatch.setenv("RESNET_CACHE", str(tmp_path))
    caplog.set_level("INFO", logger="resnet")
    made: list[nn.Module] = []
    monkeypatch.setattr(torch, "compile", _fake_compile(factor, made))
    x, y = torch.randn(8, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])

    def new_step() -> object:
        model = _SleepyNet()
        return make_train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), device="cpu", amp_dtype=None,
                               channels_last=False, compile=None)

    step = new_step()
    measured = 2 * (compiling.WARMUP_STEPS + compiling.TIMED_STEPS)  # warm-up and timed steps of each kind
    for i in range(measured):
        assert step.compile_choice is not None and step.compiled is None, f"decided early, at step {i}"
        step(x, y)
    assert step.compile_choice is None and len(made) == 1  # compiled once, for the timed compiled steps
    assert step.compiled is keeps
    entry = next(iter(json.loads((tmp_path / "train-compile.json").read_text()).values()))
    assert (entry["compiled_speedup"] >= compiling.MIN_GAIN) is keeps
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("compile:")]
    assert len(said) == 1 and said[0].startswith("compile: on" if keeps else "compile: off") and "measured" in said[0]

    again = new_step()  # the same machine, model and batch: decided before the first step from the file
    again(x, y)
    assert again.compile_choice is None and len(made) == (2 if keeps else 1)
    assert again.compiled is keeps
    assert "remembered" in [r.getMessage() for r in caplog.records if r.getMessage().startswith("compile:")][-1]


@pytest.mark.parametrize("name", ["fmnist-5min", "fmnist-30min"])
def test_the_time_budget_presets_measure_compile_and_score_the_test_split_once(name: str) -> None:
    from resnet.train.config import RECIPES

    config = resolve_config(recipe=name)
    assert name in RECIPES and config.recipe == name and config.data == "fashion-mnist"
    assert config.compile is None  # measured: compiled where it trains faster (train/compiling.py)
    assert config.tta and config.val_size is None and config.val_fraction is None
    assert config.test_every > config.epochs  # scored after the last epoch only
    assert resolve_config({"epochs": 3}, recipe=name).epochs == 3  # flags still override the preset
    # Both: progressive resizing below Fashion-MNIST's 28x28, smallest first; a flag turns it off.
    assert config.progressive_sizes == sorted(config.progressive_sizes) and 4 <= config.progressive_sizes[-1] < 28
    from resnet.cli.main import build_parser

    off = build_parser().parse_args(["train", "--recipe", name, "--no-progressive-sizes"])
    assert resolve_config({"progressive_sizes": off.progressive_sizes}, recipe=name).progressive_sizes == []
