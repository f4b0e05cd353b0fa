"""`resnet reproduce`: the experiments' members, resuming, the table with the published figures, the figure."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from resnet import create_model, reproduce
from resnet.errors import ResNetError
from resnet.reproduce.runner import Schedule, cores, member_config
from resnet.train import run_training

TINY = {"batch_size": 32}  # 160 fake images: 5 iterations an epoch


def n_params(name: str, **options) -> int:
    return sum(p.numel() for p in create_model(name, num_classes=10, in_chans=1, **options).parameters())


@pytest.fixture(scope="module")
def degradation(fmnist, tmp_path_factory):
    """degradation at depths 20 and 32, two iterations per member, on the fake Fashion-MNIST."""
    before = torch.get_num_threads()
    out = tmp_path_factory.mktemp("degradation")
    try:
        result = reproduce.run("degradation", data="fashion-mnist", data_dir=str(fmnist), steps=2, depths=[20, 32],
                               out=out, threads=1, overrides=TINY)
    finally:
        torch.set_num_threads(before)
    return result


def test_experiments_name_the_papers_nets():
    names = [(m.model, m.model_options) for m in reproduce.get_experiment("degradation").members([20, 56])]
    assert names == [("plain20", {}), ("resnet20", {}), ("plain56", {}), ("resnet56", {})]
    units = reproduce.get_experiment("units").members([20])
    assert [m.model_options["unit"] for m in units] == ["original", "bn_after_add", "relu_before_add", "relu_preact", "full_preact"]
    assert [m.published for m in units] == [6.61, 8.17, 7.84, 6.71, 6.37]
    shortcuts = reproduce.get_experiment("shortcuts").members([20], seeds=2)
    assert [(m.model_options["shortcut"], m.seed) for m in shortcuts] == [(o, s) for s in (0, 1) for o in "ABC"]
    # A adds no parameters, B projects where the width grows, C projects every shortcut.
    a, b, c = (n_params("resnet20", shortcut=o) for o in "ABC")
    assert a == n_params("plain20") < b < c
    with pytest.raises(ResNetError, match="one depth"):
        reproduce.get_experiment("units").members([20, 32])
    with pytest.raises(ResNetError, match="--depths: 21"):
        reproduce.get_experiment("degradation").members([21])


def test_bad_requests_fail_before_training(fmnist, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ResNetError, match="not empty and holds no experiment"):
        reproduce.run("degradation", data_dir=str(fmnist), steps=1, depths=[20], out=tmp_path)
    with pytest.raises(ResNetError, match="one of --epochs, --steps and --budget-minutes"):
        reproduce.run("degradation", data_dir=str(fmnist), steps=1, epochs=1, out=tmp_path / "new")
    with pytest.raises(ResNetError, match="--budget-minutes must be a positive number"):
        reproduce.run("degradation", data_dir=str(fmnist), budget_minutes=-1, depths=[20], out=tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_degradation_table_holds_our_runs_and_the_published_numbers(degradation):
    rows = {r["key"]: r for r in degradation.rows}
    assert list(rows) == ["plain20", "resnet20", "plain32", "resnet32"]
    for key, row in rows.items():  # the member runs are the right nets, rebuilt from their checkpoints
        assert row["params"] == n_params(key)
        assert row["iterations"] == 2 and row["seeds"] == 1
        assert 0 <= row["train_error"] <= 100 and 0 <= row["test_error"] <= 100
    assert rows["plain32"]["params"] == 464_154 - 288 and rows["plain20"]["params"] == 269_722 - 288  # 1 input channel
    assert (rows["resnet20"]["published_test_error"], rows["resnet32"]["published_test_error"]) == (8.75, 7.51)
    assert rows["plain20"]["published_test_error"] is None  # Table 6 has no plain nets (Figure 6 only)
    text = (degradation.out / "table.md").read_text()
    assert "8.75" in text and "7.51" in text and "Table 6" in text and "CIFAR-10" in text
    assert "fashion-mnist (160 train / 40 test" in text and "2 iterations" in text  # what ours ran on
    assert degradation.verdict["text"] in text and degradation.verdict["text"].startswith("verdict: degradation ")
    assert (degradation.verdict["plain_deeper_trains_worse"]
            == (rows["plain32"]["train_error"] > rows["plain20"]["train_error"]))
    csv_lines = (degradation.out / "table.csv").read_text().splitlines()
    assert csv_lines[0].startswith("net,params") and len(csv_lines) == 5
    assert (degradation.out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((degradation.out / "results.json").read_text())
    assert [r["key"] for r in saved["rows"]] == list(rows) and saved["verdict"] == degradation.verdict
    for key in rows:  # every member is an ordinary run folder
        assert (degradation.out / f"{key}-seed0" / "checkpoints" / "last.safetensors").is_file()


class _KillAt(logging.Handler):
    """Stops the process (as a kill would) when a member logs the end of its first epoch: its checkpoint is written."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model, self.current = model, None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("training "):
            self.current = message.split()[1]
        if self.current == self.model and message.startswith("epoch 1/2"):
            raise KeyboardInterrupt


