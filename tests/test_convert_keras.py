"""Keras import and export against the real Keras 3 (torch backend, no TensorFlow): random-weight
models made by Keras, saved as legacy .h5 (Keras 3 and Keras 2 naming) and .keras, imported without
Keras, and our checkpoints written back to HDF5 that Keras' own load_weights accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import keras_models as km  # sets KERAS_BACKEND=torch before Keras is imported
from resnet import import_weights
from resnet.convert import detect_source, export_weights, keras as keras_convert
from resnet.errors import ResNetError
from resnet.models import model_from_checkpoint, read_metadata

import keras  # noqa: E402  (after keras_models chose the backend)

TOLERANCE = 1e-4
# Keras' torch backend trips NumPy 2's __array__(copy=...) deprecation on every weight it touches.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
IMAGES = np.random.default_rng(1).normal(size=(2, 3, 64, 64)).astype(np.float32)


def ours(model: torch.nn.Module, images: np.ndarray = IMAGES) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(images)).numpy()


def assert_parity(got: np.ndarray, expected: np.ndarray) -> float:
    diff = float(np.abs(got - expected).max())
    assert diff <= TOLERANCE, diff
    assert (got.argmax(1) == expected.argmax(1)).all()
    return diff


def keras2_file(src: Path, dst: Path) -> Path:
    """The same full-model file in Keras 2's layout: weights named 'layer/kernel:0'."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for key, value in f.attrs.items():
            g.attrs[key] = value
        g.attrs["keras_version"] = b"2.15.0"
        src_root, root = f["model_weights"], g.create_group("model_weights")
        root.attrs["layer_names"] = src_root.attrs["layer_names"]
        for raw in src_root.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else raw
            layer = root.create_group(name)
            names = [w.decode() if isinstance(w, bytes) else w for w in src_root[name].attrs.get("weight_names", [])]
            layer.attrs["weight_names"] = np.array([f"{name}/{n.split('/')[-1]}:0".encode() for n in names])
            for n in names:
                layer.create_dataset(f"{name}/{n.split('/')[-1]}:0", data=np.asarray(src_root[name][n]))
    return dst


KINDS = {
    "applications_v1": (lambda: km.small_apps_resnet(v2=False), "resnet50_keras"),
    "applications_v2": (lambda: km.small_apps_resnet(v2=True), "resnet50v2_keras"),
    "tutorial": (km.tutorial_resnet, "resnet50_tutorial"),
}


