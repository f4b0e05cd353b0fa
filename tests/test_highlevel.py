"""resnet.Model: the Keras/Paddle-style facade over the trainer, weights and inspect layers."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import resnet
from resnet.cli.main import main
from resnet.data.testing import write_signs
from resnet.errors import ResNetError

SMALL = {"widths": (8, 16, 32)}  # a narrow resnet20: the facade, not the net, is under test


@pytest.fixture(scope="module")
def signs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_signs(tmp_path_factory.mktemp("signs"), train=48, test=24, size=16)


def _arrays(train_h5: Path) -> tuple[np.ndarray, ...]:
    with h5py.File(train_h5) as train, h5py.File(train_h5.with_name("test_signs.h5")) as test:
        return (train["train_set_x"][:], train["train_set_y"][:], test["test_set_x"][:], test["test_set_y"][:])


def test_fit_on_tutorial_arrays_matches_resnet_train(signs: Path, tmp_path: Path, one_thread: None, capsys) -> None:
    """NHWC 0..1 floats and one-hot labels, as the Keras tutorial holds them, train exactly like `resnet train`."""
    X_train, y_train, X_test, y_test = _arrays(signs)
    torch.manual_seed(0)  # what `resnet train` does before building the model
    model = resnet.Model("resnet20", num_classes=6, **SMALL)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(X_train / 255.0, np.eye(6)[y_train], epochs=2, batch_size=16, verbose=0)
    assert len(history.history["loss"]) == 2 and len(history.history["accuracy"]) == 2
    loss, accuracy = model.evaluate(X_test / 255.0, np.eye(6)[y_test], verbose=0)  # Keras' order: loss first

    code = main(["train", "--data", str(signs), "--model", "resnet20", "--model-option", "widths=[8,16,32]",
                 "--epochs", "2", "--batch-size", "16", "--optimizer", "adam", "--lr", "0.001", "--schedule", "constant",
                 "--weight-decay", "0", "--no-augment", "--val-fraction", "0", "--seed", "0", "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert code == 0
    last = out.strip().splitlines()[-1]  # test accuracy: A (top-5 B, loss L, ...)
    cli_accuracy, cli_loss = float(last.split()[2]), float(last.split("loss ")[1].split(",")[0])
    # The weights are identical; the run scores under bf16 autocast where native, evaluate() in fp32, so
    # one borderline image of the 24 may flip (it does since short epochs recompute BatchNorm statistics).
    assert abs(accuracy - cli_accuracy) <= 1 / len(y_test) + 1e-9, (accuracy, cli_accuracy)
    assert abs(loss - cli_loss) < 0.01, (loss, cli_loss)


def test_labels_layouts_and_dtypes_are_equivalent(signs: Path) -> None:
    X_train, y_train, _, _ = _arrays(signs)
    model = resnet.Model("resnet20", num_classes=6, **SMALL).compile(metrics=["accuracy", "top5"])
    model.mean, model.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    reference = model.evaluate(X_train, y_train, verbose=0)
    assert len(reference) == 3  # loss, accuracy, top5
    for x, y in ((X_train / 255.0, np.eye(6)[y_train]), (X_train.transpose(0, 3, 1, 2), y_train[:, None]),
                 (torch.from_numpy(X_train), torch.from_numpy(y_train))):
        assert model.evaluate(x, y, verbose=0) == pytest.approx(reference)
    as_dict = model.evaluate(X_train, y_train, verbose=0, return_dict=True)
    assert list(as_dict) == ["loss", "accuracy", "top5"] and as_dict["loss"] == pytest.approx(reference[0])
    model.compile(metrics=None)
    assert isinstance(model.evaluate(X_train, y_train, verbose=0), float)  # Keras: a bare loss without metrics


@pytest.mark.parametrize("x, message", [
    (np.full((4, 8, 8, 3), 0.3), "not whole steps of 1/255"),
    (np.zeros((4, 8, 8)), None),
    (np.zeros((4, 8)), "batch of images"),
])
def test_array_errors_name_the_problem(x: np.ndarray, message: str | None) -> None:
    model = resnet.Model("resnet20", num_classes=6, **SMALL).compile()
    if message is None:  # (N, H, W) is a batch of gray images, fine for a 1-channel net
        gray = resnet.Model("resnet20", num_classes=6, in_chans=1, **SMALL).compile()
        gray.mean, gray.std = (0.5,), (0.25,)
        assert len(gray.evaluate(x, np.zeros(4, dtype=np.int64), verbose=0)) == 2
        return
    with pytest.raises(ResNetError, match=message):
        model.evaluate(x, np.zeros(4, dtype=np.int64), verbose=0)
    with pytest.raises(ResNetError, match="one-hot"):
        model.evaluate(np.zeros((4, 8, 8, 3), np.uint8), np.full((4, 6), 0.5), verbose=0)
    with pytest.raises(ResNetError, match="4 images but y holds 3"):
        model.evaluate(np.zeros((4, 8, 8, 3), np.uint8), np.zeros(3, dtype=np.int64), verbose=0)


def test_predict_save_load_and_the_command_line_agree(signs: Path, tmp_path: Path, capsys, one_thread: None) -> None:
    from PIL import Image

    X_train, y_train, X_test, _ = _arrays(signs)
    torch.manual_seed(0)
    model = resnet.Model("resnet20", num_classes=6, **SMALL).compile()
    model.fit(X_train, y_train, epochs=1, batch_size=16, verbose=0)
    probabilities = model.predict(X_test[:3])
    assert probabilities.shape == (3, 6) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
    assert np.allclose(model.predict(X_test[0]), probabilities[:1], atol=1e-6)  # one image, no batch axis
    Image.fromarray(X_test[0]).save(tmp_path / "photo.png")
    assert np.allclose(model.predict(str(tmp_path / "photo.png")), probabilities[:1], atol=1e-6)

    path = model.save(tmp_path / "model.safetensors")
    loaded = resnet.load_model(path)
    assert np.allclose(loaded.predict(X_test[:3]), probabilities, atol=1e-6)
    assert loaded.class_names == model.class_names and loaded.image_size == (16, 16)
    assert main(["predict", "--checkpoint", str(path), str(tmp_path / "photo.png"), "--json", "--top-k", "6"]) == 0
    cli = json.loads(capsys.readouterr().out)[0]["predictions"]
    by_index = {p["index"]: p["probability"] for p in cli}
    assert np.allclose([by_index[i] for i in range(6)], probabilities[0], atol=1e-5)


def test_paddle_style_prepare_with_a_torch_optimizer_and_topk_metric(signs: Path, tmp_path: Path, one_thread: None) -> None:
    from resnet.data import load

    class Accuracy:  # Paddle's paddle.metric.Accuracy(topk=(1, 5)), as far as the facade looks at it
        topk = (1, 5)

    network = resnet.create_model("resnet20", num_classes=6, **SMALL)
    model = resnet.Model(network)
    model.prepare(torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4),
                  torch.nn.CrossEntropyLoss(), Accuracy())
    assert model.settings == {"optimizer": "sgd", "lr": 0.05, "weight_decay": 1e-4, "schedule": "constant",
                              "momentum": 0.9, "nesterov": False}
    train, test = load(signs, "train"), load(signs, "test")
    history = model.fit(train, test, epochs=1, batch_size=16, save_dir=tmp_path / "output", verbose=0)
    assert "val_accuracy" in history.history and (tmp_path / "output" / "checkpoints" / "last.safetensors").is_file()
    assert list(model.evaluate(test, return_dict=True, verbose=0)) == ["loss", "accuracy", "top5"]
    with pytest.raises(ResNetError, match="loss"):
        model.compile(loss="mse")
    with pytest.raises(ResNetError, match="metric"):
        model.compile(metrics=["f1"])


def test_summary_prints_the_table_and_plot_draws(tmp_path: Path, capsys) -> None:
    model = resnet.Model("resnet20", num_classes=6, **SMALL)
    result = model.summary((3, 16, 16))
    out = capsys.readouterr().out
    assert f"{result.params:,}" in out and "layer1" in out
    path = model.plot(tmp_path / "model.dot", input_size=(3, 16, 16))
    assert "layer1" in path.read_text()


def test_fit_takes_a_torch_dataset_as_it_is(one_thread: None) -> None:
    """A Dataset of already-prepared tensors (as Paddle's and PyTorch's tutorials make) trains without conversion."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    x = torch.randn(32, 3, 16, 16)
    y = torch.arange(32) % 6
    x[torch.arange(32), 0, y, :] += 3.0  # a learnable mark per class
    model = resnet.Model("resnet20", num_classes=6, **SMALL).compile(optimizer="adam", lr=3e-3)
    history = model.fit(TensorDataset(x, y), epochs=3, batch_size=8, verbose=0)
    assert len(history.history["loss"]) == 3 and history.history["loss"][-1] < history.history["loss"][0]
    loss, accuracy = model.evaluate(DataLoader(TensorDataset(x, y), batch_size=8), verbose=0)
    assert 0 <= accuracy <= 1 and loss > 0