def test_killed_experiment_finishes_only_what_is_missing_and_the_killed_member_bit_exact(fmnist, tmp_path, one_thread):
    args = dict(data="fashion-mnist", data_dir=str(fmnist), epochs=2, depths=[20], out=tmp_path / "exp", threads=1, overrides=TINY)
    logger = logging.getLogger("resnet")
    killer = _KillAt("resnet20")
    logger.addHandler(killer)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(KeyboardInterrupt):
            reproduce.run("degradation", **args)
    finally:
        logger.removeHandler(killer)
        logger.setLevel(level)
    done = tmp_path / "exp" / "plain20-seed0" / "summary.json"
    killed = tmp_path / "exp" / "resnet20-seed0"
    assert done.is_file() and not (killed / "summary.json").exists()
    assert (killed / "checkpoints" / "last.state.pt").is_file()
    stamp = done.stat().st_mtime_ns

    result = reproduce.run("degradation", **args)
    assert done.stat().st_mtime_ns == stamp  # the finished member was not trained again
    assert "resuming" in (tmp_path / "exp" / "logs" / "resnet20-seed0.log").read_text()
    assert [r["key"] for r in result.rows] == ["plain20", "resnet20"]

    # The resumed member ends with the weights of one never interrupted.
    member = reproduce.get_experiment("degradation").members([20])[1]
    config = member_config(member, Schedule(epochs=2), data="fashion-mnist", data_dir=str(fmnist), threads=1, overrides=TINY)
    run_training(config, out=tmp_path / "reference")
    resumed = load_file(killed / "checkpoints" / "last.safetensors")
    reference = load_file(tmp_path / "reference" / "checkpoints" / "last.safetensors")
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resnet", "reproduce", *args], capture_output=True, text=True, timeout=300)


def test_cli_rerun_prints_the_table_without_training_and_refuses_other_arguments(degradation, fmnist):
    same = ["degradation", "--data-dir", str(fmnist), "--steps", "2", "--depths", "20,32", "--batch-size", "32",
            "--out", str(degradation.out)]
    done = _cli(*same)
    assert done.returncode == 0, done.stderr
    assert "ResNet-32" in done.stdout and "8.75" in done.stdout and "7.51" in done.stdout and "Table 6" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == degradation.verdict["text"]
    assert "done already" in done.stderr and "training plain20" not in done.stderr

    other = _cli("degradation", "--data-dir", str(fmnist), "--steps", "2", "--depths", "20", "--batch-size", "32",
                 "--out", str(degradation.out))
    assert other.returncode == 2
    assert other.stderr.strip() == (f"resnet: error: --out {degradation.out} holds an experiment run with other arguments (depths); "
                                    "rerun it with the same arguments to finish it, or choose another --out")
    unknown = _cli("degredation", "--out", str(degradation.out))
    assert unknown.returncode == 2 and unknown.stderr.strip() == "resnet: error: unknown experiment 'degredation'; did you mean degradation?"


@pytest.mark.slow  # three worker processes, each importing torch
def test_parallel_members_run_in_their_own_processes(fmnist, tmp_path):
    result = reproduce.run("shortcuts", data="fashion-mnist", data_dir=str(fmnist), steps=1, depths=[20], jobs=2,
                           out=tmp_path / "exp", overrides=TINY)
    params = {r["key"]: r["params"] for r in result.rows}
    assert params == {f"resnet20-{o}": n_params("resnet20", shortcut=o) for o in "ABC"}
    assert [r["published_test_error"] for r in result.rows] == [25.03, 24.52, 24.19]
    assert "Table 3" in (tmp_path / "exp" / "table.md").read_text() and "ImageNet" in result.published_source
    for o in "ABC":  # each member ran with half the cores
        config = json.loads((tmp_path / "exp" / f"resnet20-{o}-seed0" / "config.json").read_text())
        assert config["threads"] == max(cores() // 2, 1)


def test_only_trains_the_named_groups_and_judges_the_residual_half(fmnist, tmp_path, one_thread):
    deg = reproduce.get_experiment("degradation")
    assert deg.groups() == ["plain", "resnet"]
    assert [m.model for m in deg.members([20, 32], only=["resnet"])] == ["resnet20", "resnet32"]
    assert [m.model_options["shortcut"] for m in reproduce.get_experiment("shortcuts").members([20], only=["A", "C"])] == ["A", "C"]
    with pytest.raises(ResNetError, match="--only: residual is not a group of the degradation experiment; choose from plain, resnet"):
        deg.members([20], only=["residual"])
    result = reproduce.run("degradation", data_dir=str(fmnist), steps=2, depths=[20, 32], only=["resnet"], out=tmp_path / "x",
                           threads=1, overrides=TINY)
    assert [r["key"] for r in result.rows] == ["resnet20", "resnet32"]
    assert sorted(p.name for p in (tmp_path / "x").iterdir() if p.name.endswith("-seed0")) == ["resnet20-seed0", "resnet32-seed0"]
    rows = {r["key"]: r for r in result.rows}
    assert result.verdict["residual_deeper_trains_better"] == (rows["resnet32"]["train_error"] < rows["resnet20"]["train_error"])
    assert result.verdict["text"].startswith("verdict: residual half ") and "(plain nets not run)" in result.verdict["text"]
    assert result.verdict["reproduced"] is None  # the plain half was not run, so the whole claim is not judged
    with pytest.raises(ResNetError, match="only"):  # the same folder with another group set is another experiment
        reproduce.run("degradation", data_dir=str(fmnist), steps=2, depths=[20, 32], out=tmp_path / "x", threads=1, overrides=TINY)