@pytest.fixture(scope="module", params=list(KINDS))
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One small Keras model of each kind, saved as Keras 3 .h5, Keras 2 .h5 and .keras, with its logits."""
    build, arch = KINDS[request.param]
    model = build()
    folder = tmp_path_factory.mktemp(request.param)
    model.save(folder / "model.h5")
    model.save(folder / "model.keras")
    files = {"h5": folder / "model.h5", "keras": folder / "model.keras", "h5-keras2": keras2_file(folder / "model.h5", folder / "keras2.h5")}
    return {"kind": request.param, "arch": arch, "files": files, "logits": km.logits(model, IMAGES), "keras": model}


@pytest.mark.parametrize("fmt", ["h5", "h5-keras2", "keras"])
def test_keras_file_imports_with_keras_numerics(saved: dict, fmt: str) -> None:
    path = saved["files"][fmt]
    assert detect_source(path) == "keras"
    model = import_weights(path)
    assert model.model_name == saved["arch"]
    assert model.model_options["layers"] == [2, 2, 2, 2]  # read from the file: a reduced net
    assert_parity(ours(model), saved["logits"])
    assert model.converted_from["source"] == "keras" and len(model.converted_from["sha256"]) == 64


def test_export_back_loads_in_keras(saved: dict, tmp_path: Path) -> None:
    model = import_weights(saved["files"]["h5"])
    out = export_weights(model, tmp_path / "back.h5", "keras")
    fresh = KINDS[saved["kind"]][0]()  # same architecture, other random weights
    fresh.load_weights(out)
    assert_parity(km.logits(fresh, IMAGES), saved["logits"])
    assert_parity(ours(import_weights(out)), saved["logits"])  # and our own reader reads it back


def test_cli_convert_round_trip(tmp_path: Path) -> None:
    """`resnet convert` Keras -> checkpoint (header rebuilds the model) -> Keras again, in subprocesses."""
    keras_model = km.small_apps_resnet(v2=True, classes=3)
    keras_model.save(tmp_path / "small.keras")
    expected = km.logits(keras_model, IMAGES)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = lambda *args: subprocess.run([sys.executable, "-m", "resnet", "convert", *args], capture_output=True, text=True, env=env)  # noqa: E731
    done = run(str(tmp_path / "small.keras"), "-o", str(tmp_path / "small.safetensors"))
    assert done.returncode == 0, done.stderr
    assert "resnet50v2_keras" in done.stdout
    meta = read_metadata(tmp_path / "small.safetensors")
    assert meta["converted_from"]["source"] == "keras" and meta["converted_from"]["file"] == "small.keras"
    assert (meta["image_size"], meta["mean"], meta["std"]) == (224, [0.5] * 3, [0.5] * 3)  # Keras V2's x / 127.5 - 1
    model, _ = model_from_checkpoint(tmp_path / "small.safetensors")
    assert_parity(ours(model), expected)
    done = run(str(tmp_path / "small.safetensors"), "-o", str(tmp_path / "back.h5"), "--to", "keras")
    assert done.returncode == 0, done.stderr
    fresh = km.small_apps_resnet(v2=True, classes=3)
    fresh.load_weights(tmp_path / "back.h5")
    assert_parity(km.logits(fresh, IMAGES), expected)


def test_class_names_travel_through_keras_files(tmp_path: Path) -> None:
    model = import_weights(_tiny_tutorial(tmp_path))
    export_weights(model, tmp_path / "named.h5", "keras", class_names=["zero", "one", "two", "three", "four", "five"])
    assert import_weights(tmp_path / "named.h5").class_names == ["zero", "one", "two", "three", "four", "five"]


def _tiny_tutorial(tmp_path: Path) -> Path:
    path = tmp_path / "tutorial.h5"
    km.tutorial_resnet(depths=(1, 1, 1, 1)).save(path)
    return path


def test_signs_data_file_is_not_a_model(tmp_path: Path) -> None:
    data = tmp_path / "train_signs.h5"
    with h5py.File(data, "w") as f:
        f["train_set_x"] = np.zeros((2, 64, 64, 3), np.uint8)
    assert not keras_convert.detect(data)
    with pytest.raises(ResNetError, match="not a Keras model"):
        keras_convert.read(data)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "resnet", "convert", str(data), "-o", str(tmp_path / "x.safetensors"), "--from", "keras"],
                          capture_output=True, text=True, env=env)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("resnet: error: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_export_refuses_a_non_keras_layout(tmp_path: Path) -> None:
    from resnet.models import create_model

    with pytest.raises(ResNetError, match="resnet18"):
        export_weights(create_model("resnet18"), tmp_path / "x.h5", "keras")
    assert not (tmp_path / "x.h5").exists()


def test_unknown_layer_names_are_named(tmp_path: Path) -> None:
    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Dense(2, name="head")(keras.layers.Flatten()(keras.layers.Conv2D(4, 3, name="features")(inputs)))
    keras.Model(inputs, outputs).save(tmp_path / "other.h5")
    with pytest.raises(ResNetError, match="features"):
        import_weights(tmp_path / "other.h5")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ResNet50", "ResNet50V2"])
def test_full_keras_applications_resnet(name: str, tmp_path: Path) -> None:
    """keras.applications' full ResNet50 / ResNet50V2 (weights=None, 1000 classes): the import matches
    Keras' logits and parameter count, and the export loads into a fresh one with the same logits."""
    build = getattr(keras.applications, name)
    keras_model = km.randomize(build(weights=None, classifier_activation=None))
    keras_model.save(tmp_path / "full.h5")
    images = IMAGES[:1, :, :, :].repeat(4, axis=2).repeat(4, axis=3)[:, :, :224, :224].copy()  # 224x224
    expected = km.logits(keras_model, images)
    model = import_weights(tmp_path / "full.h5")
    assert model.model_name == {"ResNet50": "resnet50_keras", "ResNet50V2": "resnet50v2_keras"}[name]
    assert model.model_options == {}
    stats = sum(m.running_mean.numel() * 2 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert sum(p.numel() for p in model.parameters()) + stats == keras_model.count_params()
    assert_parity(ours(model, images), expected)
    export_weights(model, tmp_path / "back.h5", "keras")
    fresh = build(weights=None, classifier_activation=None)
    fresh.load_weights(tmp_path / "back.h5")
    assert_parity(km.logits(fresh, images), expected)
    assert json.loads(json.dumps(model.converted_from))["source"] == "keras"


def test_keras3_weights_only_file_says_what_to_convert_instead(tmp_path: Path) -> None:
    km.small_apps_resnet(v2=False, depths=(1, 1, 1, 1)).save_weights(tmp_path / "model.weights.h5")
    assert detect_source(tmp_path / "model.weights.h5") == "keras"
    with pytest.raises(ResNetError, match=r"\.weights\.h5.*\.keras file"):
        import_weights(tmp_path / "model.weights.h5")


def test_converted_tutorial_predicts_like_keras(tmp_path: Path) -> None:
    """The checkpoint header carries the tutorial's preprocessing (SIGNS images / 255, 64x64), so
    predict on an image file gives Keras' probabilities for the same pixels."""
    from PIL import Image

    from resnet.cli.main import main
    from resnet.train.inference import predict_files

    keras_model = km.tutorial_resnet(depths=(1, 1, 1, 1))
    keras_model.save(tmp_path / "ResNet50.h5")
    assert main(["-q", "convert", str(tmp_path / "ResNet50.h5"), "-o", str(tmp_path / "signs.safetensors")]) == 0
    meta = read_metadata(tmp_path / "signs.safetensors")
    assert (meta["image_size"], meta["mean"], meta["std"]) == (64, [0.0] * 3, [1.0] * 3)
    pixels = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "sign.png")
    expected = km.logits(keras_model, pixels.transpose(2, 0, 1)[None].astype(np.float32) / 255)
    expected_probs = np.exp(expected - expected.max()) / np.exp(expected - expected.max()).sum()
    (prediction,) = predict_files(tmp_path / "signs.safetensors", [tmp_path / "sign.png"], top_k=6)
    got = {index: prob for _, index, prob in prediction.top}
    assert max(abs(got[i] - expected_probs[0, i]) for i in range(6)) < 1e-5
